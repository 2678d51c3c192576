"""Sign-in with Google or Microsoft (OpenID Connect), when their OAuth clients are configured
(CADENCE_GOOGLE_CLIENT_ID / _SECRET, CADENCE_MS_CLIENT_ID / _SECRET: the mailboxes' clients),
through `cadence.services.identity`.

`GET /signin/oidc/<provider>` starts a sign-in: a fresh state, nonce and PKCE verifier are kept
server-side for OIDC_LIFETIME seconds under the state, bound to this browser by a random cookie
(only its SHA-256 is kept) and the browser goes to the provider. `GET /signin/oidc/<provider>/callback`
accepts the answer only with that cookie, once; the ID token is verified (`connectors.oidc`),
and the person is the rep with that email address (else refused). Like a link, it lands on `/`.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from cadence.services.signin import COOKIE, SESSION_LIFETIME, session_for_email
from cadence.services import identity as oidc
from web.site import HEADERS, Site, log

OIDC_LIFETIME = 600.0
OIDC_COOKIE = "cadence_oidc"


class Pending:
    """Sign-ins under way, by state: (started, provider, attempt, SHA-256 of the browser's cookie)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, tuple[float, str, oidc.Attempt, str]] = {}

    def put(self, provider: str, attempt: oidc.Attempt, browser: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._items = {k: v for k, v in self._items.items() if now - v[0] < OIDC_LIFETIME}
            if len(self._items) > 10_000:  # a flood of starts cannot grow memory without bound
                self._items.clear()
            self._items[attempt.state] = (now, provider, attempt, browser)

    def pop(self, state: str) -> tuple[str, oidc.Attempt, str] | None:
        with self._lock:
            found = self._items.pop(state, None)
        if found is None or time.monotonic() - found[0] >= OIDC_LIFETIME:
            return None
        return found[1], found[2], found[3]


def routes(site: Site) -> list[Route]:
    app = site.app
    pending = Pending()
    base = app.settings.public_url.rstrip("/")

    def refused(request: Request, reason: str) -> Response:
        response = site.page(request, "signin_refused.html", 400, None, reason=reason)
        response.delete_cookie(OIDC_COOKIE, path="/signin/oidc/", httponly=True, samesite="lax",
                               secure=site.secure_cookies)
        return response

    async def begin(request: Request) -> Response:
        name = request.path_params["provider"]
        provider = oidc.providers(app).get(name)
        if provider is None:
            return site.not_found(request)
        attempt = oidc.start(provider, f"{base}/signin/oidc/{name}/callback")
        secret = secrets.token_urlsafe(32)
        pending.put(name, attempt, hashlib.sha256(secret.encode()).hexdigest())
        response = RedirectResponse(attempt.url, status_code=302, headers={**HEADERS, "Referrer-Policy": "no-referrer"})
        response.set_cookie(OIDC_COOKIE, secret, max_age=int(OIDC_LIFETIME), path="/signin/oidc/", httponly=True,
                            samesite="lax", secure=site.secure_cookies)
        return response

    async def callback(request: Request) -> Response:
        name = request.path_params["provider"]
        provider = oidc.providers(app).get(name)
        if provider is None:
            return site.not_found(request)
        answer = {k: v[:2000] for k, v in request.query_params.items()}
        found = pending.pop(answer.get("state", ""))
        if found is None or found[0] != name:
            log.warning("refused: a %s sign-in answer that belongs to no sign-in started here", name)
            return refused(request, "This answer does not belong to a sign-in started here, or it took too long. "
                                    "Start again.")
        _, attempt, browser = found
        presented = request.cookies.get(OIDC_COOKIE, "")
        if not presented or not hmac.compare_digest(hashlib.sha256(presented.encode()).hexdigest(), browser):
            log.warning("refused: a %s sign-in answer from a browser that did not start it", name)
            return refused(request, "This sign-in was started in another browser. Start again in this one.")
        try:
            email = await run_in_threadpool(oidc.finish, provider, attempt, answer)
        except oidc.SignInError as failure:
            log.warning("refused: a %s sign-in: %s", name, failure)
            return refused(request, f"Sign-in with {provider.label} failed: {failure}.")
        made = await run_in_threadpool(session_for_email, app, email)
        if made is None:
            log.warning("refused: %s signed in with %s but is no rep", email, name)
            return refused(request, f"{email} is not a Cadence user here; ask an administrator to add you.")
        cookie, person = made
        log.info("%s (%s) signed in to the web app with %s", person.email, person.role, provider.label)
        response = RedirectResponse("/", status_code=303, headers={**HEADERS, "Referrer-Policy": "no-referrer"})
        response.set_cookie(COOKIE, cookie, max_age=int(SESSION_LIFETIME.total_seconds()), path="/",
                            httponly=True, samesite="lax", secure=site.secure_cookies)
        response.delete_cookie(OIDC_COOKIE, path="/signin/oidc/", httponly=True, samesite="lax",
                               secure=site.secure_cookies)
        return response

    return [
        Route("/signin/oidc/{provider}", begin, methods=["GET"]),
        Route("/signin/oidc/{provider}/callback", callback, methods=["GET"]),
    ]
