"""`cadence serve`: Starlette app for Slack events, tracking, unsubscribe, OAuth callbacks, /healthz.

Tracking (`/t/o/TOKEN` open pixel, `/t/c/TOKEN` click redirect) and unsubscribe (`/u/TOKEN`):
- a token is HMAC-signed and names a sent message (and, for a click, the index of a link stored
  when the message was prepared); a tampered, foreign or unknown token, a link index the
  message does not have, or a message that was not sent gets a 404 and records nothing;
- the redirect goes to the stored link only, and only when it is an absolute http(s) URL: the
  URL of the request never chooses the destination, so there is no open redirect;
- every accepted hit is counted exactly once, and stored as at most one open per message and one
  click per link per minute (repeats add to that row's `hits`: a URL requested 20,000 times is
  one row per minute, not 20,000): hits are verified in the request, then written in batches by
  one writer thread (one upsert per batch, not one transaction per hit); a batch that cannot be
  written goes back to the queue, and stopping the server writes what is left;
- GET /u/TOKEN only shows a page with a confirm button (link scanners follow GETs); POST
  (the button, or a mail provider's RFC 8058 one-click request) opts the contact out of every
  campaign at once.
"""
from __future__ import annotations

import contextlib
import logging
import queue
import threading
from html import escape
from typing import Callable

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from cadence.app import App
from cadence.guard import GuardedStarlette, server_config
from cadence.services.engagement import SentFacts, hit_row, resolve, sent_message_facts, store_hits
from core.vocabulary import EventKind

log = logging.getLogger("cadence.http")

PIXEL = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
         b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
NO_CACHE = {"Cache-Control": "no-store, private", "Pragma": "no-cache"}
PAGE_HEADERS = {**NO_CACHE, "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"}


def _not_found() -> Response:
    return PlainTextResponse("not found", status_code=404, headers=NO_CACHE)


class HitWriter:
    """Queues open/click rows (`engagement.hit_row`) and writes them in batches from one thread
    (`engagement.store_hits`); `written` counts hits, not rows."""

    def __init__(self, app: App, flush_every: float = 0.2, max_batch: int = 2000):
        self.app, self.flush_every, self.max_batch = app, flush_every, max_batch
        self._queue: queue.Queue[dict] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cadence-hits", daemon=True)
        self.written = 0

    def start(self) -> None:
        self._thread.start()

    def add(self, row: dict) -> None:
        self._queue.put(row)

    def _drain(self) -> list[dict]:
        rows = []
        try:
            while len(rows) < self.max_batch:
                rows.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        return rows

    def flush(self) -> int:
        """Write what is queued (one batch); on failure the batch goes back to the queue and the error is raised."""
        rows = self._drain()
        if rows:
            try:
                self.written += store_hits(self.app, rows)
            except BaseException:
                for row in rows:
                    self._queue.put(row)
                raise
        return len(rows)

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_every):
            try:
                while self.flush():
                    pass
            except Exception:  # keep serving; the rows stay queued for the next try
                log.exception("writing tracking hits failed")
        while self.flush():
            pass

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        while self.flush():
            pass


def create_http_app(app: App, *, slack_routes: list | None = None, extra_routes: list | None = None,
                    on_startup: list[Callable] | None = None, on_shutdown: list[Callable] | None = None) -> Starlette:
    writer = HitWriter(app)

    known: dict[int, SentFacts] = {}  # facts of a sent message never change; bounded below

    def cached_facts(message_id: int) -> SentFacts | None:
        facts = known.get(message_id)
        if facts is None:
            facts = sent_message_facts(app, message_id)
            if facts is not None:
                if len(known) >= 200_000:
                    known.clear()
                known[message_id] = facts
        return facts

    async def track_open(request: Request) -> Response:
        found = resolve(app, request.path_params["token"], "o", cached_facts)
        if found is None:
            return _not_found()
        if request.method == "GET":  # a HEAD is a prefetcher checking the link, not a person opening
            writer.add(hit_row(EventKind.OPENED, found[1], app.clock.now()))
        return Response(PIXEL, media_type="image/gif", headers=NO_CACHE)

    async def track_click(request: Request) -> Response:
        found = resolve(app, request.path_params["token"], "c", cached_facts)
        if found is None:  # never redirect anywhere but to an absolute http(s) link we stored
            return _not_found()
        parsed, hit = found
        if request.method == "GET":
            writer.add(hit_row(EventKind.CLICKED, hit, app.clock.now(), parsed.link_id))
        return RedirectResponse(hit.destination, status_code=302,
                                headers={**NO_CACHE, "Referrer-Policy": "no-referrer"})

    async def unsubscribe_page(request: Request) -> Response:
        from cadence.services.engagement import unsubscribe

        token = request.path_params["token"]
        found = await run_in_threadpool(resolve, app, token, "u")
        if found is None:
            return HTMLResponse(_page("Link not valid", "<p>This unsubscribe link is not valid.</p>"), status_code=404,
                                headers=PAGE_HEADERS)
        _, hit = found
        if request.method != "POST":  # link scanners follow GETs (and HEADs): show a button, change nothing
            return HTMLResponse(_page("Unsubscribe", f"""<p>Stop receiving these emails?</p>
<form method="post" action="/u/{escape(token)}"><button type="submit">Unsubscribe</button></form>"""),
                                headers=PAGE_HEADERS)
        await run_in_threadpool(unsubscribe, app, hit.contact_id, via_message=hit.message_id,
                                campaign_id=hit.campaign_id)
        return HTMLResponse(_page("Unsubscribed", "<p>You are unsubscribed from every campaign and will get no more "
                                  "of these emails.</p>"), headers=PAGE_HEADERS)

    async def healthz(request: Request) -> Response:
        try:
            with app.db.session(readonly=True) as session:
                session.execute(text("SELECT 1"))
        except Exception as exc:  # the probe reports, it does not crash
            return JSONResponse({"ok": False, "database": str(exc).splitlines()[0]}, status_code=503)
        return JSONResponse({"ok": True, "time": app.clock.now().isoformat()})

    routes = [
        Route("/healthz", healthz),
        Route("/t/o/{token}", track_open),
        Route("/t/c/{token}", track_click),
        Route("/u/{token}", unsubscribe_page, methods=["GET", "POST"]),
        *(slack_routes or []),
        *(extra_routes or []),
    ]
    from web.routes import web_routes  # the web app (docs/web.md), on the same port

    web, site = web_routes(app)
    routes += web
    on_shutdown = [site.stopping.set, *(on_shutdown or [])]
    @contextlib.asynccontextmanager
    async def lifespan(_app):
        for start in (writer.start, *(on_startup or [])):
            start()
        try:
            yield
        finally:
            for stop in (writer.stop, *(on_shutdown or [])):
                stop()

    # debug=False: an error answers a plain 500 (the guard logs the traceback, never sends it).
    starlette = GuardedStarlette(routes=routes, lifespan=lifespan, debug=False)
    starlette.state.hit_writer = writer
    starlette.state.cadence = app
    return starlette


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title></head>"
            f"<body style='font-family:sans-serif;max-width:32em;margin:4em auto'><h1>{escape(title)}</h1>{body}"
            "</body></html>")


def build_routes(app: App) -> tuple[list, list, list, list]:
    """Slack and OAuth routes plus start/stop hooks, from whichever parts are configured.

    Slack over HTTP is mounted when SLACK_SIGNING_SECRET and SLACK_BOT_TOKEN are set; Socket Mode
    runs beside the server when SLACK_APP_TOKEN is set (no public URL needed).
    """
    from bot.http import slack_drain, slack_routes_for
    from bot.socket import socket_mode_hooks
    from cadence.connect import oauth_routes

    slack_routes = slack_routes_for(app)
    starts: list = []
    stops: list = [lambda: slack_drain(slack_routes)]
    hooks = socket_mode_hooks(app)
    if hooks is not None:
        starts.append(hooks[0])
        stops.append(hooks[1])
    from cadence.crm_http import crm_routes

    return slack_routes, oauth_routes(app) + crm_routes(app), starts, stops


def serve(app: App, *, host: str, port: int, scheduler: bool = True) -> None:
    import uvicorn

    slack_routes, extra, starts, stops = build_routes(app)
    if scheduler:
        from cadence.worker.runtime import start_background_scheduler

        holder: dict = {}
        starts.append(lambda: holder.setdefault("scheduler", start_background_scheduler(app)))
        stops.append(lambda: holder["scheduler"].shutdown(wait=True) if "scheduler" in holder else None)
    http_app = create_http_app(app, slack_routes=slack_routes, extra_routes=extra, on_startup=starts,
                               on_shutdown=stops)
    uvicorn.run(**server_config(http_app, host=host, port=port, log_level="info"))
