"""The tracking hit writer (`cadence.tracking_http.HitWriter`) and the fast path in front of the app.

Hits are counted in memory by row key and written in batches by one thread: each must be written
exactly once, whether it came in while a batch was being written, was still pending when the
server stopped, or sat in a batch the database refused. And a tracking URL answered by the fast
path must get the same answer, and count the same, as one answered by the routes behind it.
On SQLite and PostgreSQL.
"""
from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import httpx
from sqlalchemy import text

from core.clock import FixedClock
from tests.support.http import serving, tracking_paths
from tests.support.prepare import database, sent_by_recipient, sent_campaign
from tests.support.tracking import LINKS, T0, stored_hits


def _ana(cli):
    """(App on a fixed clock at T0, Hit of Ana's open, Hit of her first link) of a sent campaign."""
    from cadence.app import App
    from cadence.services.engagement import resolve

    maildir, _name = sent_campaign(cli, LINKS, people=1)
    pixel, clicks = tracking_paths(sent_by_recipient(maildir)["ana@prospect.example"][0])
    app = App.from_settings(clock=FixedClock(T0))
    return app, resolve(app, pixel.rsplit("/", 1)[1], "o")[1], resolve(app, clicks[0].rsplit("/", 1)[1], "c")[1]


def test_hits_counted_by_four_threads_while_batches_are_written_are_each_written_once(cli):
    from cadence.tracking_http import HitWriter
    from core.vocabulary import EventKind

    app, opened, clicked = _ana(cli)
    writer = HitWriter(app, flush_every=0.001, max_batch=2)  # writes all the time, in small batches
    writer.start()
    minutes = [T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)]

    def plan(n: int) -> list[tuple[str, int]]:  # (kind, minute) of thread n's 1,500 hits
        return [("clicked" if i % 3 == 2 else "opened", (i // 3 + n) % 3) for i in range(1500)]

    def hits(n: int) -> None:
        for kind, minute in plan(n):
            if kind == "clicked":
                writer.count(EventKind.CLICKED, clicked, minutes[minute], 0)
            else:
                writer.count(EventKind.OPENED, opened, minutes[minute])

    threads = [threading.Thread(target=hits, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.stop()
    app.db.dispose()
    assert (writer.written, writer.pending) == (6000, 0)
    stored = stored_hits(cli)
    expected = Counter((kind, f"16:0{minute}") for n in range(4) for kind, minute in plan(n))
    assert len(stored) == 6 and {(kind, minute): hits for kind, _m, _l, minute, hits in stored} == expected


def test_hits_still_pending_when_the_writer_stops_are_written_by_stop(cli):
    from cadence.tracking_http import HitWriter
    from core.vocabulary import EventKind

    app, opened, clicked = _ana(cli)
    writer = HitWriter(app, flush_every=3600)  # its thread never writes before stop()
    writer.start()
    for _ in range(250):
        writer.count(EventKind.OPENED, opened, T0)
        writer.count(EventKind.CLICKED, clicked, T0, 0)
    assert (writer.pending, stored_hits(cli)) == (500, [])
    writer.stop()
    app.db.dispose()
    assert writer.pending == 0
    assert sorted((kind, hits) for kind, _m, _l, _minute, hits in stored_hits(cli)) == [("clicked", 250), ("opened", 250)]


def test_a_batch_the_database_refuses_goes_back_and_is_written_once_later(cli):
    import pytest

    from cadence.tracking_http import HitWriter
    from core.vocabulary import EventKind

    app, opened, _clicked = _ana(cli)
    writer = HitWriter(app)  # not started: flushed by hand
    for _ in range(40):
        writer.count(EventKind.OPENED, opened, T0)
    engine = database(cli)
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE events RENAME TO events_away"))
    try:
        with pytest.raises(Exception):
            writer.flush()
        assert writer.pending == 40
        for _ in range(2):
            writer.count(EventKind.OPENED, opened, T0)  # new hits on the key of the refused batch
    finally:
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE events_away RENAME TO events"))
        engine.dispose()
    writer.stop()
    app.db.dispose()
    assert (writer.written, writer.pending) == (42, 0)
    assert [(kind, hits) for kind, _m, _l, _minute, hits in stored_hits(cli)] == [("opened", 42)]


def test_the_fast_path_answers_and_counts_as_the_routes_behind_it_do(cli):
    """A GET announcing an empty body (`Content-Length: 0`) skips the fast path and reaches the routes."""
    from cadence.app import App

    maildir, _name = sent_campaign(cli, LINKS, people=1)
    pixel, clicks = tracking_paths(sent_by_recipient(maildir)["ana@prospect.example"][0])
    app = App.from_settings(clock=FixedClock(T0))
    answers = {}
    with serving(app) as base, httpx.Client(base_url=base, follow_redirects=False) as web:
        for path in (pixel, clicks[1]):
            for routed in (False, True):
                response = web.get(path, headers={"Content-Length": "0"} if routed else {})
                headers = sorted((k, v) for k, v in response.headers.multi_items() if k != "date")
                answers[(path, routed)] = (response.status_code, headers, response.content)
        forged = pixel[:-2] + ("AA" if not pixel.endswith("AA") else "BB")
        assert web.get(forged).status_code == 404  # the fast path does not answer it: the route does
        assert web.post(pixel).status_code == 405
    app.db.dispose()
    for path in (pixel, clicks[1]):
        fast, routed = answers[(path, False)], answers[(path, True)]
        assert fast == routed, (path, fast, routed)
    assert answers[(pixel, False)][0] == 200 and answers[(clicks[1], False)][0] == 302
    assert dict(answers[(clicks[1], False)][1])["location"] == "https://example.org/y?a=1&b=2"
    assert sorted((kind, link, hits) for kind, _m, link, _minute, hits in stored_hits(cli)) == [
        ("clicked", 1, 2), ("opened", None, 2)]


def test_a_database_down_when_the_server_stops_does_not_skip_the_other_stops(cli):
    """The hit writer stops first and raises when it cannot write what is pending; Slack's drain
    (what was acknowledged is processed) and the scheduler's shutdown come after it and must run."""
    from cadence.app import App
    from cadence.http import create_http_app

    maildir, _name = sent_campaign(cli, LINKS, people=1)
    pixel, _clicks = tracking_paths(sent_by_recipient(maildir)["ana@prospect.example"][0])
    app = App.from_settings(clock=FixedClock(T0))
    stopped: list[str] = []
    http_app = create_http_app(app, on_shutdown=[lambda: stopped.append("drained")])
    engine = database(cli)
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE events RENAME TO events_away"))
    try:
        with serving(app, http_app) as base, httpx.Client(base_url=base) as web:
            assert web.get(pixel).status_code == 200  # counted; its batch cannot be written now
    finally:
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE events_away RENAME TO events"))
        engine.dispose()
        app.db.dispose()
    assert stopped == ["drained"]


def test_a_database_outage_is_one_log_line_when_it_starts_and_one_when_it_ends(cli, caplog):
    """Not one traceback per try (every second while the database is down: a flooded log)."""
    import logging

    from cadence.tracking_http import HitWriter
    from core.vocabulary import EventKind

    app, opened, _clicked = _ana(cli)
    writer = HitWriter(app)  # not started: each try by hand
    engine = database(cli)
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE events RENAME TO events_away"))
    caplog.set_level(logging.INFO, logger="cadence.http")
    try:
        for _ in range(5):
            writer.count(EventKind.OPENED, opened, T0)
            assert writer.write_pending() is False
    finally:
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE events_away RENAME TO events"))
        engine.dispose()
    assert writer.write_pending() is True
    app.db.dispose()
    lines = [r for r in caplog.records if r.name == "cadence.http" and "tracking hits" in r.getMessage()]
    assert [r.getMessage().split(" (")[0].split(";")[0] for r in lines] == [
        "writing tracking hits failed", "writing tracking hits works again"]
    assert "5 hits wait" not in lines[0].getMessage() and "1 hits wait" in lines[0].getMessage()
    assert all(r.exc_info is None for r in lines)  # no traceback
    assert (writer.written, writer.pending) == (5, 0)


def test_a_turn_writes_what_was_counted_when_it_began_and_hits_counted_meanwhile_wait_for_the_next(cli):
    """Under steady traffic a turn that wrote until nothing was pending never ended: the writer
    upserted the same rows back to back instead of once per `flush_every` (issue #17)."""
    from sqlalchemy import event

    from cadence.tracking_http import HitWriter
    from core.vocabulary import EventKind

    app, opened, clicked = _ana(cli)
    writer = HitWriter(app, max_batch=1)  # not started: each turn by hand; one row per batch
    minutes = [T0 + timedelta(minutes=m) for m in range(3)]
    for at in minutes:
        writer.count(EventKind.OPENED, opened, at)
    statements: list[str] = []

    def during_a_write(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO EVENTS"):
            statements.append(statement)
            writer.count(EventKind.CLICKED, clicked, T0, 0)  # a hit arrives while a batch is written

    engines = {app.db.engine, app.db.writer_engine}  # SQLite writes through its own engine
    for engine in engines:
        event.listen(engine, "before_cursor_execute", during_a_write)
    try:
        assert writer.write_pending() is True
        assert (len(statements), writer.written, writer.pending) == (3, 3, 3)  # 3 batches; 3 clicks wait
        assert writer.write_pending() is True  # the next turn: one row (the clicks of one minute)
        assert (len(statements), writer.written, writer.pending) == (4, 6, 1)
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", during_a_write)
    writer.stop()
    app.db.dispose()
    assert (writer.written, writer.pending) == (7, 0)
    assert sorted((kind, hits) for kind, _m, _l, _minute, hits in stored_hits(cli)) == [
        ("clicked", 4), ("opened", 1), ("opened", 1), ("opened", 1)]
