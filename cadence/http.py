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
"""
from __future__ import annotations

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
from cadence.services.engagement import SentFacts, resolve, sent_message_facts
from cadence.tracking_http import PIXEL, NO_CACHE, HitWriter, TrackingFast, click_response, pixel_response
from core.vocabulary import EventKind

__all__ = ["NO_CACHE", "PIXEL", "HitWriter", "build_routes", "create_http_app", "serve"]

log = logging.getLogger("cadence.http")

PAGE_HEADERS = {**NO_CACHE, "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"}


def _not_found() -> Response:
    return PlainTextResponse("not found", status_code=404, headers=NO_CACHE)


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
            writer.count(EventKind.OPENED, found[1], app.clock.now())
        return pixel_response()

    async def track_click(request: Request) -> Response:
        found = resolve(app, request.path_params["token"], "c", cached_facts)
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

    def resolve_hit(kind: str, token: str):
        found = resolve(app, token, kind, cached_facts)
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
