"""Uploads on `/`: a campaign YAML (`POST /upload/campaign`) or a contacts CSV (`POST /upload/contacts`).

Read by the CLI's importers (`cadence.services.imports`), so a bad file gets the CLI's sentence
naming the file, line and field, and nothing is written: a contacts file with one bad row imports
no row (the CLI's `--strict`). A file over UPLOAD_LIMIT bytes is refused before it is read (the
server's RequestGuard bounds the whole body as well). Who may do what: a new campaign is an
admin's; an existing one not yet launched may be replaced by whoever may change it (every
sending mailbox their team's); contacts may be given only to reps of one's team (`owner`).
"""
from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from cadence.services.errors import UserError
from cadence.services.imports import import_campaign_data, import_contacts_data
from cadence.services.reads import Viewer, visible_campaign
from web.site import HEADERS, UPLOAD_LIMIT, Site, log

MAX_SHOWN_REJECTIONS = 20


async def read_upload(form, field: str, kind: str) -> tuple[str, bytes]:
    """(file name, bytes) of the form's file `field`; UserError when missing, empty or too large."""
    upload = form.get(field) if form is not None else None
    if not isinstance(upload, UploadFile) or not upload.filename:
        raise UserError(f"choose a {kind} file to upload")
    name = upload.filename.replace("\\", "/").rsplit("/", 1)[-1][:200] or "upload"
    data = await upload.read(UPLOAD_LIMIT + 1)
    await upload.close()
    if len(data) > UPLOAD_LIMIT:
        raise UserError(f"{name}: the file is over {UPLOAD_LIMIT // 1_000_000} MB; import it with the command line")
    if not data.strip():
        raise UserError(f"{name}: the file is empty")
    return name, data


def routes(site: Site, home_page) -> list[Route]:
    app = site.app

    async def upload_campaign(request: Request, person: Viewer) -> Response:
        form = await site.form(request)
        try:
            name, data = await read_upload(form, "campaign", "campaign (YAML)")

            def may_change(campaign_id: int) -> bool:
                ref = visible_campaign(app, person, campaign_id)
                return ref is not None and person.may_control_campaign(ref.owner_ids)

            def run() -> tuple[str, bool]:
                with site.writing:
                    return import_campaign_data(app, data, source=name, may_create=person.is_admin,
                                                may_change=may_change)

            campaign, created = await run_in_threadpool(run)
        except UserError as refused:
            log.info("%s: campaign upload refused: %s", person.email, refused)
            return await home_page(request, person, upload_errors=[str(refused)], status_code=400)
        log.info("%s: %s campaign %r from an upload (%s)", person.email, "created" if created else "updated",
                 campaign, name)
        return RedirectResponse(f"/?campaign={'created' if created else 'updated'}", status_code=303,
                                headers=HEADERS)

    async def upload_contacts(request: Request, person: Viewer) -> Response:
        form = await site.form(request)
        try:
            name, data = await read_upload(form, "contacts", "contacts (CSV)")

            def run():
                with site.writing:
                    return import_contacts_data(app, data, source=name, strict=True,
                                                owners_allowed=person.may_act_for)

            report = await run_in_threadpool(run)
        except UserError as refused:
            log.info("%s: contacts upload refused: %s", person.email, refused)
            return await home_page(request, person, upload_errors=[str(refused)], status_code=400)
        if report.rejected:
            shown = [f"{name}, {r}" for r in report.rejected[:MAX_SHOWN_REJECTIONS]]
            if len(report.rejected) > MAX_SHOWN_REJECTIONS:
                shown.append(f"… and {len(report.rejected) - MAX_SHOWN_REJECTIONS} more bad row(s)")
            shown.append(f"{name}: {len(report.rejected)} bad row(s); nothing was written")
            log.info("%s: contacts upload %s refused: %d bad row(s)", person.email, name, len(report.rejected))
            return await home_page(request, person, upload_errors=shown, status_code=400)
        log.info("%s: contacts upload %s: imported %d, updated %d, unchanged %d", person.email, name,
                 report.imported, report.updated, report.unchanged)
        return RedirectResponse(f"/?imported={report.imported}&updated={report.updated}"
                                f"&unchanged={report.unchanged}", status_code=303, headers=HEADERS)

    return [
        Route("/upload/campaign", site.signed_in(upload_campaign), methods=["POST"]),
        Route("/upload/contacts", site.signed_in(upload_contacts), methods=["POST"]),
    ]
