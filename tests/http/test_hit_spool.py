"""Hits the database refuses when `cadence serve` stops are kept on disk (`cadence.hit_spool`) and
written by the next start, exactly once; on SQLite and PostgreSQL."""
from __future__ import annotations

import json
import logging
import threading
import time
from contextlib import contextmanager

import httpx
import pytest
from sqlalchemy import text

from core.clock import FixedClock
from tests.support.http import serving, tracking_paths
from tests.support.prepare import database, sent_by_recipient, sent_campaign
from tests.support.tracking import LINKS, T0, stored_hits


@contextmanager
def events_away(cli):
    """The database refuses every hit write while inside."""
    engine = database(cli)
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE events RENAME TO events_away"))
    try:
        yield
    finally:
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE events_away RENAME TO events"))
        engine.dispose()


def _served(cli):
    maildir, _name = sent_campaign(cli, LINKS, people=1)
    pixel, clicks = tracking_paths(sent_by_recipient(maildir)["ana@prospect.example"][0])
    return pixel, clicks


def test_hits_the_database_refuses_at_shutdown_are_kept_and_written_once_by_the_next_start(cli, caplog):
    from cadence.app import App
    from cadence.http import create_http_app

    pixel, clicks = _served(cli)
    caplog.set_level(logging.WARNING, logger="cadence.http")
    app = App.from_settings(clock=FixedClock(T0))
    spool = app.settings.home / "spool" / "hits"
    with events_away(cli):
        with serving(app, create_http_app(app)) as base, httpx.Client(base_url=base) as web:
            assert web.get(pixel).status_code == 200
            assert web.get(pixel).status_code == 200
            assert web.get(clicks[1], follow_redirects=False).status_code == 302
        app.db.dispose()
        [kept] = list(spool.glob("hits-*.json"))
        assert sorted((r["kind"], r["hits"]) for r in json.loads(kept.read_text())["rows"]) == [
            ("clicked", 1), ("opened", 2)]
        [said] = [r.getMessage() for r in caplog.records if "could not write" in r.getMessage()]
        assert said.startswith("could not write 3 tracking hits as the server stopped") and str(kept) in said

        # The database is still down at the next start: the file stays, nothing is lost.
        again = App.from_settings(clock=FixedClock(T0))
        with serving(again, create_http_app(again)) as base, httpx.Client(base_url=base) as web:
            assert web.get(pixel).status_code == 200
        again.db.dispose()
        assert len(list(spool.glob("hits-*.json"))) == 2
    assert stored_hits(cli) == []

    third = App.from_settings(clock=FixedClock(T0))
    with serving(third, create_http_app(third)) as base, httpx.Client(base_url=base) as web:
        assert web.get("/healthz").status_code == 200
    third.db.dispose()
    assert list(spool.glob("hits-*.json")) == []
    assert sorted((kind, link, hits) for kind, _m, link, _minute, hits in stored_hits(cli)) == [
        ("clicked", 1, 1), ("opened", None, 3)]


def test_a_kept_file_is_written_by_the_writers_thread_once_the_database_is_back(cli):
    from cadence.app import App
    from cadence.hit_spool import HitSpool
    from cadence.services.engagement import resolve
    from cadence.tracking_http import HitWriter
    from core.vocabulary import EventKind

    pixel, _clicks = _served(cli)
    app = App.from_settings(clock=FixedClock(T0))
    opened = resolve(app, pixel.rsplit("/", 1)[1], "o")[1]
    spool = HitSpool(app.settings.home / "spool" / "hits")
    first = HitWriter(app, spool=spool)  # not started: stopped by hand
    for _ in range(4):
        first.count(EventKind.OPENED, opened, T0)
    with events_away(cli):
        kept = first.stop()
        assert kept is not None and spool.files() == [kept]
        writer = HitWriter(app, flush_every=0.01, spool=spool)
        writer.start()
        assert writer.write_pending() is False  # refused: the file stays for the next turn
        assert spool.files() == [kept]
    pause, deadline = threading.Event(), time.monotonic() + 60
    while spool.files() and time.monotonic() < deadline:  # the thread's next turns, the database back
        pause.wait(0.02)
    assert spool.files() == []
    writer.stop()
    app.db.dispose()
    assert writer.written == 4
    assert [(kind, hits) for kind, _m, _l, _minute, hits in stored_hits(cli)] == [("opened", 4)]


def test_a_file_that_is_not_kept_hits_is_left_in_place_and_said_once(cli, caplog):
    from cadence.app import App
    from cadence.hit_spool import HitSpool
    from cadence.tracking_http import HitWriter

    _served(cli)
    caplog.set_level(logging.WARNING, logger="cadence.http")
    app = App.from_settings(clock=FixedClock(T0))
    spool = HitSpool(app.settings.home / "spool" / "hits")
    spool.folder.mkdir(parents=True)
    stray = spool.folder / "hits-by-hand.json"
    stray.write_text('{"rows": "nope"}', encoding="utf-8")
    writer = HitWriter(app, spool=spool)
    assert writer.write_pending() is True
    assert writer.write_pending() is True
    assert writer.stop() is None
    app.db.dispose()
    assert stray.exists()
    said = [r.getMessage() for r in caplog.records if "not a file of kept tracking hits" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith(str(stray)), said


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_two_servers_sharing_a_home_write_a_kept_file_once(cli):
    """Two `cadence serve` processes on one home and one database both find a file an earlier stop
    kept; the first to write it holds it (its write waits here on a lock of the events table), the
    other leaves it alone instead of writing it again. PostgreSQL only: the test sees there who
    waits for the lock; the files' side is the same on SQLite."""
    from cadence.app import App
    from cadence.hit_spool import HitSpool
    from cadence.services.engagement import resolve
    from cadence.tracking_http import HitWriter
    from core.vocabulary import EventKind

    pixel, _clicks = _served(cli)
    app = App.from_settings(clock=FixedClock(T0))
    opened = resolve(app, pixel.rsplit("/", 1)[1], "o")[1]
    spool = HitSpool(app.settings.home / "spool" / "hits")
    stopped = HitWriter(app, spool=spool)
    for _ in range(4):
        stopped.count(EventKind.OPENED, opened, T0)
    with events_away(cli):
        assert stopped.stop() is not None
    one, other = App.from_settings(clock=FixedClock(T0)), App.from_settings(clock=FixedClock(T0))
    results: dict[str, int] = {}
    engine = database(cli)

    def waiting() -> int:
        with engine.connect() as connection:
            return connection.execute(text(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'events'::regclass")).scalar()

    def write(name: str, writer: HitWriter) -> threading.Thread:
        thread = threading.Thread(target=lambda: results.setdefault(name, writer.write_kept()))
        thread.start()
        return thread

    with engine.connect() as holder:
        holder.execute(text("LOCK TABLE events IN EXCLUSIVE MODE"))
        first = write("one", HitWriter(one, spool=HitSpool(spool.folder)))
        while waiting() < 1:
            assert first.is_alive()
            first.join(0.02)
        second = write("other", HitWriter(other, spool=HitSpool(spool.folder)))
        while second.is_alive() and waiting() < 2:
            second.join(0.02)
        holder.commit()
    first.join(60)
    second.join(60)
    for each in (app, one, other):
        each.db.dispose()
    engine.dispose()
    assert spool.files() == []
    assert sorted(results.values()) == [0, 4]
    assert [(kind, hits) for kind, _m, _l, _minute, hits in stored_hits(cli)] == [("opened", 4)]


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_write_that_outlives_stop_and_then_fails_keeps_its_hits(cli, caplog):
    """stop() waits `stop_wait` for a write held up by the database, then returns; when that write
    fails later, its hits are kept on disk by the writer's thread (they were lost). PostgreSQL
    only: the write is held by a lock of the events table and cancelled with pg_cancel_backend."""
    from cadence.app import App
    from cadence.hit_spool import HitSpool
    from cadence.services.engagement import resolve
    from cadence.tracking_http import HitWriter
    from core.vocabulary import EventKind

    pixel, _clicks = _served(cli)
    caplog.set_level(logging.WARNING, logger="cadence.http")
    app = App.from_settings(clock=FixedClock(T0))
    opened = resolve(app, pixel.rsplit("/", 1)[1], "o")[1]
    spool = HitSpool(app.settings.home / "spool" / "hits")
    writer = HitWriter(app, flush_every=0.01, spool=spool, stop_wait=0.2)
    engine = database(cli)

    def blocked() -> list[int]:
        with engine.connect() as connection:
            return list(connection.execute(text(
                "SELECT pid FROM pg_locks WHERE NOT granted AND relation = 'events'::regclass")).scalars())

    with engine.connect() as holder:
        holder.execute(text("LOCK TABLE events IN EXCLUSIVE MODE"))
        writer.start()
        for _ in range(3):
            writer.count(EventKind.OPENED, opened, T0)
        pause, deadline = threading.Event(), time.monotonic() + 60
        while not blocked() and time.monotonic() < deadline:
            pause.wait(0.02)
        [pid] = blocked()
        assert writer.stop() is None  # nothing else pending; the write under way is still held
        assert spool.files() == []
        with engine.connect() as other:
            other.execute(text("SELECT pg_cancel_backend(:pid)"), {"pid": pid})
        while not spool.files() and time.monotonic() < deadline:
            pause.wait(0.02)
        holder.commit()
    [kept] = spool.files()
    said = [r.getMessage() for r in caplog.records if "after the server stopped" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("a write of 3 tracking hits failed") and str(kept) in said[0]
    again = HitWriter(app, spool=spool)
    assert again.write_kept() == 3
    app.db.dispose()
    engine.dispose()
    assert spool.files() == []
    assert [(kind, hits) for kind, _m, _l, _minute, hits in stored_hits(cli)] == [("opened", 3)]


def test_kept_files_this_process_cannot_take_leave_new_hits_written_as_usual(cli, caplog):
    """The spool's lock cannot be opened (here a folder in its place; a folder owned by another
    user does the same): the kept files wait, said once, and new hits are still written."""
    from cadence.app import App
    from cadence.hit_spool import LOCK, HitSpool
    from cadence.services.engagement import resolve
    from cadence.tracking_http import HitWriter
    from core.vocabulary import EventKind

    pixel, _clicks = _served(cli)
    caplog.set_level(logging.WARNING, logger="cadence.http")
    app = App.from_settings(clock=FixedClock(T0))
    opened = resolve(app, pixel.rsplit("/", 1)[1], "o")[1]
    spool = HitSpool(app.settings.home / "spool" / "hits")
    kept = spool.keep([{**row, "hits": 2} for row in [_open_row(opened)]])
    (spool.folder / LOCK).mkdir()
    writer = HitWriter(app, spool=spool)
    for _ in range(3):
        writer.count(EventKind.OPENED, opened, T0)
        assert writer.write_pending() is True
    assert spool.files() == [kept]
    said = [r.getMessage() for r in caplog.records if "kept tracking hit files" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("writing kept tracking hit files failed"), said
    (spool.folder / LOCK).rmdir()
    assert writer.write_pending() is True
    app.db.dispose()
    assert spool.files() == []
    assert [(kind, hits) for kind, _m, _l, _minute, hits in stored_hits(cli)] == [("opened", 5)]


def test_a_file_marked_as_being_written_by_a_writer_that_died_is_written(cli):
    """Its writer died between taking it and deleting it: whether its transaction committed is
    unknown, and the file is written (the one window documented as counting twice at worst)."""
    from cadence.app import App
    from cadence.hit_spool import HitSpool
    from cadence.services.engagement import resolve
    from cadence.tracking_http import HitWriter

    pixel, _clicks = _served(cli)
    app = App.from_settings(clock=FixedClock(T0))
    opened = resolve(app, pixel.rsplit("/", 1)[1], "o")[1]
    spool = HitSpool(app.settings.home / "spool" / "hits")
    taken = spool.take(spool.keep([{**_open_row(opened), "hits": 2}]))
    assert spool.files() == [taken]
    assert HitWriter(app, spool=spool).write_kept() == 2
    app.db.dispose()
    assert spool.files() == []
    assert [(kind, hits) for kind, _m, _l, _minute, hits in stored_hits(cli)] == [("opened", 2)]


def _open_row(opened) -> dict:
    from cadence.services.engagement import hit_row
    from core.vocabulary import EventKind

    return hit_row(EventKind.OPENED, opened, T0)
