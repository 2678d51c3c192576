"""Replies, automatic replies and bounces as real servers send them, through the fake Gmail API:
the connector's observation (metadata, then the raw report) and the core's reading of it."""
from __future__ import annotations

import pytest

from tests.support.mail import PROVIDER_TABLE, assert_read_as_table_says, mail_bytes
from tests.support.gmail import CONTACT, outgoing


@pytest.mark.parametrize("name", PROVIDER_TABLE)
def test_each_shape_arriving_in_gmail_is_read_as_it_should(account, mailbox, name):
    email = outgoing(account.address)
    sent = mailbox.send_draft(mailbox.create_draft(email))
    cursor = mailbox.poll(None).cursor
    account.deliver_raw(mail_bytes(name, message_id=sent.message_id, subject=email.subject, contact=CONTACT,
                                   rep=account.address))
    [observed] = mailbox.poll(cursor).observations
    assert_read_as_table_says(name, observed, sent, subject=email.subject, contact=CONTACT, rep=account.address)
