"""Connecting a rep's Gmail or Outlook mailbox: OAuth sign-in that ends in `mailbox add`.

Two ways in:
- `cadence mailbox connect gmail|outlook --owner E` in a terminal: the browser comes back to a
  loopback listener on this machine (Outlook can use `--device-code` instead, for a terminal
  without a browser);
- `cadence mailbox connect … --link`: prints a signed, expiring link to `cadence serve`'s
  `/oauth/<provider>/start`, whose callback (`/oauth/<provider>/callback`) finishes the sign-in.
  Only a link signed with the secret key starts a sign-in, so nobody can attach a mailbox to a
  rep by guessing URLs. A link starts one sign-in only (its digest is stored when used), and that
  sign-in is bound to the browser that opened the link (a cookie set by `/start`, holding the
  key to the OAuth state and PKCE verifier kept server-side): a consent page forwarded to someone
  else ends in a refused callback, never in their mailbox connected to the link's rep.
"""
from __future__ import annotations

import binascii
import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
import webbrowser
from base64 import urlsafe_b64decode, urlsafe_b64encode
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from rich.console import Console
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from cadence.app import App
from cadence.services.directory import add_mailbox, find_rep
from cadence.services.errors import UserError

log = logging.getLogger("cadence.connect")

LINK_LIFETIME = 3600
PENDING_LIFETIME = 900


def _require(value: str | None, name: str) -> str:
    if not value:
        raise UserError(f"{name} is not set; see docs/{'gmail' if 'GOOGLE' in name else 'outlook'}.md")
    return value


def _check_owner(app: App, owner: str) -> str:
    with app.db.session() as session:
        return find_rep(session, owner).email


def _gmail_address(app: App, refresh_token: str) -> str:
    from connectors.gmail import GmailMailbox

    s = app.settings
    mailbox = GmailMailbox("unknown@invalid", refresh_token=refresh_token, client_id=s.google_client_id,
                           client_secret=s.google_client_secret, api_url=s.gmail_api_url, token_url=s.google_token_url)
    try:
        return mailbox.account_address()
    finally:
        mailbox.close()


def _store_gmail(app: App, owner: str, refresh_token: str) -> str:
    address = _gmail_address(app, refresh_token)
    add_mailbox(app, provider="gmail", address=address, owner=owner, credentials={"refresh_token": refresh_token})
    return address


def _store_outlook(app: App, owner: str, connection) -> str:
    add_mailbox(app, provider="outlook", address=connection.username, owner=owner,
                credentials={"token_cache": connection.token_cache, "username": connection.username,
                             "public_client": connection.public_client})
    return connection.username


def _outlook_sign_in(app: App, *, public: bool = False):
    from connectors.outlook import OutlookSignIn

    s = app.settings
    return OutlookSignIn(client_id=_require(s.ms_client_id, "CADENCE_MS_CLIENT_ID"),
                         client_secret=None if public else s.ms_client_secret, authority=s.ms_authority)


def connect_mailbox(app: App, provider: str, *, owner: str, device_code: bool = False, port: int = 0,
                    console: Console, link: bool = False, open_browser=None, timeout: float = 300) -> str:
    """Run a sign-in from the terminal and register the mailbox; returns its address."""
    owner = _check_owner(app, owner)
    if provider not in ("gmail", "outlook"):
        raise UserError(f"provider: {provider!r} is not gmail or outlook")
    if link:
        url = connect_link(app, provider, owner)
        console.print("Open this link (valid for an hour) while `cadence serve` runs:", markup=False)
        console.print(url, soft_wrap=True, markup=False, highlight=False)
        return url
    opener = open_browser or _open_browser(console)
    if provider == "gmail":
        from connectors.gmail.oauth import OAuthError, connect_gmail

        s = app.settings
        try:
            tokens = connect_gmail(client_id=_require(s.google_client_id, "CADENCE_GOOGLE_CLIENT_ID"),
                                   client_secret=_require(s.google_client_secret, "CADENCE_GOOGLE_CLIENT_SECRET"),
                                   open_browser=opener, token_url=s.google_token_url, timeout=timeout,
                                   **({"auth_url": s.google_auth_url} if s.google_auth_url else {}))
        except OAuthError as refused:
            raise UserError(str(refused)) from None
        address = _store_gmail(app, owner, tokens.refresh_token)
    elif device_code:
        from connectors.outlook import OutlookSignInError

        sign_in = _outlook_sign_in(app, public=True)
        try:
            flow = sign_in.start_device_flow()
            console.print(flow["message"], soft_wrap=True, markup=False, highlight=False)
            connection = sign_in.finish_device_flow(flow)
        except OutlookSignInError as refused:
            raise UserError(refused.reason) from None
        address = _store_outlook(app, owner, connection)
    else:
        from connectors.gmail.oauth import LoopbackReceiver, OAuthError
        from connectors.outlook import OutlookSignInError

        sign_in = _outlook_sign_in(app)
        try:
            with LoopbackReceiver(port=port) as receiver:
                redirect = receiver.redirect_uri.replace("127.0.0.1", "localhost")
                flow = sign_in.start_auth_code_flow(redirect, response_mode="query")
                opener(flow["auth_uri"])
                answer = receiver.wait(timeout)
            from urllib.parse import parse_qs, urlsplit

            query = {k: v[0] for k, v in parse_qs(urlsplit(answer).query).items()}
            connection = sign_in.finish_auth_code_flow(flow, query)
        except (OutlookSignInError, OAuthError) as refused:
            raise UserError(getattr(refused, "reason", str(refused))) from None
        address = _store_outlook(app, owner, connection)
    console.print(f"mailbox {address} ({provider}) connected for {owner}")
    return address


def _open_browser(console: Console):
    def opener(url: str) -> None:
        console.print("Sign in here (your browser should open):", markup=False)
        console.print(url, soft_wrap=True, markup=False, highlight=False)
        try:
            webbrowser.open(url)
        except webbrowser.Error:
            pass
    return opener


# -- signed links and server callbacks ---------------------------------------------------------

def _sign(key: bytes, payload: str | bytes) -> str:
    data = payload.encode() if isinstance(payload, str) else payload
    return urlsafe_b64encode(hmac.new(key, data, hashlib.sha256).digest()[:18]).decode()


def connect_link(app: App, provider: str, owner: str) -> str:
    """A signed, single-use link to `/oauth/<provider>/start`, valid for LINK_LIFETIME seconds."""
    expires = int(app.clock.now().timestamp()) + LINK_LIFETIME
    payload = f"{provider}|{owner}|{expires}|{secrets.token_urlsafe(12)}"
    token = urlsafe_b64encode(payload.encode()).decode().rstrip("=") + "." + _sign(app.settings.secret_keys[0], payload)
    return f"{app.settings.public_url.rstrip('/')}/oauth/{provider}/start?t={token}"


@dataclass(frozen=True)
class ConnectLink:
    owner: str
    expires: int  # Unix time
    digest: str  # SHA-256 hex of the signed payload: what makes the link single-use


def verify_link(app: App, provider: str, token: str) -> str | None:
    """The owner a valid, unexpired link names, else None (never an exception, whatever `token` holds)."""
    link = read_link(app, provider, token)
    return link.owner if link else None


def read_link(app: App, provider: str, token: str) -> ConnectLink | None:
    """A valid, unexpired link's fields, else None. The signature is checked on the raw payload
    bytes before any field is read; `provider|owner|expires|nonce` (older links lack the nonce)."""
    body, _, signature = token.rpartition(".")
    if not body or len(token) > 2048 or not body.isascii() or not signature.isascii():
        return None
    try:
        raw = urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (ValueError, binascii.Error):
        return None
    if not any(hmac.compare_digest(_sign(k, raw), signature) for k in app.settings.secret_keys):
        return None
    try:
        fields = raw.decode("utf-8").split("|")
    except UnicodeDecodeError:
        return None
    if len(fields) not in (3, 4):
        return None
    link_provider, owner, expires = fields[:3]
    if link_provider != provider or not owner or not re.fullmatch(r"[0-9]{1,12}", expires):
        return None
    if int(expires) < app.clock.now().timestamp():
        return None
    return ConnectLink(owner, int(expires), hashlib.sha256(raw).hexdigest())


class PendingSignIns:
    """Sign-ins started by the server, found again by their OAuth state (kept server-side).

    Each is bound to the browser that started it: `/start` sets a random cookie whose SHA-256
    is kept with the sign-in (and with it the PKCE verifier), and the callback is accepted only
    from a browser presenting that cookie. A callback from any other browser is refused and ends
    the sign-in.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, tuple[float, dict[str, Any]]] = {}

    def put(self, state: str, item: dict[str, Any]) -> None:
        with self._lock:
            now = time.monotonic()
            self._items = {k: v for k, v in self._items.items() if now - v[0] < PENDING_LIFETIME}
            self._items[state] = (now, item)

    def pop(self, state: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._items.pop(state, None)
        return found[1] if found and time.monotonic() - found[0] < PENDING_LIFETIME else None


def _cookie_name(state: str) -> str:
    # One cookie per sign-in, so two sign-ins started in one browser do not displace each other.
    return "cadence_oauth_" + hashlib.sha256(state.encode()).hexdigest()[:16]


def _bind_to_browser(app: App, response: Response, provider: str, state: str) -> str:
    """Set the sign-in's cookie on `response`; returns the SHA-256 hex to keep with the sign-in."""
    secret = secrets.token_urlsafe(32)
    response.set_cookie(_cookie_name(state), secret, max_age=PENDING_LIFETIME, path=f"/oauth/{provider}/",
                        httponly=True, samesite="lax", secure=app.settings.public_url.startswith("https:"))
    return hashlib.sha256(secret.encode()).hexdigest()


def _same_browser(request: Request, state: str, item: dict[str, Any]) -> bool:
    presented = request.cookies.get(_cookie_name(state), "")
    return bool(presented) and hmac.compare_digest(hashlib.sha256(presented.encode()).hexdigest(), item["browser"])


def _use_link(app: App, link: ConnectLink) -> bool:
    from datetime import datetime, timezone

    from store.tokens import use_once

    return use_once(app.db, link.digest, "connect", app.clock.now(),
                    datetime.fromtimestamp(link.expires, timezone.utc))


def _page(title: str, text: str, status: int = 200) -> HTMLResponse:
    from html import escape

    return HTMLResponse(f"<!doctype html><meta charset='utf-8'><title>{escape(title)}</title>"
                        f"<h1>{escape(title)}</h1><p>{escape(text)}</p>", status_code=status)


LINK_INVALID = "This connect link is not valid or has expired."
LINK_USED = "This connect link was used already; ask for a new one (cadence mailbox connect … --link)."
NOT_STARTED_HERE = "This answer does not belong to a sign-in started here."
OTHER_BROWSER = ("This sign-in was started in another browser; open your connect link in the browser you "
                 "sign in with.")


def oauth_routes(app: App) -> list[Route]:
    """`/oauth/<provider>/start` (a signed, single-use link: sets the browser's cookie, redirects to
    the consent page) and `/oauth/<provider>/callback` (same browser only), for gmail and outlook."""
    pending = PendingSignIns()
    base = app.settings.public_url.rstrip("/")

    def answer_of(request: Request, state: str) -> tuple[dict[str, Any] | None, Response | None]:
        item = pending.pop(state)
        if item is None:
            return None, _page("Sign-in not recognised", NOT_STARTED_HERE, 400)
        if not _same_browser(request, state, item):
            log.warning("refused an OAuth callback from a browser that did not start the sign-in (owner %s)",
                        item["owner"])
            return None, _page("Sign-in refused", OTHER_BROWSER, 400)
        return item, None

    def finished(page: Response, request: Request, provider: str, state: str) -> Response:
        page.delete_cookie(_cookie_name(state), path=f"/oauth/{provider}/")
        return page

    async def gmail_start(request: Request) -> Response:
        from connectors.gmail.oauth import start_authorization

        link = read_link(app, "gmail", request.query_params.get("t", ""))
        if link is None:
            return _page("Link not valid", LINK_INVALID, 403)
        s = app.settings
        if not s.google_client_id:
            return _page("Not configured", "CADENCE_GOOGLE_CLIENT_ID is not set on the server.", 503)
        if not await run_in_threadpool(_use_link, app, link):
            return _page("Link already used", LINK_USED, 403)
        auth = start_authorization(s.google_client_id, f"{base}/oauth/gmail/callback",
                                   **({"auth_url": s.google_auth_url} if s.google_auth_url else {}))
        response = RedirectResponse(auth.url, status_code=302, headers={"Cache-Control": "no-store"})
        browser = _bind_to_browser(app, response, "gmail", auth.state)
        pending.put(auth.state, {"owner": link.owner, "request": auth, "browser": browser})
        return response

    async def gmail_callback(request: Request) -> Response:
        from connectors.gmail.oauth import OAuthError, code_from_redirect, exchange_code

        state = request.query_params.get("state", "")
        item, refused = answer_of(request, state)
        if item is None:
            return refused
        s = app.settings
        try:
            code = code_from_redirect(item["request"], str(request.url))
            tokens = await run_in_threadpool(exchange_code, item["request"], code, client_id=s.google_client_id,
                                             client_secret=s.google_client_secret, token_url=s.google_token_url)
            address = await run_in_threadpool(_store_gmail, app, item["owner"], tokens.refresh_token)
        except (OAuthError, UserError) as failure:
            return finished(_page("Sign-in failed", str(failure), 400), request, "gmail", state)
        return finished(_page("Mailbox connected", f"{address} is connected for {item['owner']}."), request,
                        "gmail", state)

    async def outlook_start(request: Request) -> Response:
        from connectors.outlook import OutlookSignInError

        link = read_link(app, "outlook", request.query_params.get("t", ""))
        if link is None:
            return _page("Link not valid", LINK_INVALID, 403)
        try:
            sign_in = _outlook_sign_in(app)
        except UserError as refused:
            return _page("Sign-in unavailable", str(refused), 503)
        if not await run_in_threadpool(_use_link, app, link):
            return _page("Link already used", LINK_USED, 403)
        try:
            # query, not form_post: the answer is then a top-level GET, which carries the
            # SameSite=Lax cookie binding it to this browser (a cross-site POST would not).
            flow = await run_in_threadpool(sign_in.start_auth_code_flow, f"{base}/oauth/outlook/callback",
                                           response_mode="query")
        except OutlookSignInError as refused:
            return _page("Sign-in unavailable", refused.reason, 503)
        response = RedirectResponse(flow["auth_uri"], status_code=302, headers={"Cache-Control": "no-store"})
        browser = _bind_to_browser(app, response, "outlook", flow["state"])
        pending.put(flow["state"], {"owner": link.owner, "flow": flow, "browser": browser})
        return response

    async def outlook_callback(request: Request) -> Response:
        from connectors.outlook import OutlookSignInError

        if request.method == "POST":  # form_post: application/x-www-form-urlencoded
            answer = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
        else:
            answer = dict(request.query_params)
        state = str(answer.get("state", ""))
        item, refused = answer_of(request, state)
        if item is None:
            return refused
        try:
            connection = await run_in_threadpool(_outlook_sign_in(app).finish_auth_code_flow, item["flow"], answer)
            address = await run_in_threadpool(_store_outlook, app, item["owner"], connection)
        except (OutlookSignInError, UserError) as failure:
            return finished(_page("Sign-in failed", getattr(failure, "reason", str(failure)), 400), request,
                            "outlook", state)
        return finished(_page("Mailbox connected", f"{address} is connected for {item['owner']}."), request,
                        "outlook", state)

    return [
        Route("/oauth/gmail/start", gmail_start),
        Route("/oauth/gmail/callback", gmail_callback),
        Route("/oauth/outlook/start", outlook_start),
        Route("/oauth/outlook/callback", outlook_callback, methods=["GET", "POST"]),
    ]
