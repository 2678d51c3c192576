"""`/tasks` (the rep's command centre), the compose page of one task, and `/feed` (the live feed).

Sending from the compose page first saves the edited subject and body into the draft in the rep's
own mailbox (`edit_task`), then sends that draft (`send_task`): the provider's Sent folder then
holds the one email, and Drafts nothing. A task that is not the person's (or their team's)
answers 404.
"""
from __future__ import annotations

import asyncio
import json
import time

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from cadence.services.errors import UserError
from cadence.services.reads import TaskDetail, Viewer
from cadence.services.task_schedule import schedule_task, scheduled_at, unschedule_task
from cadence.services.tasks import edit_task, send_task, skip_task
from core.vocabulary import TaskState
from web.explain import explained
from web.reading import TASKS_PER_PAGE
from web.site import HEADERS, Site, log, parse_id

OPEN_LABELS = {"gmail": "Open in Gmail", "outlook": "Open in Outlook"}
FEED_TICK = 2.0
FEED_LIFETIME = 60.0


def routes(site: Site) -> list[Route]:
    app = site.app

    async def tasks(request: Request, person: Viewer) -> Response:
        asked = request.query_params.get("page", "")
        number = parse_id(asked) if len(asked) < 7 else None
        page = await run_in_threadpool(site.read.tasks, person, number or 1)
        shown = len(page.tasks)
        number = page.offset // TASKS_PER_PAGE + 1
        pages = {"number": number, "first": page.offset + 1, "last": page.offset + shown,
                 "previous": number - 1 if number > 1 else None,
                 "next": number + 1 if page.offset + shown < page.total else None,
                 "count": max(1, -(-page.total // TASKS_PER_PAGE))}
        return await run_in_threadpool(lambda: site.page(
            request, "tasks.html", person=person, tasks=page.tasks, total=page.total, pages=pages,
            now=app.clock.now(), done=request.query_params.get("done", "")))

    async def visible(request: Request, person: Viewer) -> TaskDetail | None:
        task_id = parse_id(request.path_params["tid"])
        if task_id is None:
            return None
        return await run_in_threadpool(site.read.task, person, task_id)

    def compose_page(request: Request, person: Viewer, task: TaskDetail, *, subject: str | None = None,
                     body: str | None = None, error: str | None = None, status_code: int = 200) -> Response:
        return site.page(request, "compose.html", status_code, person, t=task.view,
                         send_at=scheduled_at(app, task.view.id),
                         subject=task.view.subject if subject is None else subject,
                         body=task.body if body is None else body, error=error,
                         open_label=OPEN_LABELS.get(task.provider, "Open draft"),
                         is_open=task.view.state == TaskState.OPEN.value, now=app.clock.now())

    async def compose(request: Request, person: Viewer) -> Response:
        task = await visible(request, person)
        if task is None:
            return site.not_found(request, person)
        return await run_in_threadpool(compose_page, request, person, task)

    async def explain_task(request: Request, person: Viewer) -> Response:
        task = await visible(request, person)
        if task is None:
            return site.not_found(request, person)
        return await explained(site, request, person, task.view.campaign, task.view.contact,
                               back=(f"/tasks/{task.view.id}", f"Task: {task.view.contact}"))

    async def act(request: Request, person: Viewer) -> Response:
        action = request.path_params["action"]
        task = await visible(request, person)
        if task is None or action not in ("send", "save", "skip", "schedule"):
            return site.not_found(request, person)
        form = await site.form(request) or {}
        subject = str(form.get("subject", task.view.subject))
        day, clock = str(form.get("date", "")), str(form.get("time", ""))
        body = str(form.get("body", task.body)).replace("\r\n", "\n")
        try:
            note = await run_in_threadpool(carry_out, task, action, subject, body, person, day, clock)
        except UserError as refused:
            site.read.forget_tasks()
            fresh = await run_in_threadpool(site.read.task, person, task.view.id) or task
            message = str(refused)
            return await run_in_threadpool(lambda: compose_page(request, person, fresh, subject=subject, body=body,
                                                                error=message, status_code=409))
        site.read.forget_tasks()
        if action in ("save", "schedule"):
            return RedirectResponse(f"/tasks/{task.view.id}?{'saved' if action == 'save' else 'scheduled'}=1",
                                    status_code=303, headers=HEADERS)
        return RedirectResponse(f"/tasks?done={note}", status_code=303, headers=HEADERS)

    def carry_out(task: TaskDetail, action: str, subject: str, body: str, person: Viewer, day: str = "",
                  clock: str = "") -> str:
        view = task.view
        if view.state != TaskState.OPEN.value:
            raise UserError(f"this task is {view.state}, not open")
        at = site.instant(person, day, clock) if action == "schedule" else None
        with site.writing:
            if action in ("send", "save", "schedule") and (subject.strip() != view.subject.strip()
                                                           or body.strip() != task.body.strip()):
                edit_task(app, view.id, subject=subject, body=body)
                log.info("%s: saved the draft of task %s (to %s) from the web", person.email, view.id, view.contact)
            if action == "schedule":
                schedule_task(app, view.id, at)
                log.info("%s: scheduled task %s (to %s) for %s from the web", person.email, view.id, view.contact,
                         at.isoformat())
                return "scheduled"
            if action == "send":
                unschedule_task(app, view.id)
                send_task(app, view.id)
                log.info("%s: sent task %s to %s from the web", person.email, view.id, view.contact)
                return "sent"
            if action == "skip":
                skip_task(app, view.id)
                log.info("%s: skipped task %s (to %s) from the web", person.email, view.id, view.contact)
                return "skipped"
        return "saved"

    async def feed(request: Request, person: Viewer) -> Response:
        events = await run_in_threadpool(site.read.feed, person)
        return site.page(request, "feed.html", person=person, events=events, live=True)

    async def feed_live(request: Request, person: Viewer) -> Response:
        after = max(parse_id(request.query_params.get("after", "0")) or 0,
                    parse_id(request.headers.get("last-event-id", "")) or 0)  # a reconnecting browser

        async def stream():
            nonlocal after
            yield "retry: 2000\n\n"
            started = time.monotonic()
            while time.monotonic() - started < FEED_LIFETIME and not site.stopping.is_set():
                if await request.is_disconnected():
                    return
                events = await run_in_threadpool(site.read.feed, person, after)
                if events:
                    after = events[0].id
                    rows = "".join(site.fragment("_feed_row.html", e=e) for e in reversed(events))
                    yield f"id: {after}\ndata: {json.dumps({'after': after, 'rows': rows})}\n\n"
                else:
                    yield ": tick\n\n"
                await asyncio.sleep(FEED_TICK)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={**HEADERS, "X-Accel-Buffering": "no"})

    return [
        Route("/tasks", site.signed_in(tasks), methods=["GET"]),
        Route("/tasks/{tid}", site.signed_in(compose), methods=["GET"]),
        Route("/tasks/{tid}/explain", site.signed_in(explain_task), methods=["GET"]),
        Route("/tasks/{tid}/{action}", site.signed_in(act), methods=["POST"]),
        Route("/feed", site.signed_in(feed), methods=["GET"]),
        Route("/feed/live", site.signed_in(feed_live), methods=["GET"]),
    ]
