"""OpenID Connect sign-in with Google or Microsoft (the web app's "Sign in with …").

The authorization code flow with PKCE (RFC 7636, S256), a `state` and a `nonce` (OpenID Connect
Core 1.0 §3.1), `response_mode=query`. The code is exchanged at the provider's token endpoint
with the client secret; the answer's ID token is accepted only when its RS256 signature checks
out against a key of the provider's JWKS (fetched over HTTPS, cached for JWKS_LIFETIME seconds,
fetched again once for an unknown `kid`), and its `iss`, `aud` (our client id), `exp`/`iat` and
`nonce` are right. Google's `email` must be `email_verified`; Microsoft's is `email`, else
`preferred_username` when it is an address. Raises SignInError with a sentence for the person.

Signature and claims: PyJWT (with `cryptography`), not our own code.
"""
from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlencode

import jwt
import requests

GOOGLE_AUTH_URL = "https://accounts.google.com/o/oauth2/v2/auth"
GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")
JWKS_LIFETIME = 3600.0
TIMEOUT = 15.0
LEEWAY = 60  # seconds of clock skew allowed on exp / iat


class SignInError(Exception):
    """The sign-in did not prove an address; the message says why, in a sentence."""


@dataclass(frozen=True)
class Provider:
    """One identity provider as configured: `name` google | microsoft."""

    name: str
    label: str
    client_id: str
    client_secret: str | None
    auth_url: str
    token_url: str
    jwks_url: str
    authority: str = ""  # Microsoft: https://login.microsoftonline.com/<tenant> (issuers follow it)

    def issuer_ok(self, claims: dict) -> bool:
        issuer = str(claims.get("iss", ""))
        if self.name == "google":
            return issuer in GOOGLE_ISSUERS
        root = self.authority.rstrip("/").rsplit("/", 1)[0]
        return bool(claims.get("tid")) and issuer == f"{root}/{claims['tid']}/v2.0"


def google(client_id: str, client_secret: str | None, *, auth_url: str | None, token_url: str,
           jwks_url: str) -> Provider:
    return Provider("google", "Google", client_id, client_secret, auth_url or GOOGLE_AUTH_URL, token_url, jwks_url)


def microsoft(client_id: str, client_secret: str | None, *, authority: str) -> Provider:
    base = authority.rstrip("/")
    return Provider("microsoft", "Microsoft", client_id, client_secret, f"{base}/oauth2/v2.0/authorize",
                    f"{base}/oauth2/v2.0/token", f"{base}/discovery/v2.0/keys", base)


@dataclass(frozen=True)
class Attempt:
    """One sign-in under way: the URL to send the browser to, and what finishing it needs."""

    url: str
    state: str
    nonce: str
    verifier: str
    redirect_uri: str


def start(provider: Provider, redirect_uri: str) -> Attempt:
    """A fresh state, nonce and PKCE verifier, and the provider's authorization URL."""
    state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(64)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    query = {"client_id": provider.client_id, "response_type": "code", "redirect_uri": redirect_uri,
             "scope": "openid email profile", "state": state, "nonce": nonce, "code_challenge": challenge,
             "code_challenge_method": "S256", "response_mode": "query", "prompt": "select_account"}
    return Attempt(f"{provider.auth_url}?{urlencode(query)}", state, nonce, verifier, redirect_uri)


class _Keys:
    """JWKS documents by URL, cached."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sets: dict[str, tuple[float, jwt.PyJWKSet]] = {}

    def key(self, url: str, kid: str | None) -> jwt.PyJWK:
        for attempt in range(2):
            with self._lock:
                cached = self._sets.get(url)
            if cached is None or attempt == 1 or time.monotonic() - cached[0] > JWKS_LIFETIME:
                try:
                    answer = requests.get(url, timeout=TIMEOUT)
                    answer.raise_for_status()
                    keys = jwt.PyJWKSet.from_dict(answer.json())
                except (requests.RequestException, ValueError, jwt.PyJWTError) as exc:
                    raise SignInError(f"the provider's signing keys could not be read ({type(exc).__name__})") \
                        from None
                cached = (time.monotonic(), keys)
                with self._lock:
                    self._sets[url] = cached
            found = [k for k in cached[1].keys if kid is None or k.key_id == kid]
            if found:
                return found[0]
        raise SignInError("the sign-in was signed with a key the provider does not publish")


KEYS = _Keys()


def finish(provider: Provider, attempt: Attempt, answer: dict[str, str]) -> str:
    """The verified email address (lower case) of the person who signed in, from the redirect's
    query `answer`; SignInError otherwise."""
    if answer.get("error"):
        raise SignInError(f"{provider.label} refused the sign-in ({answer['error'][:100]})")
    if answer.get("state") != attempt.state:
        raise SignInError("the answer does not belong to this sign-in")
    code = answer.get("code")
    if not code:
        raise SignInError(f"{provider.label} sent no authorization code")
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": attempt.redirect_uri,
            "client_id": provider.client_id, "code_verifier": attempt.verifier}
    if provider.client_secret:
        form["client_secret"] = provider.client_secret
    try:
        reply = requests.post(provider.token_url, data=form, timeout=TIMEOUT, headers={"Accept": "application/json"})
        tokens = reply.json()
    except (requests.RequestException, ValueError) as exc:
        raise SignInError(f"{provider.label}'s token endpoint could not be reached ({type(exc).__name__})") from None
    if reply.status_code != 200 or not isinstance(tokens, dict) or not tokens.get("id_token"):
        reason = tokens.get("error") if isinstance(tokens, dict) else None
        raise SignInError(f"{provider.label} did not give an ID token ({reason or reply.status_code})")
    return verified_email(provider, str(tokens["id_token"]), attempt.nonce)


def verified_email(provider: Provider, id_token: str, nonce: str) -> str:
    """Check an ID token (signature, issuer, audience, times, nonce) and return its address."""
    try:
        header = jwt.get_unverified_header(id_token)
    except jwt.PyJWTError:
        raise SignInError("the ID token is not a JWT") from None
    if header.get("alg") != "RS256":
        raise SignInError("the ID token is not signed with RS256")
    key = KEYS.key(provider.jwks_url, header.get("kid"))
    try:
        claims = jwt.decode(id_token, key.key, algorithms=["RS256"], audience=provider.client_id, leeway=LEEWAY,
                            options={"require": ["exp", "iat", "iss", "aud", "sub"]})
    except jwt.InvalidSignatureError:
        raise SignInError("the ID token's signature does not check out") from None
    except jwt.ExpiredSignatureError:
        raise SignInError("the ID token has expired") from None
    except jwt.InvalidAudienceError:
        raise SignInError("the ID token was issued to another application") from None
    except jwt.PyJWTError as exc:
        raise SignInError(f"the ID token is not valid ({exc})") from None
    if not provider.issuer_ok(claims):
        raise SignInError("the ID token comes from another issuer")
    if not secrets.compare_digest(str(claims.get("nonce", "")), nonce):
        raise SignInError("the ID token does not belong to this sign-in (nonce)")
    if provider.name == "google":
        if claims.get("email_verified") is not True or not claims.get("email"):
            raise SignInError("Google did not confirm an email address for this account")
        return str(claims["email"]).strip().lower()
    address = claims.get("email") or claims.get("preferred_username") or ""
    if "@" not in str(address):
        raise SignInError("Microsoft gave no email address for this account")
    return str(address).strip().lower()
