"""A fake Microsoft identity platform (Entra ID v2.0 endpoints) over HTTPS on 127.0.0.1.

The real msal talks to it: OpenID configuration discovery, `/authorize` (auth-code + PKCE),
`/token` (authorization_code, refresh_token, device_code grants) and `/devicecode`. Its id
tokens are RS256 JWTs signed with the key published at `/<tenant>/discovery/v2.0/keys` (msal does
not check them; the web app's OpenID Connect sign-in does), carrying `preferred_username`, `oid`
and `tid`. The fake Graph server asks it which user an access token belongs to.

Test controls: `sign_in(username)` picks who is signed in at the "browser", `complete_sign_in`
plays the browser, `approve_device_code`, `require_consent` (refresh answers `invalid_grant`
AADSTS65001 and live access tokens stop working), `expire_access_tokens`.
"""
from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from .graph_server import FakeHTTPServer, Reply, Request
from .oidc_keys import SigningKeys
from .tls import TestTLS

RESERVED_SCOPES = {"openid", "profile", "offline_access"}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class _User:
    username: str
    oid: str
    name: str
    needs_consent: bool = False


@dataclass
class _Grant:
    """What an authorization code, device code or refresh token stands for."""

    username: str
    client_id: str
    scopes: list[str]
    redirect_uri: str | None = None
    code_challenge: str | None = None
    nonce: str | None = None
    approved: bool = True
    declined: bool = False
    expires_at: float = 0.0
    used: bool = False


@dataclass
class _AccessToken:
    username: str
    expires_at: float


@dataclass
class _Client:
    client_id: str
    client_secret: str | None
    redirect_uris: set[str] = field(default_factory=set)


class FakeIdentityServer(FakeHTTPServer):
    """Entra ID's v2.0 endpoints for one tenant; `authority` is what msal is configured with."""

    def __init__(self, tls: TestTLS, *, port: int = 0, tenant_id: str | None = None,
                 access_token_lifetime: int = 3600, device_code_interval: int = 1):
        super().__init__(port=port, ssl_context=tls.server_context())
        self.tls = tls
        self.tenant_id = tenant_id or str(uuid.uuid4())
        self.access_token_lifetime = access_token_lifetime
        self.device_code_interval = device_code_interval
        self.lock = threading.RLock()
        self.clients: dict[str, _Client] = {}
        self.users: dict[str, _User] = {}
        self.signed_in: str | None = None
        self.token_requests: list[dict[str, str]] = []  # every form posted to /token
        self._codes: dict[str, _Grant] = {}
        self._device_codes: dict[str, _Grant] = {}
        self._user_codes: dict[str, str] = {}
        self._refresh_tokens: dict[str, _Grant] = {}
        self._access_tokens: dict[str, _AccessToken] = {}
        self.signing = SigningKeys()

    # ---- setup and controls

    def authority(self, tenant: str = "organizations") -> str:
        return f"{self.base_url}/{tenant}"

    def register_client(self, client_id: str, client_secret: str | None = None,
                        redirect_uris: tuple[str, ...] = ()) -> None:
        with self.lock:
            self.clients[client_id] = _Client(client_id, client_secret, set(redirect_uris))

    def add_user(self, username: str, name: str | None = None) -> None:
        with self.lock:
            self.users.setdefault(username.lower(), _User(username, str(uuid.uuid4()),
                                                          name or username.split("@")[0].title()))

    def sign_in(self, username: str) -> None:
        """The person at the browser is `username` and consents to whatever is asked."""
        self.add_user(username)
        self.signed_in = username.lower()

    def complete_sign_in(self, auth_uri: str) -> dict[str, str]:
        """Play the browser: open `auth_uri`, and return what reaches the redirect URI (the
        query of a redirect, or the fields of a form_post page)."""
        answer = requests.get(auth_uri, allow_redirects=False, verify=str(self.tls.ca_path), timeout=10)
        if answer.status_code in (302, 303):
            return {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["Location"]).query).items()}
        answer.raise_for_status()
        return {html.unescape(name): html.unescape(value) for name, value in
                re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', answer.text)}

    def approve_device_code(self, user_code: str, username: str) -> None:
        with self.lock:
            self.add_user(username)
            grant = self._device_codes[self._user_codes[user_code]]
            grant.username, grant.approved = username.lower(), True

    def decline_device_code(self, user_code: str) -> None:
        with self.lock:
            self._device_codes[self._user_codes[user_code]].declined = True

    def require_consent(self, username: str) -> None:
        """The app needs consent again (new permission, consent revoked): refresh tokens answer
        `invalid_grant` AADSTS65001 and access tokens already handed out stop working."""
        with self.lock:
            self.users[username.lower()].needs_consent = True
            self._revoke_access_tokens(username)

    def expire_access_tokens(self, username: str) -> None:
        with self.lock:
            self._revoke_access_tokens(username)

    def user_for_access_token(self, token: str) -> str | None:
        """The username behind a live access token, or None (unknown, expired, revoked)."""
        with self.lock:
            found = self._access_tokens.get(token)
            if found is None or found.expires_at < time.time():
                return None
            return found.username

    def _revoke_access_tokens(self, username: str) -> None:
        for token, found in list(self._access_tokens.items()):
            if found.username == username.lower():
                del self._access_tokens[token]

    # ---- HTTP

    def handle(self, request: Request) -> Reply:
        if re.fullmatch(r"/[^/]+/discovery/v2\.0/keys", request.path) and request.method == "GET":
            return Reply.json(200, self.signing.jwks())
        match = re.fullmatch(r"/([^/]+)(/v2\.0/\.well-known/openid-configuration|/oauth2/v2\.0/(token|devicecode|authorize))",
                             request.path)
        if not match:
            return Reply.json(404, {"error": "not_found", "error_description": f"No endpoint {request.path}"})
        tenant, endpoint = match.group(1), match.group(3) or "openid-configuration"
        with self.lock:
            if endpoint == "openid-configuration" and request.method == "GET":
                return Reply.json(200, self._openid_configuration(tenant))
            if endpoint == "authorize" and request.method == "GET":
                return self._authorize(tenant, request.query)
            if endpoint == "token" and request.method == "POST":
                form = request.form()
                self.token_requests.append(form)
                return self._token(form)
            if endpoint == "devicecode" and request.method == "POST":
                return self._device_code(tenant, request.form())
        return Reply.json(405, {"error": "invalid_request", "error_description": "Method not allowed."})

    def _openid_configuration(self, tenant: str) -> dict:
        base = f"{self.base_url}/{tenant}/oauth2/v2.0"
        return {
            "issuer": f"{self.base_url}/{self.tenant_id}/v2.0",
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "device_authorization_endpoint": f"{base}/devicecode",
            "jwks_uri": f"{self.base_url}/{tenant}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "code_challenge_methods_supported": ["plain", "S256"],
            "tenant_region_scope": "EU",
        }

    @staticmethod
    def _error(error: str, description: str, status: int = 400, codes: tuple[int, ...] = (),
               suberror: str | None = None) -> Reply:
        payload = {"error": error, "error_description": f"{description}\r\nTrace ID: {uuid.uuid4()}",
                   "error_codes": list(codes), "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
                   "trace_id": str(uuid.uuid4()), "correlation_id": str(uuid.uuid4())}
        if suberror:
            payload["suberror"] = suberror
        return Reply.json(status, payload)

    def _authorize(self, tenant: str, query: dict[str, str]) -> Reply:
        client = self.clients.get(query.get("client_id", ""))
        redirect_uri = query.get("redirect_uri", "")
        if client is None:
            return Reply(400, b"AADSTS700016: Application not found in the directory.")
        if client.redirect_uris and redirect_uri not in client.redirect_uris:
            return Reply(400, b"AADSTS50011: The redirect URI specified in the request does not match.")
        params: dict[str, str] = {"state": query.get("state", "")}
        if query.get("response_type") != "code":
            params.update(error="unsupported_response_type", error_description="AADSTS70005: only code")
        elif query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            params.update(error="invalid_request", error_description="AADSTS9002325: PKCE (S256) is required.")
        elif self.signed_in is None:
            params.update(error="login_required", error_description="AADSTS50058: No user is signed in.")
        else:
            code = secrets.token_urlsafe(24)
            self._codes[code] = _Grant(self.signed_in, client.client_id, query.get("scope", "").split(),
                                       redirect_uri, query["code_challenge"], query.get("nonce"),
                                       expires_at=time.time() + 600)
            params.update(code=code, session_state=str(uuid.uuid4()))
        if query.get("response_mode") == "form_post":
            inputs = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}"/>'
                             for k, v in params.items())
            page = (f'<html><body onload="document.forms[0].submit()"><form method="POST" '
                    f'action="{html.escape(redirect_uri)}">{inputs}</form></body></html>')
            return Reply(200, page.encode(), {"Content-Type": "text/html; charset=utf-8"})
        return Reply(302, headers={"Location": f"{redirect_uri}?{urlencode(params)}"})

    def _device_code(self, tenant: str, form: dict[str, str]) -> Reply:
        if form.get("client_id") not in self.clients:
            return self._error("unauthorized_client", "AADSTS700016: Application not found in the directory.",
                               codes=(700016,))
        device_code = secrets.token_urlsafe(32)
        user_code = secrets.token_hex(4).upper()
        self._device_codes[device_code] = _Grant("", form["client_id"], form.get("scope", "").split(),
                                                 approved=False, expires_at=time.time() + 900)
        self._user_codes[user_code] = device_code
        verification_uri = f"{self.base_url}/devicelogin"
        return Reply.json(200, {
            "user_code": user_code, "device_code": device_code, "verification_uri": verification_uri,
            "expires_in": 900, "interval": self.device_code_interval,
            "message": f"To sign in, use a web browser to open the page {verification_uri} and enter "
                       f"the code {user_code} to authenticate.",
        })

    def _authenticate_client(self, form: dict[str, str], *, public_allowed: bool) -> _Client | Reply:
        client = self.clients.get(form.get("client_id", ""))
        if client is None:
            return self._error("unauthorized_client", "AADSTS700016: Application not found in the directory.",
                               codes=(700016,))
        secret = form.get("client_secret")
        if secret is None and not public_allowed and client.client_secret is not None:
            return self._error("invalid_client", "AADSTS7000218: The request body must contain the "
                               "following parameter: 'client_assertion' or 'client_secret'.", 401, (7000218,))
        if secret is not None and secret != client.client_secret:
            return self._error("invalid_client", "AADSTS7000215: Invalid client secret provided.", 401, (7000215,))
        return client

    def _token(self, form: dict[str, str]) -> Reply:
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            client = self._authenticate_client(form, public_allowed=False)
            if isinstance(client, Reply):
                return client
            grant = self._codes.pop(form.get("code", ""), None)
            if grant is None or grant.expires_at < time.time() or grant.client_id != client.client_id:
                return self._error("invalid_grant", "AADSTS70008: The provided authorization code or "
                                   "refresh token has expired or was already used.", codes=(70008,))
            if grant.redirect_uri != form.get("redirect_uri"):
                return self._error("invalid_grant", "AADSTS500112: The reply address does not match "
                                   "the reply address provided when requesting the authorization code.",
                                   codes=(500112,))
            verifier = form.get("code_verifier", "")
            if _b64url(hashlib.sha256(verifier.encode()).digest()) != grant.code_challenge:
                return self._error("invalid_grant", "AADSTS501481: The Code_Verifier does not match "
                                   "the code_challenge supplied in the authorization request.", codes=(501481,))
            return self._issue(grant, form.get("scope", "").split() or grant.scopes)
        if grant_type == "refresh_token":
            client = self._authenticate_client(form, public_allowed=True)
            if isinstance(client, Reply):
                return client
            grant = self._refresh_tokens.get(form.get("refresh_token", ""))
            if grant is None or grant.client_id != client.client_id:
                return self._error("invalid_grant", "AADSTS70000: Provided grant is invalid or malformed.",
                                   codes=(70000,))
            user = self.users[grant.username]
            if user.needs_consent:
                return self._error(
                    "invalid_grant",
                    f"AADSTS65001: The user or administrator has not consented to use the application "
                    f"with ID '{client.client_id}' named 'Cadence'. Send an interactive authorization "
                    "request for this user and resource.", codes=(65001,), suberror="consent_required")
            return self._issue(grant, form.get("scope", "").split() or grant.scopes)
        if grant_type == "urn:ietf:params:oauth:grant-type:device_code":
            client = self._authenticate_client(form, public_allowed=True)
            if isinstance(client, Reply):
                return client
            grant = self._device_codes.get(form.get("device_code", ""))
            if grant is None:
                return self._error("invalid_grant", "AADSTS70000: Unknown device code.", codes=(70000,))
            if grant.expires_at < time.time():
                return self._error("expired_token", "AADSTS70020: The provided value for the input "
                                   "parameter 'device_code' is not valid. This device code has expired.",
                                   codes=(70020,))
            if grant.declined:
                return self._error("authorization_declined", "AADSTS70000: The user declined to authorize.",
                                   codes=(70000,))
            if not grant.approved:
                return self._error("authorization_pending", "AADSTS70016: OAuth 2.0 device flow error. "
                                   "Authorization is pending. Continue polling.", codes=(70016,))
            if grant.used:
                return self._error("invalid_grant", "AADSTS54005: OAuth2 Authorization code was already redeemed.",
                                   codes=(54005,))
            grant.used = True
            return self._issue(grant, form.get("scope", "").split() or grant.scopes)
        return self._error("unsupported_grant_type", f"AADSTS70003: grant type {grant_type!r} is not supported.",
                           codes=(70003,))

    def _issue(self, grant: _Grant, scopes: list[str]) -> Reply:
        user = self.users[grant.username]
        now = int(time.time())
        access_token = "eyJ0eXAiOiJKV1QifQ." + secrets.token_urlsafe(32)
        self._access_tokens[access_token] = _AccessToken(grant.username, now + self.access_token_lifetime)
        refresh_token = "0.AAAA" + secrets.token_urlsafe(40)
        self._refresh_tokens[refresh_token] = _Grant(grant.username, grant.client_id, scopes)
        claims = {"aud": grant.client_id, "iss": f"{self.base_url}/{self.tenant_id}/v2.0", "iat": now,
                  "nbf": now, "exp": now + 3600, "name": user.name, "oid": user.oid,
                  "preferred_username": user.username, "sub": _b64url(user.oid.encode())[:43],
                  "tid": self.tenant_id, "ver": "2.0"}
        extra = {k: v for k, v in claims.items() if k not in ("iss", "aud", "sub", "iat", "exp")}
        id_token = self.signing.id_token(issuer=claims["iss"], audience=claims["aud"], subject=claims["sub"],
                                         nonce=grant.nonce or None, **extra)
        client_info = _b64url(json.dumps({"uid": user.oid, "utid": self.tenant_id}).encode())
        return Reply.json(200, {
            "token_type": "Bearer", "scope": " ".join(scopes), "expires_in": self.access_token_lifetime,
            "ext_expires_in": self.access_token_lifetime, "access_token": access_token,
            "refresh_token": refresh_token, "id_token": id_token, "client_info": client_info,
        }, {"Cache-Control": "no-store", "Pragma": "no-cache"})
