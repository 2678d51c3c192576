"""Sign-in state of a connected mailbox: the msal token cache, refreshes, re-consent."""
from __future__ import annotations

import json

import pytest

from connectors.outlook import OutlookMailbox
from connectors.outlook.identity import check_authority
from core.mailbox import Disconnected
from tests.support.outlook import CLIENT_ID, CLIENT_SECRET, OutlookWorld, new_email


def refresh_requests(world) -> list[dict[str, str]]:
    return [form for form in world.identity.token_requests if form.get("grant_type") == "refresh_token"]


def test_a_valid_cached_token_is_used_without_writing_the_cache(world):
    mailbox = world.mailbox()
    mailbox.create_draft(new_email(world.address))
    mailbox.check_sent("<nothing@cadence.test>", None)
    assert refresh_requests(world) == []
    assert world.cache_writes == []


def test_a_refreshed_token_cache_is_handed_back_and_works_on_its_own(world):
    first_cache = world.token_cache
    mailbox = world.mailbox()
    world.identity.expire_access_tokens(world.address)  # Graph now answers 401 to the cached token

    draft = mailbox.create_draft(new_email(world.address))

    assert len(refresh_requests(world)) == 1
    assert len(world.cache_writes) == 1 and world.cache_writes[0] != first_cache
    stored_tokens = json.loads(world.cache_writes[0])["AccessToken"].values()
    assert any(world.identity.user_for_access_token(t["secret"]) == world.address for t in stored_tokens)
    # A new process starting from the stored cache uses the new token without refreshing.
    again = world.mailbox(token_cache=world.cache_writes[0], on_token_cache_change=pytest.fail)
    assert again.check_sent(draft.message_id, draft).status == "not_sent"
    assert len(refresh_requests(world)) == 1


def test_an_access_token_close_to_expiry_is_refreshed_before_the_batch(tmp_path):
    world = OutlookWorld(tmp_path, access_token_lifetime=60)  # msal refreshes tokens this close to expiry
    try:
        world.connect()
        world.mailbox().create_draft(new_email(world.address))
        assert len(refresh_requests(world)) == 1
        assert len(world.cache_writes) == 1
    finally:
        world.close()


def test_consent_needed_again_disconnects_with_msals_reason(world):
    mailbox = world.mailbox()
    world.identity.require_consent(world.address)

    with pytest.raises(Disconnected) as raised:
        mailbox.create_draft(new_email(world.address))

    assert raised.value.reason.startswith("AADSTS65001")
    assert "consented" in raised.value.reason
    assert world.graph.messages(world.address, "drafts") == []
    with pytest.raises(Disconnected):  # and it stays that way until someone signs in again
        world.mailbox().poll(None)


def test_an_empty_token_cache_is_disconnected(world):
    with pytest.raises(Disconnected, match="sign in to Outlook again"):
        world.mailbox(token_cache=None).poll(None)


def test_the_ca_bundle_can_come_from_the_environment(world, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(world.tls.ca_path))
    mailbox = world.mailbox(identity_http_client=None)  # msal's own requests session
    world.identity.expire_access_tokens(world.address)
    mailbox.create_draft(new_email(world.address))
    assert len(refresh_requests(world)) == 1


def test_authority_must_be_https_and_non_microsoft_hosts_skip_instance_discovery():
    assert check_authority("https://login.microsoftonline.com/common/") == (
        "https://login.microsoftonline.com/common", True)
    assert check_authority("https://127.0.0.1:8443/organizations") == ("https://127.0.0.1:8443/organizations", False)
    for bad in ("http://login.microsoftonline.com/common", "https://login.microsoftonline.com", ""):
        with pytest.raises(ValueError, match="authority"):
            check_authority(bad)
    with pytest.raises(ValueError, match="authority"):
        OutlookMailbox("rep@example.com", client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                       authority="http://login.example/common", graph_url="http://127.0.0.1:1/v1.0",
                       token_cache=None, on_token_cache_change=print)
