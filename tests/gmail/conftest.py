from __future__ import annotations

import random

import pytest

from connectors.gmail import GmailMailbox
from tests.fakes.gmail_server import FakeGmail
from tests.support.gmail import FakeClock


@pytest.fixture
def server():
    with FakeGmail() as fake:
        yield fake


@pytest.fixture
def account(server):
    return server.add_account("rep@example.com")


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def make_mailbox(server, account, clock):
    """GmailMailbox against the fake server, paced by the fake clock; keyword overrides allowed."""
    made: list[GmailMailbox] = []

    def make(**overrides) -> GmailMailbox:
        options = dict(refresh_token=account.refresh_token, client_id=server.client_id,
                       client_secret=server.client_secret, api_url=server.api_url, token_url=server.token_url,
                       sleep=clock.sleep, monotonic=clock.monotonic, rng=random.Random(7))
        options.update(overrides)
        mailbox = GmailMailbox(account.address, **options)
        made.append(mailbox)
        return mailbox

    yield make
    for mailbox in made:
        mailbox.close()


@pytest.fixture
def mailbox(make_mailbox):
    return make_mailbox()
