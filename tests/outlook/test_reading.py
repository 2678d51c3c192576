"""Replies, automatic replies and bounces as real servers send them, through the fake Graph API:
the connector's observation (delta JSON, then the report's MIME from `$value`) and the core's
reading of it."""
from __future__ import annotations

import pytest

from tests.support.mail import PROVIDER_TABLE, assert_read_as_table_says, mail_bytes
from tests.support.outlook import CONTACT, new_email


@pytest.mark.parametrize("name", PROVIDER_TABLE)
def test_each_shape_arriving_in_outlook_is_read_as_it_should(world, name):
    mailbox = world.mailbox()
    email = new_email(world.address)
    sent = mailbox.send_draft(mailbox.create_draft(email))
    cursor = mailbox.poll(None).cursor
    world.graph.deliver_mime(world.address, mail_bytes(name, message_id=sent.message_id, subject=email.subject,
                                                       contact=CONTACT, rep=world.address))
    [observed] = mailbox.poll(cursor).observations
    assert_read_as_table_says(name, observed, sent, subject=email.subject, contact=CONTACT, rep=world.address)
