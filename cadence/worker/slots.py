"""Concurrency slots: at most a mailbox's `concurrency` provider calls at once, across every worker."""
from __future__ import annotations

import logging
import random
import time
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy.exc import DBAPIError

from cadence.app import App
from cadence.outage import short_error
from cadence.worker.leases import LeaseKeeper
from store.queue.claims import ensure_slots, free_slot, take_slot

log = logging.getLogger("cadence.delivery")

_slot_rows_made: set[tuple[int, int, int]] = set()  # (database, mailbox id, capacity) made by this process


def _ensure_slots(app: App, mailbox_id: int, capacity: int) -> None:
    key = (id(app.db), mailbox_id, capacity)
    if key in _slot_rows_made:
        return
    with app.db.session(immediate=True) as session:
        ensure_slots(session, mailbox_id, capacity)
    _slot_rows_made.add(key)


@contextmanager
def mailbox_slot(app: App, keeper: LeaseKeeper, mailbox_id: int, capacity: int | None) -> Iterator[bool]:
    """Hold one of the mailbox's `capacity` request slots (shared by every worker) for the block.

    Yields False when no slot came free within `slot_wait` seconds (or the worker is stopping);
    with no capacity limit, yields True at once.
    """
    if not capacity:
        yield True
        return
    _ensure_slots(app, mailbox_id, capacity)
    holder = keeper.token()
    slot = None
    try:
        deadline = time.monotonic() + keeper.options.slot_wait
        pause = 0.01
        while slot is None:
            now = app.clock.now()
            with app.db.session(immediate=True) as session:
                slot = take_slot(session, now, mailbox_id, capacity, holder, now + keeper.lease)
            if slot is None:
                if time.monotonic() >= deadline or keeper.stopping.is_set():
                    break
                keeper.sleep(pause * (0.5 + random.random()))
                pause = min(pause * 2, 0.2)
        yield slot is not None
    finally:
        if slot is not None:
            try:
                with app.db.session(immediate=True) as session:
                    free_slot(session, mailbox_id, slot, holder)
            except DBAPIError as exc:  # its lease runs out instead
                log.warning("could not free a request slot of mailbox %s: %s", mailbox_id, short_error(exc))
        keeper.release(holder)
