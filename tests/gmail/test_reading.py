"""Replies, automatic replies and bounces as real servers send them, through the fake Gmail API:
the connector's observation (metadata, then the raw report) and the core's reading of it."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from core.observations import Tracked, classify, judge_bounce
from core.vocabulary import MessageState
from tests.support.mail import PROVIDER_TABLE, SentLookup, mail_bytes
from tests.support.gmail import CONTACT, outgoing


@pytest.mark.parametrize("name", PROVIDER_TABLE)
def test_each_shape_arriving_in_gmail_is_read_as_it_should(account, mailbox, name):
    meaning, rule, hard = PROVIDER_TABLE[name]
    email = outgoing(account.address)
    sent = mailbox.send_draft(mailbox.create_draft(email))
    cursor = mailbox.poll(None).cursor
    account.deliver_raw(mail_bytes(name, message_id=sent.message_id, subject=email.subject, contact=CONTACT,
                                   rep=account.address))
    [observed] = mailbox.poll(cursor).observations
    now = datetime.now(timezone.utc)
    ours = Tracked(1, MessageState.SENT, CONTACT, sent.message_id, sent.provider_message_id,
                   sent.provider_thread_id, email.subject, now - timedelta(hours=1))
    result = classify(observed, SentLookup(ours), account.address, now)
    assert result.meaning == meaning, result.why
    if meaning != "unrelated":
        assert result.message == ours
    if rule:
        assert result.rule == rule
    if hard is not None:
        assert judge_bounce(result.bounce, now, 0).hard is hard
