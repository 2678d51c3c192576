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
from cadence.services.audience import EnrollReport, enroll, parse_send_at
from cadence.services.reads.activity import DayActivity
from cadence.services.reads.launch import LaunchOptions
from web import uploads
from web.uploads import read_upload
from core.vocabulary import CampaignState
from web.reading import CampaignView
from web.explain import explained
from web.site import HEADERS, Site, log, parse_id

CONFIRMS = ("prepare", "send", "stop")
LIVE_TICK = 2.0  # seconds between two looks at the figures (the page promises at most 5)
LIVE_LIFETIME = 60.0  # a live stream ends after this long; the browser reconnects by itself
LOG_ROWS = 2000
LEVELS = ("info", "warning", "error")
LAUNCH_CLOSED = (CampaignState.STOPPED.value, CampaignState.PREPARING.value)


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


async def enroll_from_form(site: Site, view: CampaignView, person: Viewer, options: LaunchOptions, choice: dict,
                           form) -> EnrollReport:
    """`cadence enroll` with the launch form's choices; UserError for any refusal (nothing enrolled)."""
    if choice["mailbox"] not in options.mailboxes:
        raise UserError("Mailbox: choose one of your team's mailboxes")
    send_at = None
    if options.asks_for_send_time:
        if not (choice["send_date"] and choice["send_time"]):
            raise UserError("Send time: this campaign's first email goes at a time chosen at launch; "
                            "give a date and a time")
        send_at = parse_send_at(f"{choice['send_date']} {choice['send_time']}")
    selection: dict = {}
    if choice["who"] == "all":
        selection["everyone"] = True
    elif choice["who"] == "csv":
        name, data = await read_upload(form, "contacts", "contacts (CSV)")
        selection["contacts_data"] = (name, data)
        selection["owners_allowed"] = person.may_act_for
    elif choice["who"] == "filter":
        if not (choice["owner"] or choice["company"]):
            raise UserError("Filter: choose an owner or give a company")
        if choice["owner"] and choice["owner"] not in {email for email, _ in options.owners}:
            raise UserError("Owner: choose one of your team's reps")
        selection.update(owner=choice["owner"] or None, company=choice["company"] or None)
    else:
        raise UserError("People: choose all contacts, a contacts file or a filter")

    def run() -> EnrollReport:
        with site.writing:
            return enroll(site.app, view.name, mailbox=choice["mailbox"], send_at=send_at, **selection)

    return await run_in_threadpool(run)


def chart_of(days: list[DayActivity]) -> dict | None:
    """The dashboard chart's geometry (an SVG drawn by _chart.html): one group of four bars per day."""
    if not days:
        return None
    series = (("sent", "Sent"), ("opens", "Opens"), ("clicks", "Clicks"), ("replies", "Replies"))
    top = max(max(getattr(d, key) for key, _ in series) for d in days) or 1
    height, plot = 160.0, 720.0
    slot = min(64.0, plot / len(days))
    bar = round(slot * 0.8 / 4, 1)
    groups = []
    for i, d in enumerate(days):
        x = 44 + i * slot + slot * 0.1
        bars = [{"key": key, "label": label, "value": getattr(d, key), "x": round(x + j * bar, 1),
                 "h": round(height * getattr(d, key) / top, 1)} for j, (key, label) in enumerate(series)]
        groups.append({"day": d.day.isoformat(), "x": round(x, 1), "bars": bars})
    return {"groups": groups, "series": series, "top": top, "height": height, "bar": bar,
            "width": round(44 + max(len(days) * slot, 320.0) + 10, 1), "label_every": max(1, len(days) // 8),
            "days": days}


def routes(site: Site) -> list[Route]:
    app = site.app

    async def home(request: Request, person: Viewer, upload_errors: list[str] | None = None,
                   status_code: int = 200) -> Response:
        campaigns = await run_in_threadpool(site.read.campaigns, person)
        crm_notice = await run_in_threadpool(crm_disconnected, app)
        done = {k: request.query_params.get(k) for k in ("campaign", "imported", "updated", "unchanged")
                if request.method == "GET" and (request.query_params.get(k) or "").isalnum()}
        return site.page(request, "home.html", status_code, person, campaigns=campaigns, crm_notice=crm_notice,
                         upload_errors=upload_errors or [], done=done)

    async def visible(request: Request, person: Viewer, fresh: bool = True) -> CampaignView | None:
        campaign_id = parse_id(request.path_params["cid"])
        if campaign_id is None:
            return None
        return await run_in_threadpool(site.read.campaign, person, campaign_id, fresh=fresh)

    def dashboard_page(request: Request, person: Viewer, view: CampaignView, *, confirm: str | None = None,
                       error: str | None = None, status_code: int = 200, launch: dict | None = None) -> Response:
        p = view.status["preparation"]
        may_launch = view.may_control and view.state not in LAUNCH_CLOSED
        options = site.read.launch_options(person, view.id) if may_launch else None
        enrolled = {k: request.query_params.get(k) for k in ("enrolled", "already")
                    if (request.query_params.get(k) or "").isdigit()}
        return site.page(request, "campaign.html", status_code, person, c=view, s=view.status, p=p,
                         d=view.status["delivery"], controls=controls_for(view.state, p["current"]) if view.may_control
                         else set(), confirm=confirm, error=error, live=True, options=options,
                         launch=launch or {}, enrolled=enrolled, chart=chart_of(site.read.activity(view)))

    async def dashboard(request: Request, person: Viewer) -> Response:
        view = await visible(request, person, fresh=False)
        if view is None:
            return site.not_found(request, person)
        confirm = request.query_params.get("confirm")
        return await run_in_threadpool(lambda: dashboard_page(request, person, view,
                                                              confirm=confirm if confirm in CONFIRMS else None))

    async def explain_page(request: Request, person: Viewer) -> Response:
        view = await visible(request, person, fresh=False)
        if view is None:
            return site.not_found(request, person)
        contact = request.query_params.get("contact", "").strip()[:320]
        return await explained(site, request, person, view.name, contact, back=(f"/campaigns/{view.id}", view.name))

    async def enroll_people(request: Request, person: Viewer, view: CampaignView) -> Response:
        form = await site.form(request) or {}
        choice = {k: str(form.get(k, "")).strip()[:320] for k in
                  ("who", "mailbox", "owner", "company", "send_date", "send_time")}
        try:
            options = await run_in_threadpool(site.read.launch_options, person, view.id)
            if view.state in LAUNCH_CLOSED or options is None:
                raise UserError(f"\u201c{view.name}\u201d is {view.state}; people cannot be added now")
            report = await enroll_from_form(site, view, person, options, choice, form)
            site.read.forget(view.id)
        except UserError as refused:
            log.info("%s: enrolling into %r refused: %s", person.email, view.name, refused)
            fresh = await run_in_threadpool(site.read.campaign, person, view.id) or view
            message = str(refused)
            return await run_in_threadpool(lambda: dashboard_page(request, person, fresh, error=message,
                                                                  status_code=400, launch=choice))
        log.info("%s: enrolled %d into campaign %r from the web (mailbox %s, already %d)", person.email,
                 report.enrolled, view.name, choice["mailbox"], report.already)
        return RedirectResponse(f"/campaigns/{view.id}?enrolled={report.enrolled}&already={report.already}#launch",
                                status_code=303, headers=HEADERS)

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
            message = (f"You may not change \u201c{view.name}\u201d: it also sends from mailboxes outside your "
                       "team. Ask its owner or an admin.")
            return await run_in_threadpool(lambda: dashboard_page(request, person, view, status_code=403,
                                                                  error=message))
        if action == "enroll":
            return await enroll_people(request, person, view)
        form = await site.form(request) or {}
        try:
            await run_in_threadpool(carry_out, view, action, form, person)
            site.read.forget(view.id)
        except UserError as refused:
            fresh = await run_in_threadpool(site.read.campaign, person, view.id) or view
            message = str(refused)
            return await run_in_threadpool(lambda: dashboard_page(request, person, fresh, error=message,
                                                                  status_code=409))
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
                                                 "resume", "stop", "enroll"):
            return await unknown_action(request, person)
        return await act(request, person)

    return [
        Route("/", site.signed_in(home), methods=["GET"]),
        Route("/campaigns/{cid}", site.signed_in(dashboard), methods=["GET"]),
        Route("/campaigns/{cid}/figures", site.signed_in(figures), methods=["GET"]),
        Route("/campaigns/{cid}/live", site.signed_in(live), methods=["GET"]),
        Route("/campaigns/{cid}/logs", site.signed_in(logs), methods=["GET"]),
        Route("/campaigns/{cid}/explain", site.signed_in(explain_page), methods=["GET"]),
        Route("/campaigns/{cid}/{action}", site.signed_in(route_action), methods=["POST"]),
        *uploads.routes(site, home),
    ]
