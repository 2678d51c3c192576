"""One-click unsubscribe (RFC 8058) over real HTTP: GET only shows a confirm page, POST opts the
contact out of every campaign at once, forged tokens get a 404."""
from __future__ import annotations

import httpx
from sqlalchemy import text

from core.tracking import sign_token
from tests.support.http import serving
from tests.support.prepare import (
    LAUNCH,
    REP,
    base,
    campaign,
    campaign_yaml,
    contacts,
    database,
    prepared,
    recipients,
    sent_messages,
    status,
)

DAY3 = "2026-12-02T14:00:00Z"


def _opted_out(cli, address: str) -> bool:
    with database(cli).connect() as connection:
        return connection.scalar(text("SELECT opted_out_at IS NOT NULL FROM contacts WHERE email = :a"),
                                 {"a": address})


def test_one_click_post_opts_out_of_every_campaign_and_get_changes_nothing(cli):
    from cadence.app import App

    maildir = base(cli)
    contacts(cli, ["ana@prospect.example,Ana,AnaCo", "ben@prospect.example,Ben,BenCo"])
    campaign(cli, campaign_yaml("First"), name="first.yml")
    campaign(cli, campaign_yaml("Second", exclusions="{active_elsewhere: false}").replace("day: 2", "day: 3")
             .replace("send: at_time\n    time: \"09:00\"", "send: at_time\n    time: \"10:00\"", 1), name="second.yml")
    for name in ("First", "Second"):
        cli.ok("enroll", name, "--all", "--mailbox", REP, now=LAUNCH)
        prepared(cli, name)
        cli.ok("send", name, now=LAUNCH)
    cli.ok("worker", "--once", "--now", LAUNCH)
    (first,) = [m for m in sent_messages(maildir) if str(m["To"].addresses[0].addr_spec) == "ana@prospect.example"]
    header = first["List-Unsubscribe"]
    assert header.startswith("<https://cadence.test/u/") and header.endswith(">")
    assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    path = header.strip("<>").removeprefix("https://cadence.test")

    app = App.from_settings()
    with serving(app) as url, httpx.Client(base_url=url, follow_redirects=False) as web:
        page = web.get(path)  # what a link scanner does: nothing changes
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert f'<form method="post" action="{path}">' in page.text and "<button" in page.text
        assert page.headers["x-frame-options"] == "DENY"
        assert web.head(path).status_code == 200
        assert not _opted_out(cli, "ana@prospect.example")
        forged = f"/u/{sign_token(b'not-our-key', 'u', 1)}"
        assert web.post(forged, data={"List-Unsubscribe": "One-Click"}).status_code == 404
        assert web.post(path[:-2] + "xx", data={"List-Unsubscribe": "One-Click"}).status_code == 404
        done = web.post(path, data={"List-Unsubscribe": "One-Click"})  # the mail provider's one-click POST
        assert done.status_code == 200 and "unsubscribed" in done.text
        assert web.post(path).status_code == 200  # the confirm button, again: still fine, counted once
    app.db.dispose()
    assert _opted_out(cli, "ana@prospect.example") and not _opted_out(cli, "ben@prospect.example")

    before = {m["Message-ID"] for m in sent_messages(maildir)}
    for now in ("2026-11-30T15:00:00Z", "2026-12-01T15:00:00Z", DAY3, "2026-12-02T16:00:00Z"):
        cli.ok("worker", "--once", "--now", now)  # Second's step 1 at 10:00, then every later step
    later = [m for m in sent_messages(maildir) if m["Message-ID"] not in before]
    assert len(later) == 3 and all(str(m["To"].addresses[0].addr_spec) == "ben@prospect.example" for m in later)
    assert recipients(maildir).count("ana@prospect.example") == 1  # First's step 1, before she unsubscribed
    assert status(cli, "First", now=DAY3)["delivery"]["unsubscribes"] == 1
    assert status(cli, "Second", now=DAY3)["delivery"]["unsubscribes"] == 0  # the link was First's
    assert "sequence ended: ana@prospect.example unsubscribed through an email of campaign 'First'" in \
        cli.ok("logs", "Second")
