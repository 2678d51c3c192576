"""Sign-in with Google or Microsoft for the web app: which identity providers are configured (the
mailboxes' OAuth clients), and the OpenID Connect steps of `connectors.oidc` for them.

`providers(app)`: name → Provider for those with a client id and secret. `start(app, name,
redirect_uri)` → Attempt (authorization URL, state, nonce, PKCE verifier); `finish(app, name,
attempt, answer)` → the verified email address, or SignInError with a sentence.
"""
from __future__ import annotations

from cadence.app import App
from connectors import oidc
from connectors.oidc import Attempt, Provider, SignInError

__all__ = ["Attempt", "Provider", "SignInError", "finish", "providers", "start"]


def providers(app: App) -> dict[str, Provider]:
    """The identity providers configured on this server, by name (google, microsoft)."""
    s = app.settings
    found: dict[str, Provider] = {}
    if s.google_client_id and s.google_client_secret:
        found["google"] = oidc.google(s.google_client_id, s.google_client_secret, auth_url=s.google_auth_url,
                                      token_url=s.google_token_url, jwks_url=s.google_jwks_url)
    if s.ms_client_id and s.ms_client_secret:
        found["microsoft"] = oidc.microsoft(s.ms_client_id, s.ms_client_secret, authority=s.ms_authority)
    return found


def start(provider: Provider, redirect_uri: str) -> Attempt:
    return oidc.start(provider, redirect_uri)


def finish(provider: Provider, attempt: Attempt, answer: dict[str, str]) -> str:
    """The email address the provider's verified ID token vouches for; SignInError otherwise."""
    return oidc.finish(provider, attempt, answer)
