"""A worker killed between creating a draft and storing its id leaves no second draft (issue 12
item 6), on SQLite and PostgreSQL.

The crash window is played exactly: the provider makes the draft, then the worker "dies"
(WorkerKilled after `create_draft` took effect), so the draft exists at the provider while the
store holds only the recorded intent. After the lease, another worker's pass must find that draft
by its Message-ID and use it: one draft, one send, as the provider's own folders show.
"""
from __future__ import annotations

from datetime import timedelta
from dataclasses import replace

import pytest

from cadence.services.tasks import list_tasks, send_task
from cadence.worker.passes import dispatch_due, reconcile_expired
from core.vocabulary import MessageState
from tests.support.workers import Before, WorkerKilled

ADDRESS = "a@acme.example"


def _killed_after_creating_the_draft(world, action: str, contacts: int = 2, *, extra_copy: bool = False):
    """Run a pass that dies right after the provider made the first draft; return the app."""
    app = world.app()
    world.campaign(app, contacts=contacts, action=action)
    world.provider.fail("create_draft", ADDRESS, "kill-after")
    doomed = world.app()
    with pytest.raises(WorkerKilled):
        dispatch_due(doomed, keeper=world.keeper(doomed, "doomed", threads=1))
    [made] = world.provider.drafts(ADDRESS)
    if extra_copy:  # a mail client saved the draft once more: same Message-ID, another draft
        world.provider.fail("find_drafts", ADDRESS, Before(lambda: world.provider.server.put(
            ADDRESS, replace(world.provider.server.box(ADDRESS)[made.key], key="copy-1"))))
    world.clock.advance(timedelta(seconds=31))  # the dead worker's lease runs out
    return app, made


def test_an_automatic_email_whose_draft_was_made_by_a_killed_worker_goes_out_once_from_that_draft(world):
    app, made = _killed_after_creating_the_draft(world, "auto")
    survivor = world.app()
    # Reconciliation finds the dead worker's draft by its Message-ID and records it, so the message
    # holds its draft even when it cannot go at once (a cap, a window), and no draft is a stranger.
    reconcile_expired(survivor, keeper=world.keeper(survivor, "reconciler"))
    adopted = next(m for m in world.messages(app) if m.message_id == made.message_id)
    assert adopted.state == MessageState.SCHEDULED.value and adopted.provider_draft_id == made.key
    dispatch_due(survivor, keeper=world.keeper(survivor, "survivor"))
    messages = world.messages(app)
    assert [m.state for m in messages] == [MessageState.SENT.value] * 2
    sent = world.provider.sent(ADDRESS)
    assert sorted(m.message_id for m in sent) == sorted(m.message_id for m in messages)  # one send each
    assert made.key in {m.key for m in sent}  # the dead worker's draft is the one that went
    assert world.provider.drafts(ADDRESS) == []  # no copy left behind, ready to send
    assert world.provider.calls[("create_draft", ADDRESS)] == 2  # the dead one's, and the other message's
    assert world.provider.calls[("find_drafts", ADDRESS)] >= 1


def test_a_task_whose_draft_was_made_by_a_killed_worker_keeps_that_one_draft(world):
    app, made = _killed_after_creating_the_draft(world, "task")
    survivor = world.app()
    report = dispatch_due(survivor, keeper=world.keeper(survivor, "survivor"))
    assert report.drafted == 2
    drafts = world.provider.drafts(ADDRESS)
    messages = world.messages(app)
    assert sorted(d.message_id for d in drafts) == sorted(m.message_id for m in messages)  # one draft each
    assert made.key in {d.key for d in drafts}
    assert {m.state for m in messages} == {MessageState.DRAFTED.value}
    assert world.provider.calls[("create_draft", ADDRESS)] == 2
    tasks = list_tasks(app)
    assert len(tasks) == 2
    for task in tasks:
        send_task(app, task.id)
    assert sorted(m.message_id for m in world.provider.sent(ADDRESS)) == sorted(m.message_id for m in messages)
    assert world.provider.drafts(ADDRESS) == []


def test_copies_of_a_draft_found_on_retry_are_deleted_and_one_is_kept(world):
    app, made = _killed_after_creating_the_draft(world, "task", contacts=1, extra_copy=True)
    survivor = world.app()
    report = dispatch_due(survivor, keeper=world.keeper(survivor, "survivor"))
    assert report.drafted == 1
    [draft] = world.provider.drafts(ADDRESS)
    [message] = world.messages(app)
    assert draft.message_id == message.message_id and message.provider_draft_id == draft.key
    assert world.provider.calls[("delete_draft", ADDRESS)] == 1
    assert world.provider.calls[("create_draft", ADDRESS)] == 1


def test_a_worker_that_loses_its_claim_leaves_the_draft_it_found_to_the_worker_that_took_over(world):
    """Seen in the soak: a worker reusing the draft a killed one made lost its claim (its lease ran
    out) before recording it, and deleted that draft as if it had made it itself; the worker that
    took over had already recorded that very draft, found it gone, and the email stayed in doubt,
    never sent. A worker deletes only drafts it made; one it found belongs to whoever holds the claim."""
    app, made = _killed_after_creating_the_draft(world, "auto", contacts=1)
    slow, other = world.app(), world.app()

    def lease_runs_out_and_another_worker_takes_over() -> None:
        world.clock.advance(timedelta(seconds=31))
        reconcile_expired(other, keeper=world.keeper(other, "other"))

    world.provider.fail("find_drafts", ADDRESS, Before(lease_runs_out_and_another_worker_takes_over))
    dispatch_due(slow, keeper=world.keeper(slow, "slow"))
    dispatch_due(other, keeper=world.keeper(other, "other"))
    [message] = world.messages(app)
    assert message.state == MessageState.SENT.value
    assert [m.key for m in world.provider.sent(ADDRESS)] == [made.key]  # once, from the draft found
    assert world.provider.drafts(ADDRESS) == []
    assert world.provider.calls[("delete_draft", ADDRESS)] == 0


def test_a_draft_made_by_a_worker_that_lost_its_claim_is_kept_when_the_new_holder_recorded_it(world):
    """The same takeover, one step later: the slow worker made the first draft itself; the worker
    that took over found it by Message-ID and recorded it before the slow one gave up. Deleting it
    then would lose the email; a draft nobody recorded is still deleted (no stray copy is left)."""
    app = world.app()
    world.campaign(app, contacts=2, action="auto")
    slow, other = world.app(), world.app()

    def lease_runs_out_and_another_worker_takes_over() -> None:
        world.clock.advance(timedelta(seconds=31))
        reconcile_expired(other, keeper=world.keeper(other, "other"))

    # The takeover comes just before the slow worker makes its second draft.
    world.provider.fail("create_draft", ADDRESS, "as asked", Before(lease_runs_out_and_another_worker_takes_over))
    dispatch_due(slow, keeper=world.keeper(slow, "slow", threads=1))
    dispatch_due(other, keeper=world.keeper(other, "other"))
    messages = world.messages(app)
    assert [m.state for m in messages] == [MessageState.SENT.value] * 2
    assert sorted(m.message_id for m in world.provider.sent(ADDRESS)) == sorted(m.message_id for m in messages)
    assert world.provider.drafts(ADDRESS) == []


def test_reconciliation_that_cannot_look_for_the_draft_decides_nothing_and_asks_again(world):
    """Seen in the soak: looking for the dead worker's draft failed (an outage), the message was
    judged without it and went back to the queue as having no draft, while that draft sat in
    Drafts. Not knowing is not an answer: the message waits for the next reconciliation, which
    finds the draft and records it."""
    from core.mailbox import TransientError

    app, made = _killed_after_creating_the_draft(world, "auto", contacts=1)
    survivor = world.app()
    world.provider.fail("find_drafts", ADDRESS, TransientError("Gmail answered 503"))
    reconcile_expired(survivor, keeper=world.keeper(survivor, "reconciler"))
    [message] = world.messages(app)
    assert message.state == MessageState.SENDING.value and message.provider_draft_id is None
    world.clock.advance(timedelta(seconds=31))
    reconcile_expired(survivor, keeper=world.keeper(survivor, "reconciler"))
    [message] = world.messages(app)
    assert message.state == MessageState.SCHEDULED.value and message.provider_draft_id == made.key
    dispatch_due(survivor, keeper=world.keeper(survivor, "survivor"))
    assert [m.key for m in world.provider.sent(ADDRESS)] == [made.key]
    assert world.provider.drafts(ADDRESS) == []
