"""`/` and the delivery dashboard: prepare, send or schedule, pause, resume, stop, logs, live figures.

Thin: parse, check who may do it, call the use case (`cadence.services.preparing`,
`cadence.services.campaigns`, `cadence.services.reads`), render. A campaign the person may not
see answers 404 on every route; one they may see but not change (it also sends from mailboxes
outside their team) shows no buttons and refuses actions with 403.
"""
from __future__ import annotations

import asyncio
import json
import threading
import time

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from cadence.services.campaigns import pause_campaign, resume_campaign, send_campaign, stop_campaign
from cadence.services.crm import crm_disconnected
from cadence.services.errors import UserError
from cadence.services.preparing import PreparationStopped, prepare
from cadence.services.reads import campaign_logs
from cadence.services.reads import Viewer
from core.vocabulary import CampaignState
from web.reading import CampaignView
from web.site import HEADERS, Site, log, parse_id

CONFIRMS = ("prepare", "send", "stop")
LIVE_TICK = 2.0  # seconds between two looks at the figures (the page promises at most 5)
LIVE_LIFETIME = 60.0  # a live stream ends after this long; the browser reconnects by itself
LOG_ROWS = 2000
LEVELS = ("info", "warning", "error")


def controls_for(state: str, current: bool) -> set[str]:
    """The buttons that apply in a state (the others are absent)."""
    s = CampaignState(state)
    if s is CampaignState.PREPARING:
        return {"stop-preparation"}
    if s is CampaignState.PREPARED:
        return {"prepare", "send", "schedule", "stop"} if current else {"prepare", "stop"}
    if s in (CampaignState.DRAFT, CampaignState.FAILED, CampaignState.FINISHED):
        return {"prepare"}
    if s is CampaignState.SCHEDULED:
        return {"pause", "stop"}
    if s is CampaignState.SENDING:
        return {"pause", "stop"}
    if s is CampaignState.PAUSED:
        return {"resume", "stop"}
    return set()


def start_preparation(site: Site, view: CampaignView, viewer: Viewer) -> str | None:
    """Prepare in a thread of its own (a large audience takes a while); returns the refusal, if any,
    once the preparation has started (or finished, for a small one)."""
    outcome: dict = {}

    def run() -> None:
        try:
            result = prepare(site.app, view.name, should_stop=site.stopping.is_set)
            log.info("preparation of %r started from the web by %s: %s", view.name, viewer.email,
                     result.state.value)
        except UserError as refused:
            outcome["error"] = str(refused)
        except PreparationStopped:
            log.info("preparation of %r stopped", view.name)
        except Exception:  # the preparation logged it for the campaign; the server keeps serving
            log.exception("preparation of %r failed", view.name)
        finally:
            site.preparations.pop(view.id, None)

    thread = threading.Thread(target=run, name=f"cadence-prepare-{view.id}", daemon=True)
    site.preparations[view.id] = thread
    thread.start()
    deadline = time.monotonic() + 1.0
    while thread.is_alive() and time.monotonic() < deadline:
        thread.join(0.05)
        if site.read.campaign_state(viewer, view.id) == CampaignState.PREPARING.value:
            break
    return outcome.get("error")


def routes(site: Site) -> list[Route]:
    app = site.app

    async def home(request: Request, person: Viewer) -> Response:
        campaigns = await run_in_threadpool(site.read.campaigns, person)
        crm_notice = await run_in_threadpool(crm_disconnected, app)
        return site.page(request, "home.html", person=person, campaigns=campaigns, crm_notice=crm_notice)

    async def visible(request: Request, person: Viewer, fresh: bool = True) -> CampaignView | None:
        campaign_id = parse_id(request.path_params["cid"])
        if campaign_id is None:
            return None
        return await run_in_threadpool(site.read.campaign, person, campaign_id, fresh=fresh)

    def dashboard_page(request: Request, person: Viewer, view: CampaignView, *, confirm: str | None = None,
                       error: str | None = None, status_code: int = 200) -> Response:
        p = view.status["preparation"]
        return site.page(request, "campaign.html", status_code, person, c=view, s=view.status, p=p,
                         d=view.status["delivery"], controls=controls_for(view.state, p["current"]) if view.may_control
                         else set(), confirm=confirm, error=error, live=True)

    async def dashboard(request: Request, person: Viewer) -> Response:
        view = await visible(request, person)
        if view is None:
            return site.not_found(request, person)
        confirm = request.query_params.get("confirm")
        return dashboard_page(request, person, view, confirm=confirm if confirm in CONFIRMS else None)

    async def figures(request: Request, person: Viewer) -> Response:
        view = await visible(request, person, fresh=False)
        if view is None:
            return site.not_found(request, person)
        return site.page(request, "_figures.html", person=person, c=view, s=view.status,
                         p=view.status["preparation"], d=view.status["delivery"])

    async def live(request: Request, person: Viewer) -> Response:
        campaign_id = parse_id(request.path_params["cid"])
        view = await visible(request, person, fresh=False)
        if view is None or campaign_id is None:
            return site.not_found(request, person)

        async def stream():
            yield "retry: 2000\n\n"
            last = None
            started = time.monotonic()
            while time.monotonic() - started < LIVE_LIFETIME and not site.stopping.is_set():
                if await request.is_disconnected():
                    return
                current = await run_in_threadpool(site.read.campaign, person, campaign_id, fresh=False)
                if current is None:
                    return
                html = site.fragment("_figures.html", c=current, s=current.status, p=current.status["preparation"],
                                     d=current.status["delivery"])
                if html != last:
                    last = html
                    yield f"data: {json.dumps({'state': current.state, 'figures': html})}\n\n"
                else:
                    yield ": tick\n\n"
                await asyncio.sleep(LIVE_TICK)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={**HEADERS, "X-Accel-Buffering": "no"})

    async def logs(request: Request, person: Viewer) -> Response:
        view = await visible(request, person)
        if view is None:
            return site.not_found(request, person)
        level = request.query_params.get("level", "")
        cause = request.query_params.get("cause", "")
        rows = await run_in_threadpool(campaign_logs, app, view.name)
        causes = sorted({r["cause"] for r in rows if r["cause"]})
        if level in LEVELS:
            rows = [r for r in rows if r["level"] == level]
        if cause:
            rows = [r for r in rows if r["cause"] == cause]
        errors = sum(1 for r in rows if r["level"] == "error")
        shown = rows[-LOG_ROWS:]
        return site.page(request, "logs.html", person=person, c=view, rows=shown, total=len(rows), errors=errors,
                         levels=LEVELS, causes=causes, level=level if level in LEVELS else "", cause=cause)

    async def act(request: Request, person: Viewer) -> Response:
        view = await visible(request, person)
        action = request.path_params["action"]
        if view is None:
            return site.not_found(request, person)
        if not view.may_control:
            log.warning("refused: %s may not %s campaign %r (mailboxes outside their team)", person.email, action,
                        view.name)
            return dashboard_page(request, person, view, status_code=403,
                                  error=f"You may not change \u201c{view.name}\u201d: it also sends from mailboxes "
                                        "outside your team. Ask its owner or an admin.")
        form = await site.form(request) or {}
        try:
            await run_in_threadpool(carry_out, view, action, form, person)
        except UserError as refused:
            fresh = await run_in_threadpool(site.read.campaign, person, view.id) or view
            return dashboard_page(request, person, fresh, error=str(refused), status_code=409)
        return RedirectResponse(f"/campaigns/{view.id}", status_code=303, headers=HEADERS)

    def carry_out(view: CampaignView, action: str, form, person: Viewer) -> None:
        if action not in controls_for(view.state, view.status["preparation"]["current"]):
            raise UserError(f"\u201c{view.name}\u201d is {view.state}: {action.replace('-', ' ')} does not apply now")
        if action == "prepare":
            refused = start_preparation(site, view, person)
            if refused:
                raise UserError(refused)
            return
        with site.writing:
            if action == "stop-preparation":
                stop_campaign(app, view.name)
            elif action == "send":
                send_campaign(app, view.name)
            elif action == "schedule":
                send_campaign(app, view.name, site.instant(person, str(form.get("date", "")),
                                                           str(form.get("time", ""))))
            elif action == "pause":
                pause_campaign(app, view.name)
            elif action == "resume":
                resume_campaign(app, view.name)
            elif action == "stop":
                stop_campaign(app, view.name)
        log.info("%s: %s campaign %r from the web", person.email, action, view.name)

    async def unknown_action(request: Request, person: Viewer) -> Response:
        return site.not_found(request, person)

    async def route_action(request: Request, person: Viewer) -> Response:
        if request.path_params["action"] not in ("prepare", "stop-preparation", "send", "schedule", "pause",
                                                 "resume", "stop"):
            return await unknown_action(request, person)
        return await act(request, person)

    return [
        Route("/", site.signed_in(home), methods=["GET"]),
        Route("/campaigns/{cid}", site.signed_in(dashboard), methods=["GET"]),
        Route("/campaigns/{cid}/figures", site.signed_in(figures), methods=["GET"]),
        Route("/campaigns/{cid}/live", site.signed_in(live), methods=["GET"]),
        Route("/campaigns/{cid}/logs", site.signed_in(logs), methods=["GET"]),
        Route("/campaigns/{cid}/{action}", site.signed_in(route_action), methods=["POST"]),
    ]
