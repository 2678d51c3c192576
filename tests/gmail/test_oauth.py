"""`cadence mailbox connect gmail`: authorization URL, loopback redirect, code exchange with PKCE."""
from __future__ import annotations

from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from connectors.gmail import GMAIL_SCOPES, GmailMailbox
from connectors.gmail.oauth import (
    OAuthError,
    code_from_redirect,
    connect_gmail,
    exchange_code,
    pkce_challenge,
    start_authorization,
)

REDIRECT = "http://127.0.0.1:8765/"


def test_the_authorization_url_asks_for_offline_access_with_pkce_and_narrow_scopes(server):
    request = start_authorization(server.client_id, REDIRECT, auth_url=server.auth_url, login_hint="rep@example.com")
    query = {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}
    assert request.url.startswith(server.auth_url + "?")
    assert query == {
        "response_type": "code", "client_id": server.client_id, "redirect_uri": REDIRECT,
        "scope": " ".join(GMAIL_SCOPES), "state": request.state,
        "code_challenge": pkce_challenge(request.code_verifier), "code_challenge_method": "S256",
        "access_type": "offline", "prompt": "consent", "login_hint": "rep@example.com",
    }
    assert 43 <= len(request.code_verifier) <= 128
    assert start_authorization(server.client_id, REDIRECT).state != request.state


def test_the_whole_sign_in_ends_with_a_refresh_token_that_works(server, account):
    opened = []

    def browser(url):  # the consent page redirects straight back to the loopback listener
        opened.append(url)
        assert requests.get(url, timeout=5).status_code == 200

    tokens = connect_gmail(client_id=server.client_id, client_secret=server.client_secret, open_browser=browser,
                           auth_url=server.auth_url, token_url=server.token_url, timeout=5)
    assert len(opened) == 1 and set(tokens.scopes) == set(GMAIL_SCOPES)
    exchange = next(r for r in server.token_requests if r["grant_type"] == "authorization_code")
    assert exchange["code_verifier"] and exchange["redirect_uri"].startswith("http://127.0.0.1:")
    mailbox = GmailMailbox("rep@example.com", refresh_token=tokens.refresh_token, client_id=server.client_id,
                           client_secret=server.client_secret, api_url=server.api_url, token_url=server.token_url)
    try:
        assert mailbox.account_address() == account.address
    finally:
        mailbox.close()


def _code_for(server, account, request, **grant):
    options = dict(client_id=server.client_id, redirect_uri=request.redirect_uri, scopes=request.scopes,
                   code_challenge=pkce_challenge(request.code_verifier))
    options.update(grant)
    return server.authorize(account.address, **options)


def _exchange(server, request, code):
    return exchange_code(request, code, client_id=server.client_id, client_secret=server.client_secret,
                         token_url=server.token_url)


def test_a_redirect_with_another_state_is_refused(server):
    request = start_authorization(server.client_id, REDIRECT)
    with pytest.raises(OAuthError, match="state"):
        code_from_redirect(request, f"{REDIRECT}?code=abc&state=forged")


def test_a_refused_consent_is_reported(server):
    request = start_authorization(server.client_id, REDIRECT)
    with pytest.raises(OAuthError, match="access_denied"):
        code_from_redirect(request, f"{REDIRECT}?error=access_denied&state={request.state}")


def test_the_code_is_useless_without_the_right_verifier(server, account):
    request = start_authorization(server.client_id, REDIRECT)
    code = _code_for(server, account, request)
    with pytest.raises(OAuthError, match="invalid_grant"):
        _exchange(server, replace(request, code_verifier="x" * 64), code)


def test_a_grant_missing_a_scope_is_refused_by_name(server, account):
    request = start_authorization(server.client_id, REDIRECT)
    code = _code_for(server, account, request, scopes=(GMAIL_SCOPES[0],))  # the user unticked readonly
    with pytest.raises(OAuthError, match="gmail.readonly"):
        _exchange(server, request, code)


def test_no_refresh_token_without_a_new_consent_is_explained(server, account):
    first = start_authorization(server.client_id, REDIRECT)
    _exchange(server, first, _code_for(server, account, first, consent=False))
    again = start_authorization(server.client_id, REDIRECT)
    with pytest.raises(OAuthError, match="no refresh token"):
        _exchange(server, again, _code_for(server, account, again, consent=False))
