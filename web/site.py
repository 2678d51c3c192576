"""What every page of the web app shares: who is asking, CSRF, rendering and security headers.

Every request reads the person from the store (`cadence.services.signin.person_of`): role and team
are never taken from the cookie. Every POST carries the session's CSRF token (form field `csrf`
or header `X-CSRF-Token`); without it the answer is 403 and nothing changes. Pages are sent with
a Content-Security-Policy allowing only this origin's scripts and styles (no inline script).
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime
from zoneinfo import ZoneInfo
from contextlib import nullcontext
from pathlib import Path
from typing import Awaitable, Callable

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from cadence.app import App
from cadence.services.errors import UserError
from cadence.services.reads import Viewer
from cadence.services.signin import COOKIE, csrf_ok, csrf_token, person_of
from web.assets import StaticAssets
from web.reading import Reading

log = logging.getLogger("cadence.web")

HERE = Path(__file__).parent
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "same-origin", "Cache-Control": "no-store, private"}
MAX_FORM_BYTES = 64 * 1024
UPLOAD_LIMIT = 1_000_000  # bytes of one uploaded campaign or contacts file

Handler = Callable[[Request, Viewer], Awaitable[Response]]


class Site:
    """One per server: the app, the read side, the templates and the preparations started here."""

    def __init__(self, app: App):
        self.app = app
        self.read = Reading(app)
        self.templates = Environment(loader=FileSystemLoader(HERE / "templates"),
                                     autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True,
                                     auto_reload=False)  # templates ship with the code: no stat per page
        self.static = StaticAssets(HERE / "static")
        self.templates.globals["static_url"] = self.static.url
        # SQLite: services read, then write, in one deferred transaction; two at once fail with
        # "database is locked". The web app's own changes are therefore made one at a time there.
        self.writing = threading.Lock() if app.db.is_sqlite else nullcontext()
        self.stopping = threading.Event()
        self.preparations: dict[int, threading.Thread] = {}

    @property
    def sign_in_with(self) -> list[tuple[str, str]]:
        """(name, label) of the identity providers configured for "Sign in with …"."""
        s = self.app.settings
        return [(name, label) for name, label, ok in (
            ("google", "Google", s.google_client_id and s.google_client_secret),
            ("microsoft", "Microsoft", s.ms_client_id and s.ms_client_secret)) if ok]

    @property
    def secure_cookies(self) -> bool:
        return self.app.settings.public_url.lower().startswith("https://")

    # -- rendering -----------------------------------------------------------------------------
    def page(self, request: Request, template: str, status_code: int = 200, person: Viewer | None = None,
             **context) -> HTMLResponse:
        cookie = request.cookies.get(COOKIE)
        html = self.templates.get_template(template).render(
            person=person, csrf=csrf_token(self.app, cookie) if person else "", request=request,
            path=request.url.path, timezone=self.zone_of(person), sign_in_with=self.sign_in_with, **context)
        return HTMLResponse(html, status_code=status_code, headers=HEADERS)

    def fragment(self, template: str, **context) -> str:
        return self.templates.get_template(template).render(**context)

    def not_found(self, request: Request, person: Viewer | None = None) -> HTMLResponse:
        return self.page(request, "not_found.html", 404, person)

    # -- who is asking -------------------------------------------------------------------------
    async def person(self, request: Request) -> Viewer | None:
        cookie = request.cookies.get(COOKIE)
        if not cookie:
            return None
        return await run_in_threadpool(person_of, self.app, cookie)

    def signed_in(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Wrap a handler: 401 page without a session; for POSTs, 403 without the CSRF token."""

        async def endpoint(request: Request) -> Response:
            person = await self.person(request)
            if person is None:
                return self.page(request, "signed_out.html", 401)
            if request.method == "POST":
                if not await self.csrf_passes(request):
                    log.warning("refused: %s sent %s %s without a valid CSRF token", person.email, request.method,
                                request.url.path)
                    return self.page(request, "csrf.html", 403, person)
            return await handler(request, person)

        return endpoint

    async def csrf_passes(self, request: Request) -> bool:
        cookie = request.cookies.get(COOKIE)
        token = request.headers.get("x-csrf-token")
        if not token:
            length = request.headers.get("content-length", "")
            if length.isdigit() and int(length) > UPLOAD_LIMIT + MAX_FORM_BYTES:
                return False
            form = await self.form(request)
            token = form.get("csrf") if form is not None else None
        return csrf_ok(self.app, cookie, token if isinstance(token, str) else None)

    async def form(self, request: Request):
        """The request's form, parsed once (uploads included); None when it cannot be parsed."""
        cached = getattr(request.state, "form", None)
        if cached is None:
            try:
                cached = await request.form(max_files=2, max_fields=50)
            except Exception:  # a malformed body is a refused form, never a traceback
                return None
            request.state.form = cached
        return cached

    def zone_of(self, person: Viewer | None) -> str:
        """The time zone a person's dates and times are read in: theirs, else CADENCE_TIMEZONE."""
        return (person.timezone if person and person.timezone else None) or self.app.settings.timezone

    def instant(self, person: Viewer, day: str, clock: str) -> datetime:
        """The Date and Time fields of a Schedule form, read in the person's zone; UserError unless in the future."""
        try:
            at = datetime.fromisoformat(f"{day.strip()}T{clock.strip()}")
        except ValueError:
            raise UserError("Schedule: give a date (YYYY-MM-DD) and a time (HH:MM)") from None
        zone = self.zone_of(person)
        at = at.replace(tzinfo=ZoneInfo(zone))
        if at <= self.app.clock.now():
            raise UserError(f"Schedule: {at:%Y-%m-%d %H:%M} ({zone}) is not in the future")
        return at

    def is_htmx(self, request: Request) -> bool:
        return request.headers.get("hx-request") == "true"


def parse_id(text: str) -> int | None:
    """A path id: a positive integer of sane length (ASCII digits only), else None (answered 404)."""
    # str.isdigit() also holds for '²' and '①', which int() refuses
    return int(text) if text.isascii() and text.isdigit() and 0 < len(text) < 18 else None
