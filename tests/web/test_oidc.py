"""Sign-in with Google or Microsoft (OpenID Connect) against local fake providers over real HTTP:
state, nonce and PKCE bound to the browser's cookie, the ID token's RS256 signature checked against
the provider's published keys, and the person matched to a rep by email."""
from __future__ import annotations

import ssl
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.fakes.gmail_server import FakeGmail
from tests.fakes.identity_server import FakeIdentityServer
from tests.fakes.tls import make_test_tls
from tests.support.web import REP, seed


@pytest.fixture
def google(site):
    fake = FakeGmail().start()
    s = site.app.settings
    saved = (s.google_client_id, s.google_client_secret, s.google_auth_url, s.google_token_url, s.google_jwks_url)
    s.google_client_id, s.google_client_secret = fake.client_id, fake.client_secret
    s.google_auth_url, s.google_token_url, s.google_jwks_url = fake.auth_url, fake.token_url, fake.jwks_url
    try:
        yield fake
    finally:
        (s.google_client_id, s.google_client_secret, s.google_auth_url, s.google_token_url,
         s.google_jwks_url) = saved
        fake.stop()


def start(client: httpx.Client, provider: str) -> tuple[str, dict]:
    """Open /signin/oidc/<provider>; returns the provider's URL and its query."""
    answer = client.get(f"/signin/oidc/{provider}")
    assert answer.status_code == 302, answer.text
    cookie = answer.headers["set-cookie"]
    assert "cadence_oidc=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    url = answer.headers["location"]
    return url, {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def consent(url: str, **tls) -> str:
    """Play the provider's consent page: the redirect back to Cadence, as a path."""
    answer = httpx.get(url, follow_redirects=False, **tls)
    assert answer.status_code in (302, 303), answer.text
    back = urlsplit(answer.headers["location"])
    return f"{back.path}?{back.query}"


def test_sign_in_with_google_lands_on_the_root_as_the_rep(site, google):
    seed(site)
    google.add_account(REP)
    client = site.client()
    assert "Sign in with Google" in client.get("/").text
    url, query = start(client, "google")
    assert url.startswith(google.auth_url)
    assert query["code_challenge_method"] == "S256" and query["nonce"] and query["state"]
    assert "openid" in query["scope"].split() and query["response_type"] == "code"
    back = consent(url)
    done = client.get(back)
    assert done.status_code == 303 and done.headers["location"] == "/"
    assert "HttpOnly" in done.headers["set-cookie"] and "cadence_session=" in done.headers["set-cookie"]
    home = client.get("/")
    assert home.status_code == 200 and "Rita Rep" in home.text
    exchange = google.token_requests[-1]
    assert exchange["code_verifier"] and exchange["grant_type"] == "authorization_code"
    again = client.get(back)  # the same answer twice: the sign-in is over
    assert again.status_code == 400 and "started here" in again.text


def test_another_browser_cannot_finish_a_sign_in_it_did_not_start(site, google):
    seed(site)
    google.add_account(REP)
    url, _ = start(site.client(), "google")
    back = consent(url)
    thief = site.client()
    answer = thief.get(back)
    assert answer.status_code == 400 and "another browser" in answer.text
    assert "cadence_session=" not in answer.headers.get("set-cookie", "")
    assert thief.get("/").status_code == 401


@pytest.mark.parametrize("tamper, says", [
    ({"forge": True}, "signature"),
    ({"nonce": "not-the-one-sent"}, "nonce"),
    ({"aud": "someone-else.apps.googleusercontent.com"}, "another application"),
    ({"iss": "https://evil.example"}, "another issuer"),
    ({"email_verified": False}, "did not confirm"),
])
def test_a_forged_or_foreign_id_token_signs_no_one_in(site, google, tamper, says):
    seed(site)
    google.add_account(REP)
    if tamper.pop("forge", False):
        google.signing.forge_with_other_key = True
    google.signing.claims_override = tamper
    client = site.client()
    url, _ = start(client, "google")
    answer = client.get(consent(url))
    assert answer.status_code == 400 and says in answer.text, answer.text
    assert "cadence_session=" not in answer.headers.get("set-cookie", "")
    assert client.get("/").status_code == 401


def test_someone_who_is_no_rep_is_refused(site, google):
    seed(site)
    google.add_account("stranger@elsewhere.example")
    client = site.client()
    url, _ = start(client, "google")
    answer = client.get(consent(url))
    assert answer.status_code == 400 and "stranger@elsewhere.example is not a Cadence user" in answer.text
    assert client.get("/").status_code == 401


def test_without_configured_clients_there_is_no_such_sign_in(site):
    seed(site)
    client = site.client()
    assert "Sign in with" not in client.get("/").text
    assert client.get("/signin/oidc/google").status_code == 404
    assert client.get("/signin/oidc/microsoft").status_code == 404
    assert client.get("/signin/oidc/other").status_code == 404


def test_sign_in_with_microsoft_through_the_fake_identity_platform(site, tmp_path: Path, monkeypatch):
    seed(site)
    tls = make_test_tls(tmp_path / "tls")
    identity = FakeIdentityServer(tls).start()
    callback = f"{site.url}/signin/oidc/microsoft/callback"
    identity.register_client("cadence-web", "web-secret", (callback,))
    identity.sign_in(REP)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.ca_path))
    s = site.app.settings
    saved = (s.ms_client_id, s.ms_client_secret, s.ms_authority)
    s.ms_client_id, s.ms_client_secret, s.ms_authority = "cadence-web", "web-secret", identity.authority("organizations")
    try:
        client = site.client()
        assert "Sign in with Microsoft" in client.get("/").text
        url, query = start(client, "microsoft")
        assert url.startswith(identity.authority("organizations")) and query["code_challenge_method"] == "S256"
        trust = ssl.create_default_context(cafile=str(tls.ca_path))
        done = client.get(consent(url, verify=trust))
        assert done.status_code == 303 and done.headers["location"] == "/", done.text
        assert "Rita Rep" in client.get("/").text
        identity.signing.forge_with_other_key = True
        other = site.client()
        url, _ = start(other, "microsoft")
        refused = other.get(consent(url, verify=trust))
        assert refused.status_code == 400 and "signature" in refused.text
    finally:
        s.ms_client_id, s.ms_client_secret, s.ms_authority = saved
        identity.stop()
