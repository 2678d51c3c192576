"""Credentials: refresh at the token endpoint, revoked tokens, missing scopes."""
from __future__ import annotations

import pytest

from connectors.gmail import GMAIL_SCOPES
from core.mailbox import Disconnected, DraftRef
from tests.support.gmail import outgoing

COMPOSE = "https://www.googleapis.com/auth/gmail.compose"


def test_the_first_call_refreshes_at_the_token_endpoint_and_an_expired_token_refreshes_again(server, account,
                                                                                                 mailbox):
    mailbox.poll(None)
    assert server.refresh_count(account.address) == 1
    [grant] = server.token_requests
    assert grant["grant_type"] == "refresh_token" and grant["refresh_token"] == account.refresh_token
    assert grant["client_id"] == server.client_id and set(grant["scope"].split()) == set(GMAIL_SCOPES)

    mailbox.create_draft(outgoing(account.address))
    assert server.refresh_count(account.address) == 1  # the access token is reused

    server.expire_access_tokens()  # Gmail answers 401; google-auth refreshes and repeats the call
    mailbox.create_draft(outgoing(account.address, subject="Second"))
    assert server.refresh_count(account.address) == 2
    assert [r.subject for r in account.folder("drafts")] == ["Quick question", "Second"]


def test_a_revoked_refresh_token_disconnects_every_method_and_loses_nothing(server, account, mailbox):
    draft = mailbox.create_draft(outgoing(account.address))
    cursor = mailbox.poll(None).cursor
    account.revoke()
    calls = {
        "create_draft": lambda: mailbox.create_draft(outgoing(account.address)),
        "update_draft": lambda: mailbox.update_draft(draft, subject="x", html_body="x", text_body="x"),
        "delete_draft": lambda: mailbox.delete_draft(draft),
        "send_draft": lambda: mailbox.send_draft(draft),
        "check_sent": lambda: mailbox.check_sent(draft.message_id, draft),
        "poll(None)": lambda: mailbox.poll(None),
        "poll(cursor)": lambda: mailbox.poll(cursor),
    }
    for name, call in calls.items():
        with pytest.raises(Disconnected) as caught:
            call()
        assert "invalid_grant" in caught.value.reason and account.address in caught.value.reason, name
    assert server.outbox == []
    assert [d.message_id for d in account.folder("drafts")] == [draft.message_id]  # waits, not lost


def test_a_token_without_the_readonly_scope_cannot_sync(server, account, make_mailbox):
    compose_only = account.grant(scopes=(COMPOSE,))
    mailbox = make_mailbox(refresh_token=compose_only, scopes=(COMPOSE,))
    mailbox.create_draft(outgoing(account.address))  # compose is enough for drafts
    cursor = mailbox.poll(None).cursor  # and for getProfile
    with pytest.raises(Disconnected) as caught:
        mailbox.poll(cursor)  # history.list needs gmail.readonly
    assert "insufficientPermissions" in caught.value.reason


def test_asking_for_more_scopes_than_were_granted_is_disconnected(account, make_mailbox):
    mailbox = make_mailbox(refresh_token=account.grant(scopes=(COMPOSE,)))  # asks for GMAIL_SCOPES
    with pytest.raises(Disconnected) as caught:
        mailbox.poll(None)
    assert "invalid_scope" in caught.value.reason


def test_an_unknown_draft_with_a_revoked_token_is_still_disconnected_not_missing(account, mailbox):
    account.revoke()
    with pytest.raises(Disconnected):
        mailbox.send_draft(DraftRef("r-404", "<gone@cadence.test>"))
