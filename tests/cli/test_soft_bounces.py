"""Three soft bounces within 30 days count as hard, through the real CLI on a Maildir (issue 11):
a mailbox-full report (RFC 3464, `Status: 4.2.2`) arrives on three different days for the emails
sent to one address; the first two send that email again a day later, the third excludes the
address everywhere (a campaign already sending, and one prepared later), each saying why.
"""
from __future__ import annotations

import json

from connectors.maildir import MaildirPeople
from tests.support.cli import question_then_follow_up
from tests.support.mail import mail_bytes
from tests.support.maildir import by_recipient, read_folder

REP = "rita@acme.example"
FULL, OTHER = "full@prospect.example", "calm@prospect.example"
CAMPAIGN = question_then_follow_up("Soft", day=10)
ALSO = """\
name: Also
timezone: UTC
exclusions: {active_elsewhere: false}
steps:
  - day: 5
    action: auto
    send: at_time
    time: "09:00"
    subject: "Another idea, {{ first_name }}"
    body: "<p>Hi {{ first_name }}, another idea.</p>"
"""
LATER = ALSO.replace("name: Also", "name: Later").replace("day: 5", "day: 1")
# (when the report arrives, when the worker runs next)
REPORTS = [("Tue, 01 Dec 2026 10:00:00 +0000", "2026-12-01T11:00:00Z"),
           ("Wed, 02 Dec 2026 13:00:00 +0000", "2026-12-02T14:00:00Z"),
           ("Thu, 03 Dec 2026 15:00:00 +0000", "2026-12-03T16:00:00Z")]


def _sent_to(maildir, address: str) -> list:
    return by_recipient(read_folder(maildir, ".Sent")).get(address, [])


def test_three_soft_bounces_on_different_days_exclude_the_address_everywhere(cli):
    (cli.home / "later.yml").write_text(LATER, encoding="utf-8")
    maildir = cli.maildir_campaign(CAMPAIGN, ALSO, contacts=f"email,first_name\n{FULL},Full\n{OTHER},Calm\n")
    for campaign in ("Soft", "Also"):
        cli.launch(campaign, now="2026-12-01T08:00:00Z")
    cli.ok("worker", "--once", "--now", "2026-12-01T09:00:00Z")

    people = MaildirPeople(maildir)
    for n, (date, next_pass) in enumerate(REPORTS, start=1):
        sent = _sent_to(maildir, FULL)
        assert len(sent) == n  # the first email, then each send-again
        last = sent[-1] if n == 1 else max(sent, key=lambda m: m["Date"].datetime)
        people.deliver(mail_bytes("bounces/dsn-mailbox-full-4.2.2.eml", message_id=last["Message-ID"],
                                  subject=last["Subject"], contact=FULL, rep=REP, date=date))
        cli.ok("worker", "--once", "--now", next_pass)
        if n < 3:  # a day later that email goes again, under a new Message-ID
            cli.ok("worker", "--once", "--now", next_pass.replace(f"-0{n}T", f"-0{n + 1}T"))

    logs = cli.ok("logs", "Soft").splitlines()
    soft = [line for line in logs if line.split()[2:3] == ["soft_bounced"] and FULL in line]
    hard = [line for line in logs if line.split()[2:3] == ["bounced"] and FULL in line]
    assert len(soft) == 2 and all("soft bounce 4.2.2" in line and "sent again once" in line for line in soft), logs
    [hard] = hard
    assert "soft bounce number 3 within 30 days counts as hard" in hard, hard
    status = json.loads(cli.ok("status", "Soft", "--json", now="2026-12-03T16:00:00Z"))
    assert status["delivery"]["bounces"] == 1 and status["delivery"]["soft_bounces"] == 1  # people, not reports
    assert len(_sent_to(maildir, FULL)) == 3  # no fourth try

    # Everywhere: the campaign already sending does not write to them on day 5 …
    cli.ok("worker", "--once", "--now", "2026-12-05T12:00:00Z")
    also = [m for m in _sent_to(maildir, FULL) if m["Subject"].startswith("Another idea")]
    assert also == [] and any(m["Subject"] == "Another idea, Calm" for m in _sent_to(maildir, OTHER))
    also_logs = [line for line in cli.ok("logs", "Also").splitlines() if FULL in line]
    assert any("excluded" in line and "bounced" in line for line in also_logs), also_logs
    # … the sequence of Soft is over for them (no day-10 follow-up) …
    cli.ok("worker", "--once", "--now", "2026-12-10T12:00:00Z")
    assert len(_sent_to(maildir, FULL)) == 3
    assert len(_sent_to(maildir, OTHER)) == 3  # Soft's two steps and Also's one
    # … and a campaign prepared later excludes them, naming the cause.
    cli.ok("campaign", "import", str(cli.home / "later.yml"))
    cli.ok("enroll", "Later", "--all", "--mailbox", REP, now="2026-12-10T12:00:00Z")
    prepared = json.loads(cli.ok("prepare", "Later", "--json", now="2026-12-10T12:00:00Z"))
    assert prepared["exclusions"] == {"bounced": 1} and prepared["to_deliver"] == 1
    explained = cli.ok("explain", "Later", "--contact", FULL)
    assert "bounced" in explained, explained
