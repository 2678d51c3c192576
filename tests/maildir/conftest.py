"""The rep's Maildir and a clock standing at START, shared by the Maildir tests."""
from __future__ import annotations

import pytest

from connectors.maildir import MaildirMailbox
from core.clock import FixedClock
from tests.support.maildir import START


@pytest.fixture
def clock():
    return FixedClock(START)


@pytest.fixture
def root(tmp_path):
    return tmp_path / "Maildir"


@pytest.fixture
def box(root, clock):
    return MaildirMailbox("rep@example.com", root, clock_now=clock.now)
