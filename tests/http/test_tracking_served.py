"""Tracking URLs against the real `cadence serve` (a process of its own) on SQLite and PostgreSQL:
every hit answered is written once, those of the last second included when the server is
stopped (SIGTERM); a message not sent answers 404 and is found once it is; a click goes only to
a link stored for its message."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlalchemy import text

from tests.support.http import tracking_paths
from tests.support.prepare import database, sent_by_recipient, sent_campaign
from tests.support.tracking import LINKS


def _sums(cli) -> dict[str, int]:
    engine = database(cli)
    try:
        with engine.connect() as connection:
            return dict(connection.execute(text(
                "SELECT kind, sum(hits) FROM events WHERE kind IN ('opened', 'clicked') GROUP BY kind")).all())
    finally:
        engine.dispose()


def test_every_hit_answered_is_written_once_even_those_just_before_the_server_stops(cli, serve_for):
    maildir, _name = sent_campaign(cli, LINKS)
    paths = []
    for messages in sent_by_recipient(maildir).values():
        pixel, clicks = tracking_paths(messages[0])
        paths += [pixel, *clicks]
    assert len(paths) == 12
    server = serve_for(cli)
    with httpx.Client(base_url=server.base, follow_redirects=False, timeout=60) as web, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda path: web.get(path).status_code, paths * 50))
    server.stop()  # at once: the last hits are still counted in memory, written by the shutdown
    assert sorted(set(answers)) == [200, 302]
    assert _sums(cli) == {"opened": answers.count(200), "clicked": answers.count(302)}
    assert "Traceback" not in server.log.read_text(errors="replace")


def test_a_message_not_sent_is_404_until_it_is_sent_and_clicks_go_only_to_its_stored_links(cli, serve_for):
    from cadence.app import App
    from core.tracking import sign_token

    maildir, _name = sent_campaign(cli, LINKS)
    ana = sent_by_recipient(maildir)["ana@prospect.example"][0]
    pixel, clicks = tracking_paths(ana)
    engine = database(cli)
    with engine.begin() as connection:
        message_id = connection.scalar(text("SELECT id FROM messages WHERE to_address = 'ana@prospect.example'"))
        connection.execute(text("UPDATE messages SET state = 'sending' WHERE id = :id"), {"id": message_id})
    app = App.from_settings()
    key = app.settings.secret_keys[0]
    app.db.dispose()
    server = serve_for(cli)
    with httpx.Client(base_url=server.base, follow_redirects=False, timeout=60) as web:
        before = [web.get(path).status_code for path in (pixel, clicks[0], pixel)]
        with engine.begin() as connection:
            connection.execute(text("UPDATE messages SET state = 'sent' WHERE id = :id"), {"id": message_id})
        after = [web.get(pixel).status_code, web.get(clicks[0]).headers.get("location")]
        forged = {link: web.get(f"/t/c/{sign_token(key, 'c', message_id, link)}") for link in (2, 3, 99)}
        wrong_kind = web.get(f"/t/c/{sign_token(key, 'o', message_id)}").status_code
    engine.dispose()
    assert before == [404, 404, 404]  # and not cached as such:
    assert after == [200, "https://example.org/x"]
    assert {link: (a.status_code, a.headers.get("location")) for link, a in forged.items()} == \
        {2: (404, None), 3: (404, None), 99: (404, None)}
    assert wrong_kind == 404
