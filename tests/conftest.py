"""Shared fixtures: databases on SQLite and PostgreSQL, and the real CLI run in-process."""
from __future__ import annotations

import uuid

import psycopg
import pytest

from tests.support.cli import Cli
from tests.support.databases import PG_DSN, PG_URL


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path):
    """A fresh, empty database on each engine; PostgreSQL gets a schema of its own per test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cadence.db'}"
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def cli(tmp_path, database_url, monkeypatch, capsys) -> Cli:
    home = tmp_path / "home"
    home.mkdir()
    return Cli(home, database_url, monkeypatch, capsys)


@pytest.fixture
def sqlite_cli(tmp_path, monkeypatch, capsys) -> Cli:
    home = tmp_path / "home"
    home.mkdir()
    return Cli(home, f"sqlite:///{home / 'cadence.db'}", monkeypatch, capsys)
