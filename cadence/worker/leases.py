"""The leases one process holds, their heartbeat, and database work tried again through outages."""
from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from contextlib import contextmanager
from datetime import timedelta
from typing import Callable, Iterator, TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError

from cadence.app import App
from cadence.outage import short_error
from cadence.worker.options import DispatchOptions, worker_identity
from store.queue.claims import extend_leases, note_worker, note_worker_stopped

log = logging.getLogger("cadence.delivery")
T = TypeVar("T")
RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 4.0)  # seconds; about 8 s in all, then leases run out instead


class LeaseKeeper:
    """The leases one process holds, extended by a heartbeat thread while they are held.

    A token names a claim of messages, a concurrency slot or a mailbox's sync lease; the heartbeat
    extends whatever rows carry a held token, every third of the lease. `stopping` is set on
    SIGTERM: once set, no new claim is made and no provider call is started.
    With `register`, the process also keeps its row in `workers` (name, started, last heartbeat).
    """

    def __init__(self, app: App, worker: str | None = None, options: DispatchOptions | None = None, *,
                 register: bool = False, sleep: Callable[[float], None] = time.sleep):
        self.app = app
        self.worker = (worker or worker_identity())[:64]
        self.options = options or DispatchOptions.from_env()
        self.register = register
        self.sleep = sleep
        self.stopping = threading.Event()
        self._tokens: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self.started_at = app.clock.now()

    @property
    def lease(self) -> timedelta:
        return self.options.lease

    def token(self) -> str:
        """A new token, held until `release`."""
        token = uuid.uuid4().hex[:24]
        self.hold(token)
        return token

    def hold(self, token: str) -> None:
        with self._lock:
            self._tokens[token] += 1

    def release(self, token: str) -> None:
        with self._lock:
            self._tokens[token] -= 1
            if self._tokens[token] <= 0:
                del self._tokens[token]

    def held(self) -> list[str]:
        with self._lock:
            return list(self._tokens)

    def beat(self) -> None:
        """Extend every held lease; note this worker as alive."""
        now = self.app.clock.now()
        tokens = self.held()
        if not tokens and not self.register:
            return
        with self.app.db.session(immediate=True) as session:
            if tokens:
                extend_leases(session, tokens, now + self.lease)
            if self.register:
                note_worker(session, self.worker, self.started_at, now, len(tokens))

    def _run(self) -> None:
        interval = max(self.lease.total_seconds() / 3, 0.05)
        while not self._done.wait(interval):
            try:
                self.beat()
            except Exception as exc:  # the database may be restarting: try again on the next beat
                log.warning("heartbeat failed (leases are not extended until the database answers): %s",
                            short_error(exc))

    def start(self) -> "LeaseKeeper":
        if self.register:
            try:
                self.beat()
            except DBAPIError as exc:
                log.warning("could not register worker %s yet: %s", self.worker, short_error(exc))
        self._thread = threading.Thread(target=self._run, name="cadence-heartbeat", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.register:
            try:
                with self.app.db.session(immediate=True) as session:
                    note_worker_stopped(session, self.worker, self.app.clock.now())
            except DBAPIError as exc:
                log.warning("could not mark worker %s stopped: %s", self.worker, short_error(exc))

    def __enter__(self) -> "LeaseKeeper":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@contextmanager
def keeper_for(app: App, worker: str | None, keeper: LeaseKeeper | None,
               options: DispatchOptions | None) -> Iterator[LeaseKeeper]:
    """`keeper` when given, else a keeper of our own for the block."""
    if keeper is not None:
        yield keeper
        return
    with LeaseKeeper(app, worker, options) as own:
        yield own


def retrying(keeper: LeaseKeeper, work: Callable[[], T], what: str) -> T:
    """Run a database unit of work, trying again while the database is unreachable or deadlocked.

    Gives up after about 8 s (leases then run out and reconciliation takes over).
    """
    for attempt in range(len(RETRY_DELAYS) + 1):
        try:
            return work()
        except OperationalError as exc:
            if attempt == len(RETRY_DELAYS):
                raise
            log.warning("%s: database error, trying again in %.1f s: %s", what, RETRY_DELAYS[attempt],
                        short_error(exc))
            keeper.sleep(RETRY_DELAYS[attempt])
    raise AssertionError("unreachable")
