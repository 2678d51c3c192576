"""Stale task drafts are withdrawn by the worker, on SQLite and PostgreSQL: an opt-out (one-click
unsubscribe) ends the sequence, the draft leaves the rep's Drafts and the task says why; a
provider failure that may pass leaves the draft recorded, and the next pass withdraws it."""
from __future__ import annotations

from sqlalchemy import select

from cadence.services.engagement import unsubscribe
from cadence.services.reads.logs import read_log
from cadence.services.stale_drafts import withdraw_stale_drafts
from cadence.services.tasks import list_tasks
from cadence.worker.passes import dispatch_due
from core.mailbox import TransientError
from core.vocabulary import TaskState
from store.models import Contact

ADDRESS = "a@acme.example"


def test_an_opt_out_withdraws_the_task_draft_once_the_provider_answers(world):
    app = world.app()
    world.campaign(app, contacts=2, action="task")
    assert dispatch_due(app, keeper=world.keeper(app, "w")).drafted == 2
    assert len(world.provider.drafts(ADDRESS)) == 2
    with app.db.session() as session:
        contact_id = session.scalar(select(Contact.id).where(Contact.email == "p0@prospect.example"))
    assert unsubscribe(app, contact_id)

    world.provider.fail("delete_draft", ADDRESS, TransientError("Graph answered 503"))
    assert withdraw_stale_drafts(app) == []  # tried, failed for now: still recorded, still listed as pending
    [pending] = list_tasks(app, states=(TaskState.STALE,))
    assert pending.reason == "the contact unsubscribed; its draft is still in Drafts, being withdrawn"
    assert len(world.provider.drafts(ADDRESS)) == 2

    assert len(withdraw_stale_drafts(app)) == 1
    assert [d.to_addresses[0] for d in world.provider.drafts(ADDRESS)] == ["p1@prospect.example"]
    [stale] = list_tasks(app, states=(TaskState.STALE,))
    assert stale.contact == "p0@prospect.example" and stale.draft_link is None
    assert stale.reason == "the contact unsubscribed; its draft was withdrawn from Drafts"
    assert [t.contact for t in list_tasks(app)] == ["p1@prospect.example"]
    assert withdraw_stale_drafts(app) == []  # nothing left to do; the event is not written twice
    lines = [e for e in read_log(app, "Launch") if e.kind == "draft_withdrawn"]
    assert len(lines) == 1 and "the contact unsubscribed" in lines[0].detail
