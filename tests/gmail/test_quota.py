"""The per-user quota bucket: waits with the injected clock instead of earning 429s."""
from __future__ import annotations

import pytest

from connectors.gmail import QuotaBucket
from tests.support.gmail import FakeClock, outgoing


def test_the_bucket_waits_for_units_and_refills_over_a_minute():
    clock = FakeClock()
    bucket = QuotaBucket(600, sleep=clock.sleep, monotonic=clock.monotonic)  # 10 units per second
    assert bucket.take(600) == 0 and clock.sleeps == []
    assert bucket.take(100) == pytest.approx(10.0)
    assert clock.sleeps == [pytest.approx(10.0)]
    clock.now += 60
    assert bucket.take(600) == 0  # full again, never more than one minute's worth


def test_a_mailbox_paces_its_calls_by_quota_units(server, account, make_mailbox, clock):
    bucket = QuotaBucket(300, sleep=clock.sleep, monotonic=clock.monotonic)  # 5 units per second
    mailbox = make_mailbox(quota=bucket)
    for n in range(3):  # each: drafts.create 10 + drafts.send 100 + messages.get 5
        mailbox.send_draft(mailbox.create_draft(outgoing(account.address, subject=f"Hello {n}")))
    # 300 - 2 * 115 - 10 = 60 units left before the third send, which needs 100: wait 8 s;
    # then the empty bucket needs 1 s for the 5 units of the messages.get after it.
    assert clock.sleeps == [pytest.approx(8.0), pytest.approx(1.0)]
    assert len(server.outbox) == 3


def test_two_mailbox_objects_of_one_address_can_share_a_bucket(account, make_mailbox, clock):
    bucket = QuotaBucket(120, sleep=clock.sleep, monotonic=clock.monotonic)  # 2 units per second
    first, second = make_mailbox(quota=bucket), make_mailbox(quota=bucket)
    first.create_draft(outgoing(account.address))  # 10 units
    second.create_draft(outgoing(account.address))  # 10 units
    assert bucket.take(110) == pytest.approx(5.0)  # 100 left: 10 more units take 5 s


def test_a_bucket_needs_a_positive_size():
    with pytest.raises(ValueError, match="^units_per_minute"):
        QuotaBucket(0, sleep=lambda s: None, monotonic=lambda: 0.0)
