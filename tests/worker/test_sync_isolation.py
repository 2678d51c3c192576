"""One message the sync pass cannot take is skipped with one log line naming it; the other
messages of that mailbox are read and the mailbox stays connected (issue 13b item 1), on SQLite
and PostgreSQL."""
from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select

from cadence.services.sync import sync_mailboxes
from cadence.worker.passes import dispatch_due
from connectors.memory import StoredMessage
from core.vocabulary import EventKind, MailboxHealth
from store.models import Contact, Event, MailboxRow

ADDRESS = "a@acme.example"


def _reply(world, key: str, sent, body: str) -> None:
    world.provider.server.put(ADDRESS, StoredMessage(
        key=key, folder="inbox", message_id=f"<{key}@prospect.example>", thread_id=sent.thread_id,
        from_address=sent.to_addresses[0], to_addresses=(ADDRESS,), subject=f"Re: {sent.subject}",
        text_body=body, in_reply_to=sent.message_id, references=(sent.message_id,),
        received_at=world.clock.now()))


def test_one_message_that_cannot_be_stored_does_not_stop_the_others(world, caplog):
    app = world.app()
    world.campaign(app, contacts=3)
    dispatch_due(app, keeper=world.keeper(app, "w"))
    sync_mailboxes(app)  # the first poll only sets the cursor
    sent = {m.to_addresses[0]: m for m in world.provider.sent(ADDRESS)}
    world.clock.advance(timedelta(hours=1))
    _reply(world, "good-1", sent["p0@prospect.example"], "Yes, call me.")
    # a lone surrogate: text no database accepts (what an 8-bit header read as ASCII used to give)
    _reply(world, "broken-2", sent["p1@prospect.example"], "Ja \udcc3\udcbc gern")
    _reply(world, "good-3", sent["p2@prospect.example"], "Sure.")

    with caplog.at_level(logging.WARNING, logger="cadence.sync"):
        report = sync_mailboxes(app)

    assert (report.observations, report.replies) == (3, 2)
    [line] = [r.getMessage() for r in caplog.records if r.name == "cadence.sync"]
    assert "broken-2" in line and "p1@prospect.example" in line and "skipped" in line
    with app.db.session() as session:
        replied = sorted(session.scalars(select(Contact.email).join(Event, Event.contact_id == Contact.id)
                                         .where(Event.kind == EventKind.REPLIED.value)))
        box = session.scalar(select(MailboxRow).where(MailboxRow.address == ADDRESS))
        assert box.health == MailboxHealth.CONNECTED.value
    assert replied == ["p0@prospect.example", "p2@prospect.example"]
