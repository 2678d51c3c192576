"""`cadence serve`'s Salesforce sign-in: /oauth/salesforce/start → Salesforce → /oauth/salesforce/callback.

The start URL must carry a link from `cadence crm connect salesforce --link` (the mailbox links'
format, `cadence.connect.connect_link`): signed with the secret key, unexpired, and usable once
(`store.tokens.use_once`). Opening it sets a cookie that binds the sign-in to that browser: the
callback is accepted only with the same cookie and the `state` Cadence sent, and the code is
exchanged with the PKCE verifier kept on the server.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from datetime import datetime, timezone
from html import escape

import requests
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from cadence.app import App
from cadence.connect import PendingSignIns, read_link
from cadence.services.crm import store_connection
from cadence.services.errors import UserError
from crm.errors import CrmError
from crm.oauth import exchange_code, start_authorization
from store.tokens import use_once

log = logging.getLogger("cadence.crm")
COOKIE = "cadence_crm_sign_in"
PROVIDER = "salesforce"
HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}


def _page(title: str, text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(f"<!doctype html><meta charset='utf-8'><title>{escape(title)}</title>"
                        f"<h1>{escape(title)}</h1><p>{escape(text)}</p>", status_code=status, headers=HEADERS)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _use_link(app: App, token: str) -> str | None:
    """The owner named by a valid link not used before (used up now), else None."""
    link = read_link(app, PROVIDER, token)
    if link is None or not use_once(app.db, link.digest, "crm-connect", app.clock.now(),
                                    datetime.fromtimestamp(link.expires, timezone.utc)):
        return None
    return link.owner


def crm_routes(app: App) -> list[Route]:
    pending = PendingSignIns()
    base = app.settings.public_url.rstrip("/")
    redirect_uri = f"{base}/oauth/salesforce/callback"

    async def start(request: Request) -> Response:
        s = app.settings
        if not s.salesforce_client_id:  # the feature is not set up here: nothing to find (no 5xx to strangers)
            return _page("Not configured", "CADENCE_SALESFORCE_CLIENT_ID is not set on the server.", 404)
        owner = await run_in_threadpool(_use_link, app, request.query_params.get("t", ""))
        if owner is None:
            return _page("Link not valid", "This connect link is not valid, has expired or was already used.", 403)
        auth = start_authorization(s.salesforce_login_url, s.salesforce_client_id, redirect_uri)
        browser = secrets.token_urlsafe(24)
        pending.put(auth.state, {"owner": owner, "auth": auth, "browser": _digest(browser)})
        response = RedirectResponse(auth.url, status_code=302, headers=HEADERS)
        response.set_cookie(COOKIE, browser, max_age=900, path="/oauth/salesforce", httponly=True, samesite="lax",
                            secure=base.startswith("https://"))
        return response

    async def callback(request: Request) -> Response:
        item = pending.pop(request.query_params.get("state", ""))
        if item is None:
            return _page("Sign-in not recognised", "This answer does not belong to a sign-in started here.", 400)
        cookie = request.cookies.get(COOKIE, "")
        if not cookie or not hmac.compare_digest(_digest(cookie), item["browser"]):
            log.warning("refused a Salesforce sign-in callback from a browser that did not start it (owner %s)",
                        item["owner"])
            return _page("Sign-in not recognised", "This sign-in was started in another browser; "
                         "ask for a new link and open it in this one.", 400)
        if "error" in request.query_params or "code" not in request.query_params:
            reason = request.query_params.get("error_description") or request.query_params.get("error") or "no code"
            return _page("Sign-in failed", f"Salesforce answered: {reason}", 400)
        s = app.settings

        def finish() -> str:
            http = requests.Session()
            tokens = exchange_code(http, s.salesforce_login_url, item["auth"], request.query_params["code"],
                                   client_id=s.salesforce_client_id, client_secret=s.salesforce_client_secret)
            store_connection(app, item["owner"], tokens.refresh_token, tokens)
            return tokens.instance_url

        try:
            instance = await run_in_threadpool(finish)
        except (CrmError, UserError) as refused:
            return _page("Sign-in failed", getattr(refused, "reason", str(refused)), 400)
        response = _page("Salesforce connected", f"{instance} is connected for {item['owner']}; "
                         "Cadence now writes activities there.")
        response.delete_cookie(COOKIE, path="/oauth/salesforce")
        return response

    return [Route("/oauth/salesforce/start", start), Route("/oauth/salesforce/callback", callback)]
