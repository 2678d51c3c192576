"""Stale task drafts leave the rep's Drafts, through the real CLI on a Maildir (issue 11 item 8).

Step 1 goes out on day 1; on day 3 the rep's task drafts are made. Then, as real servers send
them, a reply and a delivery report arrive in the Maildir's `new/`, one person is unenrolled and
finally the campaign is stopped: each draft of a sequence that ended is gone from `.Drafts`, and
`cadence tasks --state stale` and `cadence logs` say why. A draft whose sequence goes on stays.
"""
from __future__ import annotations

import json

from connectors.maildir import MaildirPeople
from tests.support.cli import people_csv, question_then_follow_up
from tests.support.mail import mail_bytes
from tests.support.maildir import by_recipient, read_folder

REP = "rita@acme.example"
CAMPAIGN = question_then_follow_up("Calls", day=3, action="task", body="Calling you tomorrow, {{ first_name }}.")
CONTACTS = ["reply@prospect.example", "dead@prospect.example", "gone@prospect.example",
            "quiet@prospect.example"]
DAY1, DAY3, LATER = "2026-12-01T09:00:00Z", "2026-12-03T09:30:00Z", "2026-12-03T14:00:00Z"


def _drafts(maildir) -> dict[str, list]:
    return by_recipient(read_folder(maildir, ".Drafts"))


def _stale(cli) -> dict[str, dict]:
    return {t["contact"]: t for t in json.loads(cli.ok("tasks", "--state", "stale", "--json"))}


def test_a_reply_a_bounce_an_unenrolment_and_a_stop_withdraw_the_task_drafts_and_say_why(cli):
    maildir = cli.maildir_campaign(CAMPAIGN, contacts=people_csv(CONTACTS))
    cli.launch("Calls", now="2026-12-01T08:00:00Z")
    cli.ok("worker", "--once", "--now", DAY1)
    first = {to: sent[0] for to, sent in by_recipient(read_folder(maildir, ".Sent")).items()}
    assert set(first) == set(CONTACTS)
    cli.ok("worker", "--once", "--now", DAY3)
    assert {to: len(d) for to, d in _drafts(maildir).items()} == {c: 1 for c in CONTACTS}
    open_tasks = json.loads(cli.ok("tasks", "--json"))
    assert sorted(t["contact"] for t in open_tasks) == sorted(CONTACTS)

    people = MaildirPeople(maildir)
    for contact, name in (("reply@prospect.example", "replies/gmail-reply-threaded.eml"),
                          ("dead@prospect.example", "bounces/dsn-no-returned-part.eml")):
        people.deliver(mail_bytes(name, message_id=first[contact]["Message-ID"], subject=first[contact]["Subject"],
                                  contact=contact, rep=REP, date="Thu, 03 Dec 2026 10:00:00 +0000"))
    cli.ok("worker", "--once", "--now", LATER)

    assert set(_drafts(maildir)) == {"gone@prospect.example", "quiet@prospect.example"}
    stale = _stale(cli)
    assert set(stale) == {"reply@prospect.example", "dead@prospect.example"}
    assert stale["reply@prospect.example"]["reason"] == "the contact replied; its draft was withdrawn from Drafts"
    assert stale["dead@prospect.example"]["reason"].startswith("bounced: hard bounce 5.1.1")
    assert all(t["state"] == "stale" and t["draft_link"] is None for t in stale.values())
    table = cli.ok("tasks", "--state", "stale")
    assert "the contact replied; its draft was withdrawn from Drafts" in table and "why" in table
    assert sorted(t["contact"] for t in json.loads(cli.ok("tasks", "--json"))) == [
        "gone@prospect.example", "quiet@prospect.example"]

    # Unenrolled by the operator: withdrawn at once, saying so.
    out = cli.ok("unenroll", "Calls", "--emails", "gone@prospect.example", now=LATER)
    assert "gone@prospect.example" not in _drafts(maildir)
    assert "withdrawn" in out.lower()
    # Stopped: the last draft goes too.
    cli.ok("stop", "Calls", "--yes", now=LATER)
    assert _drafts(maildir) == {}
    stale = _stale(cli)
    assert stale["gone@prospect.example"]["reason"] == "unenrolled by the operator; its draft was withdrawn from Drafts"
    assert stale["quiet@prospect.example"]["reason"] == "campaign stopped; its draft was withdrawn from Drafts"
    assert json.loads(cli.ok("tasks", "--json")) == []

    logs = cli.ok("logs", "Calls").splitlines()
    withdrawn = [line for line in logs if " draft_withdrawn " in f" {line} "]
    assert len(withdrawn) == 4, "\n".join(logs)
    for contact, why in (("reply@prospect.example", "the contact replied"), ("dead@prospect.example", "hard bounce"),
                         ("gone@prospect.example", "unenrolled by the operator"),
                         ("quiet@prospect.example", "campaign stopped")):
        [line] = [w for w in withdrawn if contact in w]
        assert "withdrawn from the Drafts of rita@acme.example" in line and why in line, line
    # Nothing stale was sent, and no later pass brings a draft back.
    cli.ok("worker", "--once", "--now", "2026-12-04T12:00:00Z")
    assert _drafts(maildir) == {}
    assert {to: len(m) for to, m in by_recipient(read_folder(maildir, ".Sent")).items()} == {c: 1 for c in CONTACTS}


OTHER = """\
name: Calls too
timezone: UTC
exclusions: {active_elsewhere: false}
steps:
  - day: 1
    action: task
    send: at_time
    time: "09:00"
    subject: "Call, {{ first_name }}?"
    body: "Could we talk on the phone, {{ first_name }}?"
"""


def test_a_reply_or_a_bounce_in_one_campaign_withdraws_the_task_drafts_of_another(cli):
    people = ["reply@prospect.example", "dead@prospect.example", "quiet@prospect.example"]
    maildir = cli.maildir_campaign(CAMPAIGN, OTHER, contacts=people_csv(people))
    for campaign in ("Calls", "Calls too"):
        cli.launch(campaign, now="2026-12-01T08:00:00Z")
    cli.ok("worker", "--once", "--now", DAY1)
    first = {to: sent[0] for to, sent in by_recipient(read_folder(maildir, ".Sent")).items()}
    assert set(first) == set(people) and {to: len(d) for to, d in _drafts(maildir).items()} == {p: 1 for p in people}

    deliver = MaildirPeople(maildir).deliver
    for contact, name in (("reply@prospect.example", "replies/no-thread-headers-re.eml"),
                          ("dead@prospect.example", "bounces/dsn-no-returned-part.eml")):
        deliver(mail_bytes(name, message_id=first[contact]["Message-ID"], subject=first[contact]["Subject"],
                           contact=contact, rep=REP, date="Tue, 01 Dec 2026 10:00:00 +0000"))
    cli.ok("worker", "--once", "--now", "2026-12-01T11:00:00Z")

    assert set(_drafts(maildir)) == {"quiet@prospect.example"}
    stale = _stale(cli)
    assert stale["reply@prospect.example"]["campaign"] == "Calls too"
    assert stale["reply@prospect.example"]["reason"] == (
        "the contact replied in campaign 'Calls'; its draft was withdrawn from Drafts")
    assert stale["dead@prospect.example"]["reason"].startswith("bounced: hard bounce 5.1.1")
    assert "in campaign 'Calls'; its draft was withdrawn from Drafts" in stale["dead@prospect.example"]["reason"]
    withdrawn = [line for line in cli.ok("logs", "Calls too").splitlines() if "draft_withdrawn" in line]
    assert len(withdrawn) == 2 and all("in campaign 'Calls'" in line for line in withdrawn), withdrawn
