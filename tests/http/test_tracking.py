"""Open pixel and click redirect over real HTTP; the KPIs count unique contacts of delivered ones."""
from __future__ import annotations

from datetime import datetime, timezone

import httpx
from sqlalchemy import text
from starlette.testclient import TestClient

from connectors.maildir import MaildirPeople
from tests.support.http import html_of, serving, tracking_paths
from tests.support.prepare import database, sent_by_recipient, sent_campaign, sent_messages, status

LINKS = """\
name: Tracked
timezone: America/New_York
steps:
  - day: 1
    action: auto
    send: at_time
    time: "09:00"
    subject: "Hello {{ first_name }}"
    body: |
      <p>Hi {{ first_name }}: <a href="https://example.org/x">one</a>,
      <a href="https://example.org/y?a=1&amp;b=2">two</a>,
      <a href="//evil.example/z">three</a>, <a href="javascript:alert(1)">four</a>.</p>
  - day: 2
    action: auto
    send: same_as_previous
    thread: true
    body: "<p>Bumping this, {{ first_name }}: <a href='https://example.org/x'>one</a>.</p>"
"""
DAY2 = "2026-12-01T14:00:00Z"



def _events(cli, kind: str) -> int:
    """Hits recorded (repeats within a minute share a row and add to its `hits`)."""
    with database(cli).connect() as connection:
        return connection.scalar(text("SELECT coalesce(sum(hits), 0) FROM events WHERE kind = :kind"), {"kind": kind})


def _rows(cli, kind: str) -> int:
    with database(cli).connect() as connection:
        return connection.scalar(text("SELECT count(*) FROM events WHERE kind = :kind"), {"kind": kind})



def test_opens_and_clicks_over_http_count_unique_contacts_of_those_delivered(cli):
    from cadence.app import App

    maildir, name = sent_campaign(cli, LINKS)
    first = {to: messages[0] for to, messages in sent_by_recipient(maildir).items()}
    assert set(first) == {"ana@prospect.example", "ben@prospect.example", "cy@prospect.example",
                          "dee@prospect.example"}
    html = html_of(first["ana@prospect.example"])
    assert 'href="//evil.example/z"' in html and 'href="javascript:alert(1)"' in html  # never rewritten …
    ana_pixel, ana_clicks = tracking_paths(first["ana@prospect.example"])
    ben_pixel, ben_clicks = tracking_paths(first["ben@prospect.example"])
    assert len(ana_clicks) == 2  # … only the two http(s) links are tracked

    people = MaildirPeople(maildir, clock_now=lambda: datetime(2026, 11, 30, 15, tzinfo=timezone.utc))
    people.bounce(first["cy@prospect.example"]["Message-ID"], recipient="cy@prospect.example")
    cli.ok("worker", "--once", "--now", "2026-11-30T15:00:00Z")
    cli.ok("worker", "--once", "--now", DAY2)  # step 2 to Ana, Ben and Dee (Cy bounced)
    ana_second, _ = tracking_paths(sent_by_recipient(maildir)["ana@prospect.example"][1])

    app = App.from_settings()
    with serving(app) as url, httpx.Client(base_url=url, follow_redirects=False) as web:
        assert web.head(ben_pixel).status_code == 200 and web.head(ben_clicks[0]).status_code == 302  # not counted
        for path in (ana_pixel, ana_pixel, ana_pixel, ben_pixel, ana_second):
            hit = web.get(path)
            assert hit.status_code == 200 and hit.headers["content-type"] == "image/gif"
            assert hit.headers["cache-control"].startswith("no-store")
        for path, destination in ((ana_clicks[0], "https://example.org/x"), (ana_clicks[0], "https://example.org/x"),
                                  (ben_clicks[1], "https://example.org/y?a=1&b=2")):
            hit = web.get(path)
            assert hit.status_code == 302 and hit.headers["location"] == destination
    app.db.dispose()

    assert (_events(cli, "opened"), _events(cli, "clicked")) == (5, 3)  # every hit recorded once
    kpis = status(cli, name, now=DAY2)
    delivery = kpis["delivery"]
    assert (delivery["sent"], delivery["bounces"], delivery["delivered"]) == (7, 1, 6)
    assert delivery["delivered_pct"] == 85.7
    assert delivery["delivered_contacts"] == 3  # Ana, Ben and Dee; Cy's only email bounced
    assert (delivery["opens"], delivery["opens_pct"]) == (2, 66.7)  # unique contacts, % of delivered contacts
    assert (delivery["clicks"], delivery["clicks_pct"]) == (2, 66.7)
    steps = {s["position"]: s for s in kpis["steps"]}
    assert (steps[1]["sent"], steps[1]["delivered"], steps[1]["opens"], steps[1]["clicks"]) == (4, 3, 2, 2)
    assert (steps[1]["opens_pct"], steps[1]["clicks_pct"], steps[1]["bounces"]) == (66.7, 66.7, 1)
    assert (steps[2]["sent"], steps[2]["delivered"], steps[2]["opens"], steps[2]["clicks"]) == (3, 3, 1, 0)


def test_tampered_foreign_and_unknown_tokens_get_404_and_record_nothing(sqlite_cli):
    from cadence.app import App
    from cadence.http import create_http_app
    from core.tracking import sign_token

    cli = sqlite_cli
    maildir, name = sent_campaign(cli, LINKS, people=2)
    first = {to: messages[0] for to, messages in sent_by_recipient(maildir).items()}
    pixel, clicks = tracking_paths(first["ana@prospect.example"])
    unsubscribe = first["ana@prospect.example"]["List-Unsubscribe"].strip("<>").removeprefix("https://cadence.test")
    app = App.from_settings()
    key = app.settings.secret_keys[0]
    with database(cli).connect() as connection:
        ana, ben = connection.execute(text(
            "SELECT m.id FROM messages m WHERE m.position = 1 AND m.state = 'sent' ORDER BY m.to_address")).scalars()
        planned = connection.scalar(text("SELECT id FROM messages WHERE state = 'scheduled' LIMIT 1"))
    token = pixel.rsplit("/", 1)[1]
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    forged = {
        "tampered signature": f"/t/o/{flipped}",
        "truncated": f"/t/o/{token[:-4]}",
        "foreign key": f"/t/o/{sign_token(b'another-installation-key', 'o', ana)}",
        "unknown message": f"/t/o/{sign_token(key, 'o', 999_999)}",
        "message not sent": f"/t/o/{sign_token(key, 'o', planned)}",
        "click token on the pixel": f"/t/o/{clicks[0].rsplit('/', 1)[1]}",
        "pixel token as a click": f"/t/c/{token}",
        "link id the message does not have": f"/t/c/{sign_token(key, 'c', ana, 2)}",
        "link id of another message": f"/t/c/{sign_token(key, 'c', ben, 7)}",
        "tampered click": clicks[0][:-3] + "abc",
        "unsubscribe token as a click": "/t/c/" + unsubscribe.rsplit("/", 1)[1],
        "forged unsubscribe": f"/u/{sign_token(b'another-installation-key', 'u', ana)}",
        "path traversal": "/t/c/..%2f..%2fevil.example",
    }
    with TestClient(create_http_app(app), base_url="https://cadence.test", follow_redirects=False) as web:
        for why, path in forged.items():
            for method in ("GET", "POST") if path.startswith("/u/") else ("GET",):
                answer = web.request(method, path)
                assert answer.status_code == 404, (why, method, answer.status_code)
                assert "location" not in answer.headers, why
    # A stored link that is not an absolute http(s) URL never becomes a destination (a fresh server:
    # the facts of a sent message are cached, as they never change).
    with database(cli).begin() as connection:
        connection.execute(text("UPDATE messages SET links = :links WHERE id = :id"),
                           {"links": '["//evil.example/a", "javascript:alert(1)", " https://example.org/x"]', "id": ben})
    with TestClient(create_http_app(app), base_url="https://cadence.test", follow_redirects=False) as web:
        for link in range(3):
            answer = web.get(f"/t/c/{sign_token(key, 'c', ben, link)}")
            assert answer.status_code == 404 and "location" not in answer.headers
    app.db.dispose()
    assert (_events(cli, "opened"), _events(cli, "clicked"), _events(cli, "unsubscribed")) == (0, 0, 0)
    delivery = status(cli, name)["delivery"]
    assert (delivery["opens"], delivery["clicks"], delivery["unsubscribes"]) == (0, 0, 0)


def test_tracking_switched_off_leaves_no_pixel_and_no_rewritten_link(sqlite_cli):
    cli = sqlite_cli
    quiet = LINKS.replace("name: Tracked\n", "name: Quiet\ntrack: {opens: false, clicks: false}\n")
    maildir, _ = sent_campaign(cli, quiet, people=1)
    (message,) = sent_messages(maildir)
    html = html_of(message)
    assert "/t/o/" not in html and "/t/c/" not in html and "<img" not in html
    assert 'href="https://example.org/x"' in html
    assert message["List-Unsubscribe"].startswith("<https://cadence.test/u/")  # unsubscribing stays
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    with database(cli).connect() as connection:
        assert set(connection.scalars(text("SELECT links FROM messages"))) == {"[]"}


def test_opens_only_tracking_keeps_links_as_written(sqlite_cli):
    cli = sqlite_cli
    maildir, _ = sent_campaign(cli, LINKS.replace("name: Tracked\n", "name: Opens\ntrack: {clicks: false}\n"),
                                people=1)
    (message,) = sent_messages(maildir)
    pixel, clicks = tracking_paths(message)
    assert pixel.startswith("/t/o/") and clicks == []
    assert 'href="https://example.org/x"' in html_of(message)
