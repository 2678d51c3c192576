"""Fixtures of the Slack bot tests, built on tests/support/slack.py (the world, the fake Slack, the served app)."""
from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from cadence.app import App
from tests.fakes.slack_server import FakeSlack
from tests.support.slack import REPS, STRANGER, Served, World, build_world, make_app, run_cli


@pytest.fixture(scope="session")
def world_template(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("slack-world") / "home"
    home.mkdir()
    build_world(run_cli(home, f"sqlite:///{home / 'cadence.db'}"), home)
    return home


@pytest.fixture
def world(sqlite_cli, world_template) -> World:
    """A private copy of the session's world (SQLite)."""
    home = sqlite_cli.home
    shutil.copytree(world_template, home, dirs_exist_ok=True)
    with sqlite3.connect(home / "cadence.db") as db:
        db.execute("UPDATE mailboxes SET path = replace(path, ?, ?)", (str(world_template), str(home)))
    return World(home, sqlite_cli.database_url, sqlite_cli.ok, sqlite_cli)


@pytest.fixture
def fake_slack():
    with FakeSlack() as fake:
        for email, name, _, user_id, _ in REPS:
            fake.add_user(user_id, email, name)
        fake.add_user(STRANGER[0], STRANGER[1], "Stranger")
        yield fake


@pytest.fixture
def app(world, fake_slack) -> App:
    app = make_app(world, fake_slack)
    yield app
    app.db.dispose()


@pytest.fixture
def served(app, fake_slack):
    server = Served(app, fake_slack)
    yield server
    server.close()
