"""After preparing: changes make it stale; people added while sending are prepared on their own;
send now or at a time, pause, resume, stop for good; live exclusions win at send time."""
from __future__ import annotations

from datetime import datetime, timezone

from starlette.testclient import TestClient

from connectors.maildir import MaildirPeople
from tests.support.prepare import (
    LAUNCH,
    REP,
    base,
    campaign,
    campaign_yaml,
    contacts,
    prepared,
    recipients,
    sent_messages,
    status,
    write,
)

COMPANY = campaign_yaml("Accounts").replace("see <a href='https://example.org/x'>this</a>.", "a note for {{ company }}.")


def _sent_to(maildir, needle: str) -> list[str]:
    return sorted(str(m["To"].addresses[0].addr_spec) for m in sent_messages(maildir)
                  if needle in m.get_body(("plain",)).get_content())


def test_changes_after_preparing_make_it_stale_until_prepared_again(cli):
    maildir = base(cli)
    contacts(cli, ["ana@prospect.example,Ana,AnaCo", "ben@prospect.example,Ben,BenCo"])
    campaign(cli, campaign_yaml("Spring"))
    cli.ok("enroll", "Spring", "--emails", "ana@prospect.example", "--mailbox", REP, now=LAUNCH)
    assert prepared(cli, "Spring")["to_deliver"] == 1

    cli.ok("enroll", "Spring", "--emails", "ben@prospect.example", "--mailbox", REP, now=LAUNCH)  # the audience changed
    refused = cli("send", "Spring", now=LAUNCH)
    assert refused.code == 1 and "changed after it was prepared; prepare it again" in refused.err
    assert status(cli, "Spring")["preparation"]["current"] is False
    assert prepared(cli, "Spring")["to_deliver"] == 2

    write(cli, "campaign.yml", campaign_yaml("Spring").replace("Bumping this", "Following up"))  # the content changed
    cli.ok("campaign", "import", str(cli.home / "campaign.yml"))
    refused = cli("send", "Spring", now=LAUNCH)
    assert refused.code == 1 and "prepare it first" in refused.err
    assert prepared(cli, "Spring")["messages"] == 4
    cli.ok("send", "Spring", now=LAUNCH)
    cli.ok("worker", "--once", "--now", LAUNCH)
    cli.ok("worker", "--once", "--now", "2026-12-01T14:00:00Z")
    assert _sent_to(maildir, "Following up") == ["ana@prospect.example", "ben@prospect.example"]
    assert _sent_to(maildir, "Bumping this") == []


def test_people_enrolled_while_sending_are_prepared_on_their_own(sqlite_cli):
    cli = sqlite_cli
    maildir = base(cli)
    contacts(cli, ["ana@prospect.example,Ana,AnaCo"])
    campaign(cli, COMPANY)
    cli.ok("enroll", "Accounts", "--all", "--mailbox", REP, now=LAUNCH)
    prepared(cli, "Accounts")
    cli.ok("send", "Accounts", now=LAUNCH)
    cli.ok("worker", "--once", "--now", LAUNCH)
    assert recipients(maildir) == ["ana@prospect.example"]

    contacts(cli, ["cy@prospect.example,Cy,CyCo", "dee@prospect.example,Dee,", "eve@prospect.example,Eve,EveCo"],
             name="late.csv")
    from cadence.app import App
    from cadence.services.engagement import unsubscribe
    from store.models import Contact

    app = App.from_settings()
    with app.db.session() as session:
        eve = session.query(Contact).filter_by(email="eve@prospect.example").one().id
    unsubscribe(app, eve)  # she opted out of everything earlier
    app.db.dispose()
    later = "2026-11-30T15:00:00Z"
    cli.ok("enroll", "Accounts", "--contacts", str(cli.home / "late.csv"), "--mailbox", REP, now=later)
    state = status(cli, "Accounts", now=later)
    assert state["state"] == "sending"
    assert state["preparation"]["targeted"] == 4 and state["preparation"]["to_deliver"] == 2
    assert state["preparation"]["exclusions"] == {"missing_variable": 1, "opted_out": 1}
    assert state["preparation"]["current"] is True  # no new preparation of everyone is needed
    logs = cli.ok("logs", "Accounts")
    assert "dee@prospect.example: excluded (missing_variable)" in logs
    assert "eve@prospect.example: excluded (opted_out)" in logs
    cli.ok("worker", "--once", "--now", later)
    assert recipients(maildir) == ["ana@prospect.example", "cy@prospect.example"]


def test_send_at_pause_resume_and_stop_for_good(sqlite_cli):
    cli = sqlite_cli
    maildir = base(cli)
    contacts(cli, ["ana@prospect.example,Ana,AnaCo", "ben@prospect.example,Ben,BenCo"])
    contacts(cli, ["cy@prospect.example,Cy,CyCo"], name="late.csv")
    campaign(cli, campaign_yaml("Timed"))
    cli.ok("enroll", "Timed", "--contacts", str(cli.home / "contacts.csv"), "--mailbox", REP, now=LAUNCH)
    prepared(cli, "Timed")
    assert cli.ok("send", "Timed", "--at", "2026-11-30T16:00:00Z", now=LAUNCH).startswith(
        "Timed: scheduled at 2026-11-30T16:00:00")
    cli.ok("enroll", "Timed", "--contacts", str(cli.home / "late.csv"), "--mailbox", REP, now=LAUNCH)  # while scheduled
    assert status(cli, "Timed")["preparation"]["to_deliver"] == 3
    cli.ok("worker", "--once", "--now", "2026-11-30T15:59:00Z")
    assert recipients(maildir) == []  # not yet its time

    assert cli.ok("pause", "Timed", now="2026-11-30T15:59:00Z").strip() == "Timed: paused"
    cli.ok("worker", "--once", "--now", "2026-11-30T16:30:00Z")
    assert recipients(maildir) == []  # paused: its time came and went
    assert cli.ok("resume", "Timed", now="2026-11-30T16:30:00Z").strip() == "Timed: sending"
    cli.ok("worker", "--once", "--now", "2026-11-30T16:30:00Z")
    assert recipients(maildir) == ["ana@prospect.example", "ben@prospect.example", "cy@prospect.example"]

    cli.ok("pause", "Timed", now="2026-11-30T17:00:00Z")
    cli.ok("worker", "--once", "--now", "2026-12-01T17:00:00Z")
    assert len(sent_messages(maildir)) == 3  # step 2 is due, but the campaign is paused
    assert cli.ok("stop", "Timed", now="2026-12-01T17:00:00Z").strip() == "Timed: stopped"
    cli.ok("worker", "--once", "--now", "2026-12-03T17:00:00Z")
    assert len(sent_messages(maildir)) == 3  # stopped: nothing of it is ever sent again
    for command in ("resume", "send", "prepare", "pause"):
        refused = cli(command, "Timed", now="2026-12-03T17:00:00Z")
        assert refused.code == 1 and "stopped" in refused.err, (command, refused.err)
    state = status(cli, "Timed", now="2026-12-03T17:00:00Z")
    assert state["state"] == "stopped" and state["next_due"] is None
    assert state["delivery"]["sent"] == 3 and [s["sent"] for s in state["steps"]] == [3, 0]


def test_live_exclusions_win_at_send_time(sqlite_cli):
    cli = sqlite_cli
    maildir = base(cli)
    contacts(cli, ["ana@prospect.example,Ana,AnaCo", "ben@prospect.example,Ben,BenCo", "cy@prospect.example,Cy,CyCo"])
    campaign(cli, campaign_yaml("Outreach").replace("day: 2", "day: 3"), name="outreach.yml")
    campaign(cli, campaign_yaml("News", exclusions="{active_elsewhere: false}").replace(
        "Hi {{ first_name | default('there') }}, see", "News for {{ first_name }}, see"), name="news.yml")
    cli.ok("enroll", "Outreach", "--all", "--mailbox", REP, now=LAUNCH)
    cli.ok("enroll", "News", "--emails", "ana@prospect.example,ben@prospect.example", "--mailbox", REP, now=LAUNCH)
    assert prepared(cli, "Outreach")["to_deliver"] == 3
    assert prepared(cli, "News")["to_deliver"] == 2  # both prepared before anything below happened
    cli.ok("send", "Outreach", now=LAUNCH)
    cli.ok("worker", "--once", "--now", LAUNCH)
    first = {str(m["To"].addresses[0].addr_spec): m for m in sent_messages(maildir)}
    assert set(first) == {"ana@prospect.example", "ben@prospect.example", "cy@prospect.example"}

    # After the preparations: Ana unsubscribes (one-click), Ben's email bounces, Cy replies.
    from cadence.app import App
    from cadence.http import create_http_app

    app = App.from_settings()
    with TestClient(create_http_app(app), base_url="https://cadence.test") as client:
        assert client.post(first["ana@prospect.example"]["List-Unsubscribe"].strip("<>"),
                           data={"List-Unsubscribe": "One-Click"}).status_code == 200
    app.db.dispose()
    people = MaildirPeople(maildir, clock_now=lambda: datetime(2026, 11, 30, 15, tzinfo=timezone.utc))
    people.bounce(first["ben@prospect.example"]["Message-ID"], recipient="ben@prospect.example")
    people.contact_replies(first["cy@prospect.example"]["Message-ID"], from_address="cy@prospect.example",
                           body="Interested, call me.")
    cli.ok("worker", "--once", "--now", "2026-11-30T15:30:00Z")

    cli.ok("send", "News", now="2026-11-30T16:00:00Z")
    cli.ok("worker", "--once", "--now", "2026-11-30T16:00:00Z")
    cli.ok("worker", "--once", "--now", "2026-12-03T16:00:00Z")  # Outreach's step 2 is due
    assert _sent_to(maildir, "News for") == []
    assert _sent_to(maildir, "Bumping this") == []
    assert len(sent_messages(maildir)) == 3
    assert "ben@prospect.example: not sent: bounced" in cli.ok("logs", "News")  # checked again when it was due
    news = status(cli, "News", now="2026-12-03T16:00:00Z")
    assert news["delivery"]["sent"] == 0 and news["state"] == "finished"
    outreach = status(cli, "Outreach", now="2026-12-03T16:00:00Z")["delivery"]
    assert (outreach["replies"], outreach["bounces"], outreach["unsubscribes"]) == (1, 1, 1)


def test_a_render_error_for_someone_enrolled_while_sending_excludes_only_them(sqlite_cli):
    cli = sqlite_cli
    maildir = base(cli)
    stars = campaign_yaml("Stars").replace("Bumping this,", "Stars: {{ 'x' * (stars | int) }},")
    campaign(cli, stars)
    contacts(cli, ["ana@prospect.example,Ana,5"], header="email,first_name,stars")
    cli.ok("enroll", "Stars", "--all", "--mailbox", REP, now=LAUNCH)
    prepared(cli, "Stars")
    cli.ok("send", "Stars", now=LAUNCH)
    contacts(cli, ["ben@prospect.example,Ben,1000000000", "cy@prospect.example,Cy,3"], name="late.csv",
             header="email,first_name,stars")
    cli.ok("enroll", "Stars", "--contacts", str(cli.home / "late.csv"), "--mailbox", REP, now=LAUNCH)
    state = status(cli, "Stars")
    # Ben's own data hits a render limit: he is excluded as render_limit (issue #12 item 8).
    assert state["state"] == "sending" and state["preparation"]["exclusions"] == {"render_limit": 1}
    logs = cli.ok("logs", "Stars")
    assert "ben@prospect.example: excluded (render_limit): step 2, body line 1: render stopped by the " \
           "max_output_chars limit" in logs
    cli.ok("worker", "--once", "--now", LAUNCH)
    assert recipients(maildir) == ["ana@prospect.example", "cy@prospect.example"]


def test_a_finished_campaign_takes_new_people_after_a_new_preparation(sqlite_cli):
    cli = sqlite_cli
    maildir = base(cli)
    contacts(cli, ["ana@prospect.example,Ana,AnaCo"])
    campaign(cli, campaign_yaml("Short"))
    cli.ok("enroll", "Short", "--all", "--mailbox", REP, now=LAUNCH)
    prepared(cli, "Short")
    cli.ok("send", "Short", now=LAUNCH)
    cli.ok("worker", "--once", "--now", LAUNCH)
    cli.ok("worker", "--once", "--now", "2026-12-01T14:00:00Z")
    assert status(cli, "Short", now="2026-12-01T14:00:00Z")["state"] == "finished"
    contacts(cli, ["ben@prospect.example,Ben,BenCo"], name="late.csv")
    cli.ok("enroll", "Short", "--contacts", str(cli.home / "late.csv"), "--mailbox", REP, now="2026-12-02T14:00:00Z")
    refused = cli("send", "Short", now="2026-12-02T14:00:00Z")
    assert refused.code == 1 and "changed after it was prepared" in refused.err
    again = prepared(cli, "Short", now="2026-12-02T14:00:00Z")
    assert (again["targeted"], again["to_deliver"]) == (1, 1)  # only who was not launched yet
    cli.ok("send", "Short", now="2026-12-02T14:00:00Z")
    cli.ok("worker", "--once", "--now", "2026-12-02T14:00:00Z")
    assert recipients(maildir) == ["ana@prospect.example", "ana@prospect.example", "ben@prospect.example"]
