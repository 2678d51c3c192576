"""Connecting a mailbox with msal: browser (auth code + PKCE) and terminal (device code)."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from connectors.outlook import OutlookConnection, OutlookSignInError
from core.mailbox import SendCheck
from tests.support.outlook import REDIRECT_URI, new_email


def test_the_browser_flow_uses_pkce_and_returns_the_account_and_its_token_cache(world):
    sign_in = world.sign_in()
    flow = sign_in.start_auth_code_flow(REDIRECT_URI)
    query = parse_qs(urlsplit(flow["auth_uri"]).query)
    assert query["redirect_uri"] == [REDIRECT_URI] and query["code_challenge_method"] == ["S256"]
    assert "offline_access" in query["scope"][0].split() and "Mail.Send" in query["scope"][0].split()
    world.identity.sign_in("rep@example.com")
    answer = world.identity.complete_sign_in(flow["auth_uri"])  # form_post fields

    connection = sign_in.finish_auth_code_flow(flow, answer)

    assert connection.username == "rep@example.com" and not connection.public_client
    assert '"RefreshToken"' in connection.token_cache


def test_an_answer_with_another_state_is_refused(world):
    sign_in = world.sign_in()
    flow = sign_in.start_auth_code_flow(REDIRECT_URI)
    world.identity.sign_in("rep@example.com")
    answer = world.identity.complete_sign_in(flow["auth_uri"])
    forged = dict(answer, state="attacker-chosen")
    with pytest.raises(OutlookSignInError, match="state mismatch"):
        sign_in.finish_auth_code_flow(flow, forged)
    assert not any(f.get("code") == answer["code"] for f in world.identity.token_requests)


def test_a_code_redeemed_without_the_flows_pkce_verifier_is_refused(world):
    sign_in = world.sign_in()
    flow = sign_in.start_auth_code_flow(REDIRECT_URI)
    world.identity.sign_in("rep@example.com")
    answer = world.identity.complete_sign_in(flow["auth_uri"])
    other_flow = dict(flow, code_verifier="x" * 43)
    with pytest.raises(OutlookSignInError, match="AADSTS501481"):
        sign_in.finish_auth_code_flow(other_flow, answer)


def test_a_declined_browser_sign_in_reports_the_reason(world):
    sign_in = world.sign_in()
    flow = sign_in.start_auth_code_flow(REDIRECT_URI)
    world.identity.signed_in = None  # nobody signs in at the browser
    answer = world.identity.complete_sign_in(flow["auth_uri"])
    with pytest.raises(OutlookSignInError, match="AADSTS50058"):
        sign_in.finish_auth_code_flow(flow, answer)


def test_the_device_flow_waits_for_the_person_then_connects_a_public_client(world):
    sign_in = world.sign_in()
    flow = sign_in.start_device_flow()
    assert flow["user_code"] in flow["message"] and flow["verification_uri"].startswith("https://")
    waits: list[float] = []

    def person_enters_the_code_meanwhile(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            world.identity.approve_device_code(flow["user_code"], "rep@example.com")

    connection = sign_in.finish_device_flow(flow, sleep=person_enters_the_code_meanwhile)

    assert isinstance(connection, OutlookConnection)
    assert connection.username == "rep@example.com" and connection.public_client
    assert waits == [1, 1]
    device_polls = [f for f in world.identity.token_requests if f["grant_type"].endswith("device_code")]
    assert len(device_polls) == 3 and all("client_secret" not in f for f in device_polls)
    # The device-code mailbox works as a public client from its own token cache.
    world.identity.expire_access_tokens("rep@example.com")
    mailbox = world.mailbox(client_secret=None, token_cache=connection.token_cache)
    draft = mailbox.create_draft(new_email(world.address))
    assert mailbox.check_sent(draft.message_id, draft).status == SendCheck.NOT_SENT
    refresh = [f for f in world.identity.token_requests if f["grant_type"] == "refresh_token"]
    assert len(refresh) == 1 and "client_secret" not in refresh[0]


def test_a_declined_device_code_is_an_error(world):
    sign_in = world.sign_in()
    flow = sign_in.start_device_flow()
    world.identity.decline_device_code(flow["user_code"])
    with pytest.raises(OutlookSignInError, match="declined"):
        sign_in.finish_device_flow(flow, sleep=lambda s: None)


def test_a_redirect_uri_must_be_https(world):
    with pytest.raises(ValueError, match="redirect_uri"):
        world.sign_in().start_auth_code_flow("http://cadence.example/oauth/outlook/callback")
