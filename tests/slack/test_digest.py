"""Manager digests: the figures, the CLI table, the Slack post with its chart, the schedule."""
from __future__ import annotations

import logging
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from bot.digest import build_digest, latest_occurrence, parse_schedule, send_due_digests
from connectors.maildir import MaildirPeople
from store.models import Event, Message, Rep
from tests.support.slack import folder, make_app, recipient, text_of

END = "2026-12-04T00:00:00Z"  # the week before: every first step was sent in it


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture
def busy_week(served, app, world):
    """Nora opens her first email (through the tracking pixel), Leo replies, Taro's bounces."""
    sent = [m for m in folder(world.maildir("rita"), ".Sent") if recipient(m) == "ny@prospect.example"]
    html = sent[0].get_body(("html",)).get_content()
    pixel = re.search(r'https://cadence\.test(/t/o/[A-Za-z0-9_\-]+)', html).group(1)
    assert served.http.get(pixel).status_code == 200

    def opened() -> bool:
        with app.db.session() as session:
            return session.scalar(select(Event.id).where(Event.kind == "opened")) is not None

    assert served.fake.wait_for(opened)
    with app.db.session() as session:
        first = dict(session.execute(select(Message.to_address, Message.message_id).where(Message.position == 1)).all())
    people = MaildirPeople(world.maildir("rita"))
    people.contact_replies(first["ldn@prospect.example"], from_address="ldn@prospect.example", body="Interested!")
    people.bounce(first["tyo@prospect.example"], recipient="tyo@prospect.example")
    world.run("worker", "--once", "--now", "2026-12-02T16:00:00Z")


def test_the_figures_per_rep_and_per_campaign(app, busy_week):
    digest = build_digest(app, "MIA@acme.example", end=at(END))
    reps = {row.label: row.kpis for row in digest.reps}
    assert set(reps) == {"Rita Rep", "Bob Builder"}  # Otto is not in Mia's team
    rita = reps["Rita Rep"]
    assert (rita.sent, rita.bounces, rita.delivered, rita.replies, rita.opens, rita.clicks) == (3, 1, 2, 1, 1, 0)
    assert (rita.delivered_pct, rita.opens_pct, rita.clicks_pct) == (66.7, 50.0, 0.0)
    assert rita.overdue_tasks == 1  # Nora's draft, due on the 2nd at 10:00 New York, still open
    assert reps["Bob Builder"].empty
    assert [(row.label, row.kpis) for row in digest.campaigns] == [("Flow", rita)]
    assert digest.total == rita and digest.zone == "Europe/Paris"


def test_an_admin_digest_covers_everyone_and_a_rep_has_none(app):
    digest = build_digest(app, "ada@acme.example", end=at(END))
    assert {row.label for row in digest.reps} == {"Rita Rep", "Otto Other"}
    assert {row.label for row in digest.campaigns} == {"Flow", "Otto Outreach"}
    from cadence.services.errors import UserError

    with pytest.raises(UserError, match="no reps reporting to them"):
        build_digest(app, "rita@acme.example")
    with pytest.raises(UserError, match="no rep with email"):
        build_digest(app, "nobody@acme.example")


def test_cadence_digest_prints_the_tables(world, busy_week):
    out = world.run("digest", "--manager", "mia@acme.example", now=END)
    assert "Weekly digest for Mia Manager" in out
    rita = next(line for line in out.splitlines() if "Rita Rep" in line)
    assert re.findall(r"\d+(?:\.\d)?", rita) == ["3", "66.7", "50.0", "0.0", "1", "1", "1"]
    assert any("Flow" in line for line in out.splitlines())


def test_cadence_digest_post_dms_the_digest_and_its_chart(world, fake_slack, busy_week):
    world.cli.setenv("SLACK_BOT_TOKEN", fake_slack.bot_token)
    world.cli.setenv("CADENCE_SLACK_API_URL", fake_slack.api_url)
    fake_slack.clear()
    out = world.run("digest", "--manager", "mia@acme.example", "--post", now=END)
    assert "posted to Slack" in out
    [post] = fake_slack.calls_to("chat.postMessage")
    assert post["channel"] == "DUMIA"
    body = text_of(post["blocks"])
    assert "Weekly digest" in body and "*Rita Rep*" in body and "delivered 66.7 %" in body and "*Flow*" in body
    [asked] = fake_slack.calls_to("files.getUploadURLExternal")
    [done] = fake_slack.calls_to("files.completeUploadExternal")
    assert done["channel_id"] == "DUMIA" and asked["filename"] == "digest-2026-12-04.png"
    [(file_id, data)] = fake_slack.uploads.items()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) == int(asked["length"]) > 5000
    assert fake_slack.shared_files == [{"id": file_id, "title": "Weekly digest 2026-12-04", "channel_id": "DUMIA",
                                        "initial_comment": None}]


def test_cadence_digest_post_errors_are_one_sentence(world, fake_slack):
    world.cli.setenv("SLACK_BOT_TOKEN", None)
    result = world.cli("digest", "--manager", "mia@acme.example", "--post")
    assert result.code == 1 and "SLACK_BOT_TOKEN is not set" in result.err
    world.cli.setenv("SLACK_BOT_TOKEN", fake_slack.bot_token)
    world.cli.setenv("CADENCE_SLACK_API_URL", fake_slack.api_url)
    fake_slack.users.pop("UMIA")  # her Slack account is gone
    result = world.cli("digest", "--manager", "mia@acme.example", "--post")
    assert result.code == 1 and "Slack refused the digest" in result.err and "Traceback" not in result.err


def test_slash_digest_posts_it_for_a_manager(served, fake_slack):
    response, hook = served.command("UMIA", "digest")
    assert response.status_code == 200
    assert "in your direct messages" in served.hook(hook)["text"]
    assert [p["channel"] for p in fake_slack.calls_to("chat.postMessage")] == ["DUMIA"]
    assert len(fake_slack.uploads) == 1


def test_schedules():
    assert parse_schedule(None) == (frozenset({0}), datetime(2000, 1, 1, 8, 0).time())
    assert parse_schedule("weekdays 09:15")[0] == frozenset(range(5))
    assert parse_schedule("fri-mon 07:00")[0] == frozenset({4, 5, 6, 0})
    assert parse_schedule("Mon,Thu 08:30")[0] == frozenset({0, 3})
    assert parse_schedule("off") is None
    for bad in ("monday 8", "mon 24:00", "someday 08:00", "mon", "mon 8:60"):
        with pytest.raises(ValueError, match="digest_schedule"):
            parse_schedule(bad)
    paris = ZoneInfo("Europe/Paris")
    assert latest_occurrence("mon 08:00", paris, at("2026-12-07T07:00:00Z")) == at("2026-12-07T07:00:00Z")
    assert latest_occurrence("mon 08:00", paris, at("2026-12-07T06:59:59Z")) == at("2026-11-30T07:00:00Z")
    # across the change to summer time: 08:00 Paris is 06:00 UTC on 30 March 2026
    assert latest_occurrence("mon 08:00", paris, at("2026-03-30T06:30:00Z")) == at("2026-03-30T06:00:00Z")


def test_send_due_digests_follows_each_managers_schedule(world, fake_slack, caplog):
    def run(now: str) -> int:
        app = make_app(world, fake_slack, now=at(now))
        try:
            return send_due_digests(app)
        finally:
            app.db.dispose()

    assert run("2026-12-07T06:59:00Z") == 0  # Monday 07:59 in Paris
    assert run("2026-12-07T07:00:00Z") == 1  # 08:00: Mia's digest
    assert run("2026-12-07T09:00:00Z") == 0  # once
    assert run("2026-12-13T12:00:00Z") == 0  # Sunday
    assert run("2026-12-14T07:05:00Z") == 1  # next Monday
    assert [p["channel"] for p in fake_slack.calls_to("chat.postMessage")] == ["DUMIA", "DUMIA"]

    app = make_app(world, fake_slack)
    with app.db.session() as session:
        session.execute(update(Rep).where(Rep.email == "mia@acme.example").values(digest_schedule="daily 09:00"))
    assert run("2026-12-14T07:59:00Z") == 0
    assert run("2026-12-14T08:00:00Z") == 1  # 09:00 in Paris the same Monday
    with app.db.session() as session:
        session.execute(update(Rep).where(Rep.email == "mia@acme.example").values(digest_schedule="whenever"))
    with caplog.at_level(logging.ERROR, logger="cadence.slack.digest"):
        assert run("2026-12-16T08:00:00Z") == 0
    assert any("digest_schedule" in r.message for r in caplog.records)


def test_a_digest_slack_could_not_take_is_sent_on_the_next_run(world, fake_slack):
    app = make_app(world, fake_slack, now=at("2026-12-07T07:00:00Z"))
    fake_slack.fail_next("chat.postMessage", "ratelimited")
    assert send_due_digests(app) == 0
    with app.db.session() as session:
        assert session.scalar(select(Rep.last_digest_at).where(Rep.email == "mia@acme.example")) is None
    assert send_due_digests(app) == 1
    assert send_due_digests(app) == 0
    with app.db.session() as session:
        assert session.scalar(select(Rep.last_digest_at).where(Rep.email == "mia@acme.example")) == app.clock.now()


def test_a_digest_missed_for_days_is_not_sent_late(world, fake_slack):
    app = make_app(world, fake_slack, now=at("2026-12-08T07:01:00Z"))  # Tuesday: Monday's is 24 h old
    assert send_due_digests(app) == 0


def test_a_new_manager_waits_for_the_next_scheduled_time(world, fake_slack):
    world.run("rep", "add", "--email", "newboss@acme.example", "--role", "manager", now="2026-12-07T10:00:00Z")
    fake_slack.add_user("UNEWBOSS", "newboss@acme.example", "New Boss")
    app = make_app(world, fake_slack, now=at("2026-12-07T12:00:00Z"))
    assert send_due_digests(app) == 1  # Mia's of this Monday 08:00; the new manager came after it
    assert [c["users"] for c in fake_slack.calls_to("conversations.open")] == ["UMIA"]
    assert fake_slack.calls_to("users.lookupByEmail") == []


def test_the_slack_digest_and_cadence_status_agree_on_a_campaign(world, fake_slack, busy_week):
    """One KPI definition: opens and clicks are unique contacts as % of delivered contacts, in the
    digest posted in Slack as in `cadence status`. Nora's second email (her task, sent by Rita) makes
    delivered emails (3) and delivered contacts (2) differ, so a per-email count would not agree."""
    import json

    tasks = json.loads(world.run("tasks", "--rep", "rita@acme.example", "--json", now="2026-12-02T16:20:00Z"))
    [nora] = [t for t in tasks if t["contact"] == "ny@prospect.example"]
    world.run("task", "send", str(nora["id"]), now="2026-12-02T16:30:00Z")
    world.cli.setenv("SLACK_BOT_TOKEN", fake_slack.bot_token)
    world.cli.setenv("CADENCE_SLACK_API_URL", fake_slack.api_url)
    fake_slack.clear()
    world.run("digest", "--manager", "mia@acme.example", "--post", now=END)
    [post] = fake_slack.calls_to("chat.postMessage")
    flow = next(b["text"]["text"] for b in post["blocks"] if b.get("text", {}).get("text", "").startswith("*Flow*"))
    shown = dict(re.findall(r"(sent|delivered|opens|clicks|replies|bounces) (\d+(?:\.\d)?)", flow))

    status = json.loads(world.run("status", "Flow", "--json", now=END))["delivery"]
    assert (status["sent"], status["delivered"], status["delivered_contacts"], status["opens"]) == (4, 3, 2, 1)
    assert status["opens_pct"] == 50.0  # one of the two contacts who got an email opened it (not 1 of 3 emails)
    assert shown == {"sent": str(status["sent"]), "delivered": f"{status['delivered_pct']:.1f}",
                     "opens": f"{status['opens_pct']:.1f}", "clicks": f"{status['clicks_pct']:.1f}",
                     "replies": str(status["replies"]), "bounces": str(status["bounces"])}
