"""Repeated tracking hits (issue #12 item 9): the same URL requested 20,000 times stored 20,000 rows.

Now at most one open per message and one click per link is stored per minute; the repeats are
counted on that row (`events.hits`), so every answered hit still counts once and the KPIs (unique
contacts) are unchanged. Over real HTTP, on SQLite and PostgreSQL.
"""
from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
from sqlalchemy import text

from core.clock import FixedClock
from tests.support.http import serving, tracking_paths
from tests.support.prepare import database, sent_by_recipient, sent_campaign, status
from tests.support.tracking import LINKS, T0, stored_hits



async def _hammer(base: str, path: str, count: int, connections: int = 8) -> int:
    """`count` GETs of `path` over keep-alive connections; returns how many were answered."""
    host, port = base.removeprefix("http://").split(":")
    answered = 0

    async def one_connection(n: int) -> None:
        nonlocal answered
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while n:
                writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError as closed:
                    # The server closed an idle keep-alive connection (timeout_keep_alive) just as this
                    # request went out, unread: open another, as any HTTP client does.
                    assert closed.partial == b"", closed.partial
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, int(port))
                    continue
                assert head[9:12] in (b"200", b"302"), head
                length = next((int(line[15:]) for line in head.split(b"\r\n")
                               if line[:15].lower() == b"content-length:"), 0)
                await reader.readexactly(length)
                answered += 1
                n -= 1
        finally:
            writer.close()

    share = [count // connections + (1 if i < count % connections else 0) for i in range(connections)]
    await asyncio.gather(*(one_connection(n) for n in share))
    return answered


REPEATS = 5_000  # the case was 20,000; the row count no longer depends on it (and 20k takes minutes here)


def test_the_same_tracking_url_thousands_of_times_is_one_row_per_minute_and_counts_every_hit(cli):
    from cadence.app import App

    maildir, name = sent_campaign(cli, LINKS)
    first = {to: messages[0] for to, messages in sent_by_recipient(maildir).items()}
    ana_pixel, ana_clicks = tracking_paths(first["ana@prospect.example"])
    ben_pixel, ben_clicks = tracking_paths(first["ben@prospect.example"])

    clock = FixedClock(T0)
    app = App.from_settings(clock=clock)
    with serving(app) as base:
        assert asyncio.run(_hammer(base, ana_pixel, REPEATS)) == REPEATS
        with httpx.Client(base_url=base, follow_redirects=False) as web:
            for path in (ana_clicks[0], ana_clicks[0], ana_clicks[1], ben_pixel, ben_clicks[0]):
                assert web.get(path).status_code in (200, 302)
            assert web.head(ana_pixel).status_code == 200  # a prefetcher's HEAD is not a hit
            clock.advance(timedelta(seconds=50))  # 16:00:55: still the same minute
            for path in (ana_pixel, ana_clicks[0]):
                web.get(path)
            clock.advance(timedelta(seconds=10))  # 16:01:05: a new minute, a new row
            for path in (ana_pixel, ana_pixel, ana_clicks[0]):
                web.get(path)
    app.db.dispose()

    with database(cli).connect() as connection:
        ana, ben = connection.execute(text(
            "SELECT id FROM messages WHERE position = 1 AND state = 'sent' AND to_address IN "
            "('ana@prospect.example', 'ben@prospect.example') ORDER BY to_address")).scalars()
    assert sorted(stored_hits(cli)) == sorted([
        ("opened", ana, None, "16:00", REPEATS + 1),
        ("opened", ana, None, "16:01", 2),
        ("opened", ben, None, "16:00", 1),
        ("clicked", ana, 0, "16:00", 3),
        ("clicked", ana, 0, "16:01", 1),
        ("clicked", ana, 1, "16:00", 1),  # another link of the same message: its own row
        ("clicked", ben, 0, "16:00", 1),
    ])
    delivery = status(cli, name, now="2026-11-30T17:00:00Z")["delivery"]
    assert (delivery["opens"], delivery["clicks"]) == (2, 2)  # unique contacts, as before


def test_hits_written_in_several_batches_and_by_two_writers_add_up_on_one_row(cli):
    """The upsert adds to a row another batch (or another server process) stored first."""
    from cadence.app import App
    from cadence.http import HitWriter
    from cadence.services.engagement import hit_row, resolve
    from core.vocabulary import EventKind

    maildir, _name = sent_campaign(cli, LINKS, people=1)
    pixel, clicks = tracking_paths(sent_by_recipient(maildir)["ana@prospect.example"][0])
    clock = FixedClock(T0)
    app = App.from_settings(clock=clock)
    _parsed, hit = resolve(app, pixel.rsplit("/", 1)[1], "o")
    writers = [HitWriter(app, max_batch=7), HitWriter(app, max_batch=5)]
    for n in range(60):
        writers[n % 2].add(hit_row(EventKind.OPENED, hit, clock.now()))
    for writer in writers:
        while writer.flush():
            pass
    assert sum(w.written for w in writers) == 60
    app.db.dispose()
    assert [(kind, hits) for kind, _m, _l, _minute, hits in stored_hits(cli)] == [("opened", 60)]
