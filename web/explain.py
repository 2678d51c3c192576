"""Why is this message here: the page of `cadence explain CAMPAIGN --contact E`, reached from a
dashboard (`/campaigns/<id>/explain?contact=E`, and each contact of its Logs) and from a task
(`/tasks/<id>/explain`). The explanation is `cadence.services.reads.explain` (`core.explain`)."""
from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from cadence.services.errors import UserError
from cadence.services.reads import Viewer
from cadence.services.reads.explain import explain_contact
from web.site import Site


async def explained(site: Site, request: Request, person: Viewer, campaign: str, contact: str, *,
                    back: tuple[str, str]) -> Response:
    """The page of `cadence explain CAMPAIGN --contact E` (the caller has checked the campaign is visible)."""
    if not contact:
        return site.page(request, "explain.html", 400, person, campaign=campaign, contact="", back=back,
                         error="Contact: give the person's email address")
    try:
        name, facts, steps = await run_in_threadpool(explain_contact, site.app, campaign, contact)
    except UserError as refused:
        return site.page(request, "explain.html", 404, person, campaign=campaign, contact=contact, back=back,
                         error=str(refused).removeprefix("--contact: "))
    return site.page(request, "explain.html", person=person, campaign=name, contact=contact, facts=facts,
                     steps=steps, back=back, error=None)
