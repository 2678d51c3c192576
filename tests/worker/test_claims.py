"""Claims and leases on SQLite and PostgreSQL: batches never overlap, a heartbeat keeps them, a dead
worker's claims come back once the lease runs out, and a worker that lost its claim is fenced off."""
from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import select

from cadence.worker.passes import claim_due, dispatch_due, reconcile_expired
from core.vocabulary import MessageState
from store.models import Message, WorkerRow


def test_concurrent_claims_never_overlap(world):
    app = world.app()
    world.campaign(app, contacts=40)
    workers = [world.app() for _ in range(4)]
    claimed: dict[str, list[int]] = {}
    start = threading.Barrier(len(workers))

    def claim(index: int) -> None:
        keeper = world.keeper(workers[index], f"w{index}")
        start.wait()
        ids = []
        for _ in range(3):
            ids += claim_due(workers[index], keeper.worker, 5, keeper)[1]
        claimed[keeper.worker] = ids

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(workers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for ids in claimed.values() for i in ids]
    assert len(every) == len(set(every)) == 40  # each due message claimed once, all of them
    owners = {m.id: m.lease_owner for m in world.messages(app)}
    assert all(owners[i] == worker for worker, ids in claimed.items() for i in ids)


def test_a_dead_workers_claims_come_back_after_the_lease_and_not_before(world):
    app = world.app()
    world.campaign(app, contacts=6)
    dead = world.keeper(world.app(), "dead")
    token, ids = claim_due(dead.app, dead.worker, 100, dead)
    assert len(ids) == 6
    other = world.app()
    keeper = world.keeper(other, "other")
    assert claim_due(other, keeper.worker, 100, keeper)[1] == []
    world.clock.advance(timedelta(seconds=29))
    assert claim_due(other, keeper.worker, 100, keeper)[1] == []
    world.clock.advance(timedelta(seconds=2))  # the lease (30 s) ran out
    assert sorted(claim_due(other, keeper.worker, 100, keeper)[1]) == sorted(ids)


def test_the_heartbeat_extends_the_leases_it_holds(world):
    app = world.app()
    world.campaign(app, contacts=3)
    alive = world.keeper(world.app(), "alive")
    _, ids = claim_due(alive.app, alive.worker, 100, alive)
    other = world.keeper(world.app(), "other")
    for _ in range(4):  # two minutes of beats, every 20 s
        world.clock.advance(timedelta(seconds=20))
        alive.beat()
        assert claim_due(other.app, other.worker, 100, other)[1] == []
    with app.db.session() as session:
        leases = set(session.scalars(select(Message.lease_until).where(Message.id.in_(ids))))
    assert leases == {world.clock.now() + timedelta(seconds=30)}


def test_a_registered_worker_is_seen_in_the_workers_table(world):
    app = world.app()
    keeper = world.keeper(app, "host:1:abc")
    keeper.register = True
    with keeper:
        with app.db.session() as session:
            row = session.get(WorkerRow, "host:1:abc")
            assert row is not None and row.stopped_at is None and row.seen_at == world.clock.now()
    with app.db.session() as session:
        assert session.get(WorkerRow, "host:1:abc").stopped_at == world.clock.now()


def test_a_worker_that_lost_its_claim_can_neither_record_its_draft_nor_send(world):
    """Worker A stalls inside create_draft past its lease (no heartbeat: say its network is gone).
    B reconciles the message (not sent), sends it with a draft of its own; when A wakes up, its
    draft id is refused (the claim token no longer matches), so A deletes its draft and sends nothing."""
    app = world.app()
    world.campaign(app, contacts=1)
    address = "a@acme.example"
    stalled = threading.Event()
    world.provider.gates[("create_draft", address)] = stalled
    a = world.app()
    a_keeper = world.keeper(a, "A", threads=1)
    results = {}
    thread = threading.Thread(target=lambda: results.setdefault("a", dispatch_due(a, keeper=a_keeper)))
    thread.start()
    while world.provider.calls[("create_draft", address)] == 0:
        thread.join(0.01)
    world.clock.advance(timedelta(seconds=31))  # A's lease ran out; its heartbeat never came
    del world.provider.gates[("create_draft", address)]
    b = world.app()
    report = dispatch_due(b, keeper=world.keeper(b, "B"))
    assert report.reconciled == 1 and report.sent == 1
    stalled.set()
    thread.join(10)
    assert results["a"].sent == 0
    assert len(world.provider.sent(address)) == 1
    assert world.provider.drafts(address) == []  # A removed the draft nobody recorded
    [message] = world.messages(app)
    assert message.state == MessageState.SENT.value and message.claim_token is None


def test_reconciliation_leaves_a_sending_message_with_a_live_lease_alone(world):
    app = world.app()
    world.campaign(app, contacts=2)
    address = "a@acme.example"
    held = threading.Event()
    world.provider.gates[("send_draft", address)] = held
    a = world.app()
    thread = threading.Thread(target=dispatch_due, args=(a,), kwargs={"keeper": world.keeper(a, "A", threads=1)})
    thread.start()
    while world.provider.calls[("send_draft", address)] == 0:
        thread.join(0.01)
    b = world.app()
    assert reconcile_expired(b, keeper=world.keeper(b, "B")).reconciled == 0  # A's lease is alive
    assert world.provider.calls[("check_sent", address)] == 0
    held.set()
    thread.join(10)
    assert len(world.provider.sent(address)) == 2
