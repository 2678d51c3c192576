"""Salesforce OAuth 2.0: the web server flow with PKCE, and the refresh token flow.

Follows "OAuth 2.0 Web Server Flow for Web App Integration" and "OAuth 2.0 Refresh Token Flow"
(Salesforce Help): `{login}/services/oauth2/authorize` and `{login}/services/oauth2/token`, where
`login` is https://login.salesforce.com (production) or https://test.salesforce.com (sandboxes).
PKCE is RFC 7636 with S256. The token response carries `instance_url` (the org's own host, used
for every REST call) and `id`, the identity URL ending in the org id and the user id.
"""
from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from urllib.parse import urlencode

import requests

from crm.errors import Disconnected, SignInError, Transient

SCOPES = "api refresh_token"
TIMEOUT = 30


@dataclass(frozen=True)
class Tokens:
    """A token response: `access_token`, `instance_url`, and `refresh_token` on a code exchange."""

    access_token: str
    instance_url: str
    refresh_token: str | None
    org_id: str | None
    user_id: str | None


@dataclass(frozen=True)
class Authorization:
    """A started sign-in: send the browser to `url`; keep `state` and `verifier` server-side."""

    url: str
    state: str
    verifier: str
    redirect_uri: str


def _endpoint(login_url: str, name: str) -> str:
    return f"{login_url.rstrip('/')}/services/oauth2/{name}"


def start_authorization(login_url: str, client_id: str, redirect_uri: str) -> Authorization:
    """The consent URL with a fresh `state` and PKCE S256 challenge (RFC 7636 §4.2)."""
    state = secrets.token_urlsafe(24)
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = urlencode({"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
                       "scope": SCOPES, "state": state, "code_challenge": challenge,
                       "code_challenge_method": "S256", "prompt": "login consent"})
    return Authorization(f"{_endpoint(login_url, 'authorize')}?{query}", state, verifier, redirect_uri)


def _tokens(answer: dict) -> Tokens:
    identity = str(answer.get("id") or "").rstrip("/").split("/")
    org_id, user_id = (identity[-2], identity[-1]) if len(identity) >= 2 and "id" in identity else (None, None)
    return Tokens(access_token=answer["access_token"], instance_url=answer["instance_url"].rstrip("/"),
                  refresh_token=answer.get("refresh_token"), org_id=org_id, user_id=user_id)


def _post(http: requests.Session, login_url: str, form: dict, *, refresh: bool) -> Tokens:
    try:
        response = http.post(_endpoint(login_url, "token"), data=form, timeout=TIMEOUT,
                             headers={"Accept": "application/json"})
    except requests.RequestException as exc:
        raise Transient(f"Salesforce token endpoint unreachable: {type(exc).__name__}") from None
    try:
        answer = response.json()
    except ValueError:
        answer = {}
    if response.status_code >= 500 or (response.status_code != 200 and not answer):
        raise Transient(f"Salesforce token endpoint answered HTTP {response.status_code}")
    if response.status_code != 200 or "access_token" not in answer:
        error = answer.get("error", "error")
        text = f"{error}: {answer.get('error_description', 'no description')}"
        if refresh and error == "invalid_grant":
            raise Disconnected(f"Salesforce refused the refresh token ({text}); sign in again with "
                               "`cadence crm connect salesforce`")
        raise SignInError(f"Salesforce refused the sign-in ({text})")
    return _tokens(answer)


def exchange_code(http: requests.Session, login_url: str, auth: Authorization, code: str, *, client_id: str,
                  client_secret: str | None) -> Tokens:
    """Authorization code + PKCE verifier → tokens (raises SignInError, Transient)."""
    form = {"grant_type": "authorization_code", "code": code, "client_id": client_id,
            "redirect_uri": auth.redirect_uri, "code_verifier": auth.verifier}
    if client_secret:
        form["client_secret"] = client_secret
    tokens = _post(http, login_url, form, refresh=False)
    if not tokens.refresh_token:
        raise SignInError("Salesforce gave no refresh token: the connected app needs the scope `refresh_token`")
    return tokens


def refresh(http: requests.Session, login_url: str, refresh_token: str, *, client_id: str,
            client_secret: str | None) -> Tokens:
    """A new access token (raises Disconnected on `invalid_grant`, Transient, SignInError)."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id}
    if client_secret:
        form["client_secret"] = client_secret
    return _post(http, login_url, form, refresh=True)
