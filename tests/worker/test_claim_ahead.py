"""The batch claimed ahead (cadence.worker.passes.dispatch_due), on SQLite and PostgreSQL: the next
batch is claimed while the current one is at the provider, it is carried out even when the worker
stops meanwhile (its messages released, none left in `sending`), and when the current batch dies
its lease is no longer extended, so reconciliation settles it: every message goes exactly once."""
from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

from cadence.worker.passes import dispatch_due
from core.vocabulary import MessageState
from tests.support.workers import WorkerKilled

ADDRESS = "a@acme.example"


def states(world, app) -> Counter:
    return Counter(m.state for m in world.messages(app))


def wait_for_sending(world, app, thread: threading.Thread, count: int) -> None:
    """Until `count` messages are in `sending` (the provider's gate holds the first send)."""
    while states(world, app)[MessageState.SENDING.value] < count:
        assert thread.is_alive(), "dispatch ended before the batch ahead was claimed"
        thread.join(0.02)


def held_dispatch(world, name: str) -> tuple:
    """A 30-person campaign and a worker dispatching it in a thread (batches of 10, one lane) while
    the provider holds every send until `held` is set: (app, keeper, held, thread, results)."""
    app = world.app()
    world.campaign(app, contacts=30)
    held = threading.Event()
    world.provider.gates[("send_draft", ADDRESS)] = held
    worker = world.app()
    keeper = world.keeper(worker, name, batch=10, threads=1)
    results = {}
    thread = threading.Thread(target=lambda: results.setdefault("report", dispatch_due(worker, keeper=keeper)))
    thread.start()
    return app, keeper, held, thread, results


def sent_once_each(world) -> bool:
    recipients = [m.to_addresses for m in world.provider.sent(ADDRESS)]
    return len(recipients) == len(set(recipients)) == 30


def test_the_next_batch_is_claimed_while_the_current_one_is_at_the_provider(world):
    app, _keeper, held, thread, results = held_dispatch(world, "ahead")
    wait_for_sending(world, app, thread, 20)  # batch 1 waits at the provider, batch 2 is claimed
    assert world.provider.sent(ADDRESS) == []
    assert states(world, app)[MessageState.SENDING.value] == 20  # never more than one batch ahead
    held.set()
    thread.join(60)
    assert results["report"].sent == 30
    assert states(world, app) == Counter({MessageState.SENT.value: 30})
    assert sent_once_each(world)


def test_a_worker_stopping_with_a_batch_claimed_ahead_releases_it(world):
    app, keeper, held, thread, results = held_dispatch(world, "stopping")
    wait_for_sending(world, app, thread, 20)
    while world.provider.calls[("send_draft", ADDRESS)] < 1:  # the batch's drafts may still be under way
        assert thread.is_alive(), "dispatch ended before its first send"
        thread.join(0.02)
    keeper.stopping.set()  # SIGTERM: the send under way ends, nothing more goes to the provider
    held.set()
    thread.join(60)
    assert results["report"].sent == 1  # the one send already at the provider
    assert states(world, app) == Counter({MessageState.SENT.value: 1, MessageState.SCHEDULED.value: 29})
    assert keeper.held() == []
    other = world.app()
    assert dispatch_due(other, keeper=world.keeper(other, "next", batch=10)).sent == 29
    assert sent_once_each(world)


def test_when_the_current_batch_dies_the_batch_ahead_is_settled_by_reconciliation(world):
    app = world.app()
    world.campaign(app, contacts=30)
    held = threading.Event()
    world.provider.gates[("send_draft", ADDRESS)] = held
    world.provider.fail("send_draft", ADDRESS, "kill-before")
    worker = world.app()
    keeper = world.keeper(worker, "dies", batch=10, threads=1)
    died = {}

    def run() -> None:
        try:
            dispatch_due(worker, keeper=keeper)
        except WorkerKilled as exc:
            died["at"] = str(exc)

    thread = threading.Thread(target=run)
    thread.start()
    wait_for_sending(world, app, thread, 20)
    held.set()
    thread.join(60)
    assert died == {"at": "send_draft"}
    assert keeper.held() == []  # neither lease is extended any more, the one ahead included
    assert states(world, app) == Counter({MessageState.SENDING.value: 20, MessageState.SCHEDULED.value: 10})
    world.clock.advance(timedelta(seconds=31))  # the leases (30 s) ran out
    other = world.app()
    report = dispatch_due(other, keeper=world.keeper(other, "next", batch=10))
    assert report.sent == 30
    assert states(world, app) == Counter({MessageState.SENT.value: 30})
    assert sent_once_each(world)


def test_max_batches_bounds_the_batches_claimed_the_one_ahead_included(world):
    app = world.app()
    world.campaign(app, contacts=30)
    worker = world.app()
    keeper = world.keeper(worker, "bounded", batch=10, threads=1)
    with keeper:
        assert dispatch_due(worker, keeper=keeper, max_batches=1).sent == 10
        assert keeper.held() == []
        assert states(world, app) == Counter({MessageState.SENT.value: 10, MessageState.SCHEDULED.value: 20})
        assert dispatch_due(worker, keeper=keeper, max_batches=2).sent == 20
        assert keeper.held() == []
        assert dispatch_due(worker, keeper=keeper, max_batches=0).sent == 0
    assert states(world, app) == Counter({MessageState.SENT.value: 30})
