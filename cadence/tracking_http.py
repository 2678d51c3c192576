"""The tracking side of `cadence serve`: the answers, the hit writer and the fast path in front.

- `pixel_response()` / `click_response(url)`: the answers to an accepted open and click, the same
  bytes whichever path serves them.
- `HitWriter`: accepted hits are counted in memory by their row key (`engagement.hit_row`: one
  open per message, one click per link, per minute), and one thread writes what is counted every
  `flush_every` seconds (`engagement.store_hits`, one upsert per batch). A request costs a dict
  update, and a batch holds one row per key however often the key was hit. A batch that cannot be
  written goes back (its hits added to what came in meanwhile), and `stop()` writes what is left,
  or, when the database refuses, keeps it on disk for the next start (`cadence.hit_spool`):
  every accepted hit is written once.
- `TrackingFast`: an ASGI wrapper placed in front of the whole app (the request guard included).
  A plain GET of `/t/o/TOKEN` or `/t/c/TOKEN` (no body announced, head under the guard's limit)
  whose token resolves is answered here, from a bounded cache of resolved tokens, without the
  guard, Starlette's routing and middleware (a token not in the cache is resolved by an awaited
  `resolve`, which does its database reads off the event loop). Anything else (HEAD, another method, a body, a token
  that does not resolve, an error while resolving) goes on to the app, which answers exactly as it
  would without this wrapper (404, 405, 413, 500 …).
"""
from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Awaitable, Callable

from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from cadence.app import App
from cadence.guard import MAX_HEAD_BYTES
from cadence.hit_spool import HitSpool
from cadence.outage import OutageLog, short_error
from cadence.services.engagement import Hit, hit_row, store_hits
from core.vocabulary import EventKind

log = logging.getLogger("cadence.http")
MAX_RETRY_WAIT = 5.0  # seconds between two tries to write hits while the database refuses them
STOP_WAIT = 60.0  # seconds `HitWriter.stop` waits for a write under way

PIXEL = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
         b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
NO_CACHE = {"Cache-Control": "no-store, private", "Pragma": "no-cache"}
CACHED_TOKENS = 100_000  # resolved tokens kept by the fast path (cleared when full)

ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


def pixel_response() -> Response:
    return Response(PIXEL, media_type="image/gif", headers=NO_CACHE)


def click_response(destination: str) -> Response:
    return RedirectResponse(destination, status_code=302, headers={**NO_CACHE, "Referrer-Policy": "no-referrer"})


class HitWriter:
    """Counts open/click rows (`engagement.hit_row`) by `dedup_key` and writes them in batches of at
    most `max_batch` rows from one thread (`engagement.store_hits`); `written` counts hits, not rows."""

    def __init__(self, app: App, flush_every: float = 1.0, max_batch: int = 2000, spool: HitSpool | None = None,
                 stop_wait: float = STOP_WAIT):
        self.app, self.flush_every, self.max_batch, self.stop_wait = app, flush_every, max_batch, stop_wait
        self.spool = spool or HitSpool(app.settings.home / "spool" / "hits")
        # keyed by dedup_key (`add`) or by (kind, message, link, UTC minute) (`count`); rows of the
        # same dedup_key under both keys are merged by `store_hits`
        self._pending: dict[object, dict] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stopped = threading.Event()  # stop() has written or kept what was pending
        self._thread = threading.Thread(target=self._run, name="cadence-hits", daemon=True)
        self.written = 0
        self._unreadable: set[Path] = set()
        self.spool_outage = OutageLog(log, "writing kept tracking hit files failed",
                                      "kept tracking hit files can be written again")
        self.outage = OutageLog(log, "writing tracking hits failed",
                                "writing tracking hits works again; the hits that waited are written")

    def start(self) -> None:
        self._thread.start()

    def _merge(self, key: object, row: dict) -> None:
        """Add `row`'s hits to the pending row of `key`, or make it that row. The caller holds the lock."""
        found = self._pending.get(key)
        if found is None:
            self._pending[key] = row
        else:
            found["hits"] += row["hits"]

    def add(self, row: dict) -> None:
        """Count one row's hits; the row (a fresh `hit_row`) then belongs to the writer."""
        with self._lock:
            self._merge(row["dedup_key"], row)

    def count(self, kind: EventKind, hit: Hit, at: datetime, link: int | None = None) -> None:
        """Count one hit at `at` (aware); its row is built once per key and batch, not per hit."""
        key = (kind, hit.message_id, link, int(at.timestamp()) // 60)
        with self._lock:
            found = self._pending.get(key)
            if found is not None:
                found["hits"] += 1
                return
        row = hit_row(kind, hit, at, link)  # one hit; built outside the lock
        with self._lock:
            self._merge(key, row)

    def _take(self) -> list[dict]:
        with self._lock:
            if len(self._pending) <= self.max_batch:
                rows, self._pending = list(self._pending.values()), {}
                return rows
            keys = [key for key, _ in zip(self._pending, range(self.max_batch))]
            return [self._pending.pop(key) for key in keys]

    def _give_back(self, rows: list[dict]) -> None:
        with self._lock:
            for row in rows:
                self._merge(row["dedup_key"], row)

    def flush(self) -> int:
        """Write what is counted (one batch); returns the rows written. On failure the batch goes
        back to be written later and the error is raised."""
        rows = self._take()
        if rows:
            try:
                self.written += store_hits(self.app, rows)
            except BaseException:
                self._give_back(rows)
                if self._stopped.is_set():  # a write that outlived stop(): nobody writes them now
                    self._keep_late()
                raise
        return len(rows)

    def _drain(self) -> None:
        """Write batches until nothing is counted (raises what the database raises)."""
        while self.flush():
            pass

    def _write_turn(self) -> None:
        """Write the rows counted when the turn began, oldest first, batch by batch (raises what the
        database raises). Hits counted meanwhile wait for the next turn: under steady traffic,
        writing until nothing is pending never ends, and the writer then upserts the same rows
        back to back instead of once per `flush_every`, its Python work contending with the
        requests for the GIL."""
        with self._lock:
            batches = -(-len(self._pending) // self.max_batch)
        for _ in range(batches):
            if not self.flush():
                return

    @property
    def pending(self) -> int:
        """Hits counted and not yet written."""
        with self._lock:
            return sum(row["hits"] for row in self._pending.values())

    def write_kept(self) -> int:
        """Write the hits an earlier stop kept on disk (`HitSpool`), one file per transaction, each
        file deleted once written; returns the hits written. Raises what the database raises (the
        files not yet written stay). A file that is not ours is logged once and left in place.
        While another writer (another `cadence serve` on this home) writes them, writes none. A
        folder this process cannot change is logged once, and its files are left for one that can:
        new hits are written as usual meanwhile."""
        written = 0
        try:
            with self.spool.claim() as files:  # none while another writer writes them: never twice
                for path in files:
                    written += self._write_kept_file(path)
        except OSError as exc:
            self.spool_outage.failed(exc, f"the files in {self.spool.folder} wait for a process that can change them")
            return written
        self.spool_outage.worked()
        return written

    def _write_kept_file(self, path: Path) -> int:
        """One kept file written and deleted (OSError: it cannot be marked); its hits."""
        if path in self._unreadable:
            return 0
        try:
            rows = self.spool.read(path)
        except ValueError as exc:
            self._unreadable.add(path)
            log.error("%s; left in place", exc)
            return 0
        taken = self.spool.take(path)
        try:
            hits = store_hits(self.app, rows)
        except BaseException:
            self.spool.give_back(taken)
            raise
        self.spool.done(taken)
        log.warning("wrote %d tracking hits kept in %s by an earlier stop", hits, path)
        self.written += hits
        return hits

    def write_pending(self) -> bool:
        """Write what earlier stops kept on disk, then every batch counted so far (not what is
        counted while it writes). False when the database refused one: its rows wait for the next
        try. One log line when writing starts failing, one when it works again
        (`cadence.outage.OutageLog`)."""
        try:
            self.write_kept()
            self._write_turn()
        except Exception as exc:  # keep serving; the rows stay pending for the next try
            self.outage.failed(exc, f"{self.pending} hits wait and are retried")
            return False
        self.outage.worked()
        return True

    def _run(self) -> None:
        wait = self.flush_every
        while not self._stop.wait(wait):
            # While the database refuses, try less and less often (up to every MAX_RETRY_WAIT s).
            wait = self.flush_every if self.write_pending() else min(max(wait * 2, self.flush_every), MAX_RETRY_WAIT)
        # What is left, `stop()` writes (or keeps on disk): not this thread, whose error would
        # only reach stderr as an "exception in thread" traceback.

    def stop(self) -> Path | None:
        """Stop the thread and write every pending hit, and what earlier stops kept on disk.

        When the database refuses, the pending hits are kept on disk (`HitSpool`) for the next
        start to write, and the path of that file is returned (None when everything was written).
        Raises OSError when they can be neither written nor kept.
        """
        self._stop.set()
        if self._thread.is_alive():
            # A write held up by the database ends within its statement timeout or the TCP
            # timeouts of store.db; its rows then come back to be kept with the rest.
            self._thread.join(timeout=self.stop_wait)
        if self._thread.is_alive():
            self._stopped.set()  # from now on, that write keeps its own rows on disk if it fails
            log.error("a write of tracking hits did not end within %.0f s; its hits count if it commits, and are "
                      "kept on disk if it fails", self.stop_wait)
        try:
            self.write_kept()
            self._drain()
            return None
        except Exception as exc:  # the database is down: keep them, the next start writes them
            error = exc
        rows = self._take_all()
        if not rows:
            return None
        path = self.spool.keep(rows)
        log.error("could not write %d tracking hits as the server stopped (%s); kept in %s, written when "
                  "cadence serve starts again", sum(row["hits"] for row in rows), short_error(error), path)
        return path

    def _keep_late(self) -> None:
        rows = self._take_all()
        if rows:
            try:
                path = self.spool.keep(rows)
            except OSError as exc:
                log.error("a write of %d tracking hits failed after the server stopped, and they could not be kept "
                          "on disk (%s): they are lost", sum(row["hits"] for row in rows), exc)
                return
            log.error("a write of %d tracking hits failed after the server stopped; kept in %s, written when "
                      "cadence serve starts again", sum(row["hits"] for row in rows), path)

    def _take_all(self) -> list[dict]:
        with self._lock:
            rows, self._pending = list(self._pending.values()), {}
        return rows


class FactsLoader:
    """The facts of sent messages (`engagement.SentFacts`, which never change once sent) for the
    tracking routes: from a bounded cache, else read off the event loop, many at a time.

    `await load(message_id)` gives the facts, or None for a message that is unknown or was not
    sent (not cached: it may be sent later). Misses are read together: one `fetch_many(ids)` (a
    dict of the sent ones, by id) in Starlette's threadpool per batch, instead of a thread hop and
    a query per request, which cost a first hit on a token about 300 µs of CPU (issue 17). One
    read at a time: the misses that come while one is under way (the rest of its turn of the
    event loop included) make the next batch, so a stalled database holds one thread of the pool,
    which static files and the health probe share, not one per turn with a miss. A miss already
    being read waits for that read. Raises what `fetch_many` raises, to every request of the batch.
    """

    def __init__(self, fetch_many: Callable[[list[int]], dict[int, Any]], cached: int = 200_000):
        self.fetch_many, self.cached = fetch_many, cached
        self._known: dict[int, Any] = {}
        self._waiting: dict[int, asyncio.Future] = {}  # misses for the next read
        self._reading: dict[int, asyncio.Future] = {}  # misses of the read under way
        self._batch: asyncio.Task | None = None

    def known(self, message_id: int) -> Any:
        """The cached facts of a sent message, else None (no I/O)."""
        return self._known.get(message_id)

    async def load(self, message_id: int) -> Any:
        facts = self._known.get(message_id)
        if facts is not None:
            return facts
        if self._batch is not None and self._batch.done():  # cancelled before it ran: its loop closed
            self._forget()
        future = self._reading.get(message_id) or self._waiting.get(message_id)
        if future is None:
            loop = asyncio.get_running_loop()
            future = self._waiting[message_id] = loop.create_future()
            if self._batch is None:
                self._batch = loop.create_task(self._read_batches())
        # shielded: a client that goes away cancels its own wait, not the read others share
        return await asyncio.shield(future)

    async def _read_batches(self) -> None:
        try:
            await asyncio.sleep(0)  # the misses of this turn of the loop join the batch
            while self._waiting:
                self._reading, self._waiting = self._waiting, {}
                await self._read(self._reading)
                self._reading = {}
        finally:
            self._forget()

    def _forget(self) -> None:
        """No read is under way or to come: what still waits (the loop was closing) is cancelled,
        not left waiting for good, and the next miss starts a read again."""
        for future in (*self._reading.values(), *self._waiting.values()):
            future.cancel()
        self._reading, self._waiting, self._batch = {}, {}, None

    async def _read(self, waiting: dict[int, asyncio.Future]) -> None:
        try:
            found = await run_in_threadpool(self.fetch_many, list(waiting))
        except Exception as exc:  # noqa: BLE001 - each waiting request gets the error
            for future in waiting.values():
                if not future.done():
                    future.set_exception(exc)
                    future.exception()  # retrieved: a request that went away leaves no "never retrieved" log
            return
        if len(self._known) + len(found) > self.cached:
            self._known.clear()
        self._known.update(found)
        for message_id, future in waiting.items():
            if not future.done():
                future.set_result(found.get(message_id))


@dataclass(frozen=True)
class _Answer:
    kind: EventKind
    hit: Hit
    link: int | None
    headers: list[tuple[bytes, bytes]]
    status: int
    body: bytes


class TrackingFast:
    """ASGI wrapper: answers resolvable tracking GETs itself, passes everything else to `inner`.

    `await resolve(kind, token)` ("o" or "c") gives (Hit, link index or None) or None; it must not
    block the event loop (database reads go to a thread); it may raise (the request then goes to
    `inner`, which resolves again and answers the error its own way).
    """

    def __init__(self, inner: ASGIApp, resolve: Callable[[str, str], Awaitable[tuple[Hit, int | None] | None]],
                 writer: HitWriter, now: Callable[[], Any], cached: int = CACHED_TOKENS):
        self.inner, self.resolve, self.writer, self.now, self.cached = inner, resolve, writer, now, cached
        self._answers: dict[tuple[str, str], _Answer] = {}

    async def _resolved(self, kind: str, token: str) -> _Answer | None:
        """The answer to a token not in the cache (cached now when it resolves)."""
        try:
            found = await self.resolve(kind, token)
        except Exception:  # noqa: BLE001 - the app behind answers (and logs) it
            return None
        if found is None:
            return None
        hit, link = found
        response = pixel_response() if kind == "o" else click_response(hit.destination or "")
        answer = _Answer(EventKind.OPENED if kind == "o" else EventKind.CLICKED, hit, link,
                         response.raw_headers, response.status_code, bytes(response.body))
        if len(self._answers) >= self.cached:
            self._answers.clear()
        self._answers[(kind, token)] = answer
        return answer

    async def __call__(self, scope: dict, receive, send) -> None:
        answer = None
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("root_path"):
            path = scope["path"]
            if path[:3] == "/t/" and path[4:5] == "/" and path[3:4] in ("o", "c") and len(path) > 5:
                key = self._plain_get(scope, path)
                if key is not None:
                    answer = self._answers.get(key)
                    if answer is None:
                        answer = await self._resolved(*key)
        if answer is None:
            await self.inner(scope, receive, send)
            return
        self.writer.count(answer.kind, answer.hit, self.now(), answer.link)
        await send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
        await send({"type": "http.response.body", "body": answer.body})

    def _plain_get(self, scope: dict, path: str) -> tuple[str, str] | None:
        """(kind, token) of a plain GET the fast path may answer, else None."""
        token = path[5:]
        if "/" in token:
            return None
        size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        for name, value in scope["headers"]:
            if name == b"content-length" or name == b"transfer-encoding":
                return None  # a body: the guard's limits apply
            size += len(name) + len(value) + 4
        if size > MAX_HEAD_BYTES:
            return None
        return path[3], token
