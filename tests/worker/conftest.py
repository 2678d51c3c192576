"""Fixtures of the worker tests, built on tests/support/workers.py."""
from __future__ import annotations

import pytest

from cadence.app import App
from core.clock import FixedClock
from tests.support.workers import START, Provider, World


@pytest.fixture
def world(tmp_path, database_url):
    home = tmp_path / "home"
    home.mkdir()
    w = World(home, database_url, FixedClock(START), Provider())
    first = App.from_settings(w.settings(), clock=w.clock)  # creates the schema
    first.db.dispose()
    yield w
    for app in w.apps:
        app.db.dispose()
