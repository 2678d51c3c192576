"""`cadence serve`: Starlette app for Slack events, tracking, unsubscribe, OAuth callbacks, /healthz.

Tracking (`/t/o/TOKEN` open pixel, `/t/c/TOKEN` click redirect) and unsubscribe (`/u/TOKEN`):
- a token is HMAC-signed and names a sent message (and, for a click, the index of a link stored
  when the message was prepared); a tampered, foreign or unknown token, a link index the
  message does not have, or a message that was not sent gets a 404 and records nothing;
- the redirect goes to the stored link only, and only when it is an absolute http(s) URL: the
  URL of the request never chooses the destination, so there is no open redirect;
- every accepted hit is counted exactly once, and stored as at most one open per message and one
  click per link per minute (repeats add to that row's `hits`: a URL requested 20,000 times is
  one row per minute, not 20,000): hits are verified in the request, counted in memory by row
  key and written in batches by one writer thread (`cadence.tracking_http.HitWriter`: one upsert
  per batch, not one transaction per hit); a batch that cannot be written goes back, and stopping
  the server writes what is left;
- a plain GET of a tracking URL whose token resolves is answered by `TrackingFast` in front of
  the app (cached resolution, no routing or middleware); everything else reaches the routes below;
- GET /u/TOKEN only shows a page with a confirm button (link scanners follow GETs); POST
  (the button, or a mail provider's RFC 8058 one-click request) opts the contact out of every
  campaign at once.

No handler waits on the database or the network on the event loop: a slow or unreachable
database holds up the requests that need it, never the others (Slack acks, tracking URLs whose
facts are cached, static files). A token's signature and the cached facts are checked on the loop;
reading a message's facts goes to Starlette's threadpool.

GET /healthz: `SELECT 1` on the database, in the threadpool, one probe at a time (requests that
come while one is under way share its answer: a stalled database holds one thread, not one per
probe). 200 `{"ok": true, "time": ISO 8601 of the app's clock}`, or 503
`{"ok": false, "database": "unavailable"}`: the database's error goes to the server's log, never
to the client, as one warning when the probe starts failing and one when it works again.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from html import escape
from typing import Callable

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from cadence.app import App
from cadence.guard import GuardedStarlette, server_config
from cadence.heap import settle
from cadence.outage import OutageLog
from cadence.services.engagement import Hit, hit_of, resolve, sent_messages_facts
from cadence.tracking_http import (PIXEL, NO_CACHE, FactsLoader, HitWriter, TrackingFast, click_response,
                                   pixel_response)
from core.tracking import TrackingToken, verify_token
from core.vocabulary import EventKind

__all__ = ["NO_CACHE", "PIXEL", "DatabaseProbe", "HitWriter", "build_routes", "create_http_app", "serve"]

log = logging.getLogger("cadence.http")

PAGE_HEADERS = {**NO_CACHE, "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"}


def _not_found() -> Response:
    return PlainTextResponse("not found", status_code=404, headers=NO_CACHE)


class DatabaseProbe:
    """The database check of /healthz: `SELECT 1` through `app.db.reading()`, run in Starlette's
    threadpool, one at a time.

    `await probe()` is True when the database answered, False when it raised (any `Exception`).
    A call while a check is under way waits for that check's answer instead of starting another,
    so a database that never answers holds one thread however often /healthz is asked. The
    error is logged as one warning when checks start failing and one when they work again
    (`cadence.outage.OutageLog`), not once per check; `outage.failing` says which it is now.
    """

    def __init__(self, app: App):
        self.app = app
        self.outage = OutageLog(log, "health probe: the database is unavailable",
                                "health probe: the database works again; /healthz answers 200")
        self._running: asyncio.Future[bool] | None = None

    def check(self) -> bool:
        """One check, in the calling thread (blocks as long as the database does)."""
        try:
            with self.app.db.reading() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - the probe reports, it does not crash
            self.outage.failed(exc, "/healthz answers 503")
            return False
        self.outage.worked()
        return True

    async def __call__(self) -> bool:
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(run_in_threadpool(self.check))
        # shielded: a client that goes away cancels its wait, not the check the others share
        return await asyncio.shield(self._running)


def create_http_app(app: App, *, slack_routes: list | None = None, extra_routes: list | None = None,
                    on_startup: list[Callable] | None = None, on_shutdown: list[Callable] | None = None) -> Starlette:
    writer = HitWriter(app)

    probe = DatabaseProbe(app)
    facts = FactsLoader(lambda message_ids: sent_messages_facts(app, message_ids))

    async def resolve_tracking(token: str, kind: str) -> tuple[TrackingToken, Hit] | None:
        """`resolve` without blocking the loop: the signature and cached facts are checked here
        (no I/O); facts not cached are read off the loop (`FactsLoader`). Raises what the
        database raises."""
        parsed = verify_token(app.settings.secret_keys, token)
        if parsed is None or parsed.kind != kind:
            return None
        found = facts.known(parsed.message_id)
        return hit_of(parsed, found if found is not None else await facts.load(parsed.message_id))

    async def track_open(request: Request) -> Response:
        found = await resolve_tracking(request.path_params["token"], "o")
        if found is None:
            return _not_found()
        if request.method == "GET":  # a HEAD is a prefetcher checking the link, not a person opening
            writer.count(EventKind.OPENED, found[1], app.clock.now())
        return pixel_response()

    async def track_click(request: Request) -> Response:
        found = await resolve_tracking(request.path_params["token"], "c")
        if found is None:  # never redirect anywhere but to an absolute http(s) link we stored
            return _not_found()
        parsed, hit = found
        if request.method == "GET":
            writer.count(EventKind.CLICKED, hit, app.clock.now(), parsed.link_id)
        return click_response(hit.destination)

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
        if not await probe():  # what the database said is in the log, not for whoever asks
            return JSONResponse({"ok": False, "database": "unavailable"}, status_code=503, headers=NO_CACHE)
        return JSONResponse({"ok": True, "time": app.clock.now().isoformat()}, headers=NO_CACHE)

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
            # Each part stops even when one before it fails (the hit writer raises when the
            # database is down): Slack's drain and the scheduler's shutdown must still run.
            failed: BaseException | None = None
            for stop in (writer.stop, *(on_shutdown or [])):
                try:
                    stop()
                except Exception as exc:  # noqa: BLE001 - logged here, the first raised after the rest
                    log.exception("stopping %s failed", getattr(stop, "__qualname__", stop))
                    failed = failed or exc
            if failed is not None:
                raise failed

    # debug=False: an error answers a plain 500 (the guard logs the traceback, never sends it).
    starlette = GuardedStarlette(routes=routes, lifespan=lifespan, debug=False)
    starlette.state.hit_writer = writer
    starlette.state.health_probe = probe

    async def resolve_hit(kind: str, token: str) -> tuple[Hit, int | None] | None:
        found = await resolve_tracking(token, kind)
        return None if found is None else (found[1], found[0].link_id)

    starlette.front = lambda inner: TrackingFast(inner, resolve_hit, writer, app.clock.now)
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
    # What is loaded by now (modules, routes, templates) lives as long as the server: left out of
    # the collector's full passes, which otherwise walked it all every few seconds under load and
    # held every request up for 60-90 ms of CPU each time (bench.web's p99).
    settle()
    uvicorn.run(**server_config(http_app, host=host, port=port, log_level="info"))
