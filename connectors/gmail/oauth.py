"""Google OAuth for `cadence mailbox connect gmail`: authorization code flow with PKCE (S256).

The installed-app flow: a one-shot HTTP listener on 127.0.0.1 receives Google's redirect,
the state is checked, and the code is exchanged (with the PKCE verifier) for a refresh token.
`access_type=offline` asks for a refresh token and `prompt=consent` makes Google issue a new one
even when the user approved this client before. Scopes are `GMAIL_SCOPES` (compose + readonly).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Callable, Collection
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from .mailbox import DEFAULT_TOKEN_URL, GMAIL_SCOPES

AUTH_URL = "https://accounts.google.com/o/oauth2/v2/auth"
TOKEN_URL = DEFAULT_TOKEN_URL


class OAuthError(Exception):
    """The sign-in did not produce a usable refresh token; the message says why."""


@dataclass(frozen=True)
class AuthorizationRequest:
    """One sign-in attempt: the URL to open, and what must be kept to finish it."""

    url: str
    state: str
    code_verifier: str
    redirect_uri: str
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class GrantedTokens:
    refresh_token: str
    access_token: str
    scopes: tuple[str, ...]
    expires_in: int | None = None


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 S256: base64url(sha256(verifier)) without padding."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).decode("ascii").rstrip("=")


def start_authorization(client_id: str, redirect_uri: str, *, auth_url: str = AUTH_URL,
                        scopes: Collection[str] = GMAIL_SCOPES, login_hint: str | None = None,
                        ) -> AuthorizationRequest:
    """Build Google's authorization URL with a fresh state and PKCE verifier."""
    if not client_id:
        raise ValueError("client_id: must not be empty (set CADENCE_GOOGLE_CLIENT_ID)")
    if not redirect_uri.startswith(("http://", "https://")):
        raise ValueError(f"redirect_uri: expected an http(s) URL, got {redirect_uri!r}")
    state = secrets.token_urlsafe(24)
    verifier = secrets.token_urlsafe(64)  # 86 characters, inside RFC 7636's 43..128
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": " ".join(scopes),
        "state": state,
        "code_challenge": pkce_challenge(verifier),
        "code_challenge_method": "S256",
        "access_type": "offline",
        "prompt": "consent",
    }
    if login_hint:
        params["login_hint"] = login_hint
    separator = "&" if "?" in auth_url else "?"
    return AuthorizationRequest(f"{auth_url}{separator}{urlencode(params)}", state, verifier, redirect_uri,
                                tuple(scopes))


def code_from_redirect(request: AuthorizationRequest, redirect_url: str) -> str:
    """The authorization code from Google's redirect, after checking the state."""
    query = {k: v[0] for k, v in parse_qs(urlsplit(redirect_url).query).items()}
    if "error" in query:
        raise OAuthError(f"Google sign-in failed: {query['error']} {query.get('error_description', '')}".strip())
    if not hmac.compare_digest(query.get("state", ""), request.state):
        raise OAuthError("the sign-in answer does not carry this sign-in's state; start again")
    if not query.get("code"):
        raise OAuthError("Google's answer has no authorization code")
    return query["code"]


def exchange_code(request: AuthorizationRequest, code: str, *, client_id: str, client_secret: str,
                  token_url: str = TOKEN_URL, timeout: float = 30) -> GrantedTokens:
    """Trade the code (and the PKCE verifier) for tokens; require a refresh token and every scope."""
    response = requests.post(token_url, data={
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": request.redirect_uri,
        "client_id": client_id,
        "client_secret": client_secret,
        "code_verifier": request.code_verifier,
    }, timeout=timeout)
    try:
        answer = response.json()
    except ValueError:
        answer = {}
    if response.status_code != 200:
        raise OAuthError(f"the token endpoint refused the code: HTTP {response.status_code} "
                         f"{answer.get('error', '')} {answer.get('error_description', '')}".strip())
    granted = tuple(answer.get("scope", " ".join(request.scopes)).split())
    missing = [s for s in request.scopes if s not in granted]
    if missing:
        # Google's consent screen lets the user untick scopes one by one.
        raise OAuthError(f"access was granted without {', '.join(missing)}; sign in again and allow all of them")
    if not answer.get("refresh_token"):
        raise OAuthError("Google returned no refresh token; remove Cadence's access in the Google account "
                         "settings and connect again")
    return GrantedTokens(answer["refresh_token"], answer.get("access_token", ""), granted, answer.get("expires_in"))


class LoopbackReceiver:
    """Waits on http://127.0.0.1:PORT/ for the one redirect the browser brings back."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        received: list[str] = []
        arrived = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if "code=" in self.path or "error=" in self.path:
                    received.append(self.path)
                    arrived.set()
                page = b"<p>Cadence: you can close this tab and return to the terminal.</p>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
                pass

        self._received, self._arrived = received, arrived
        self._server = HTTPServer((host, port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def redirect_uri(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    def __enter__(self) -> "LoopbackReceiver":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait(self, timeout: float) -> str:
        """The redirect URL the browser brought back; OAuthError after `timeout` seconds."""
        if not self._arrived.wait(timeout):
            raise OAuthError(f"no answer from the browser within {timeout:.0f} s")
        return self.redirect_uri.rstrip("/") + self._received[0]


def connect_gmail(*, client_id: str, client_secret: str, open_browser: Callable[[str], object],
                  auth_url: str = AUTH_URL, token_url: str = TOKEN_URL, login_hint: str | None = None,
                  timeout: float = 300) -> GrantedTokens:
    """The whole sign-in: `open_browser(url)` shows Google's consent page; returns the tokens."""
    with LoopbackReceiver() as receiver:
        request = start_authorization(client_id, receiver.redirect_uri, auth_url=auth_url, login_hint=login_hint)
        open_browser(request.url)
        redirect_url = receiver.wait(timeout)
    code = code_from_redirect(request, redirect_url)
    return exchange_code(request, code, client_id=client_id, client_secret=client_secret, token_url=token_url)
