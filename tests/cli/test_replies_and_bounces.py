"""Stop means stop, through the real CLI on a Maildir: mail shaped the way real servers and
clients send it is dropped into the mailbox's `new/`, then `cadence worker --once`, then
`status` and `logs` (issue faults 1, 4, 5 and 6, and the hard/soft outcomes of bounces)."""
from __future__ import annotations

import json

from connectors.maildir import MaildirPeople
from tests.support.cli import people_csv, question_then_follow_up
from tests.support.mail import mail_bytes
from tests.support.maildir import by_recipient, read_folder

REP = "rita@acme.example"
CAMPAIGN = question_then_follow_up("Stop", day=3)
LATER = CAMPAIGN.replace("name: Stop", "name: Later").replace("Quick question", "Another idea")
# contact -> what arrives after step 1 (a file of tests/data/mail)
ARRIVALS = {
    "reply@prospect.example": "replies/no-thread-headers-re.eml",  # fault 1
    "ooo@prospect.example": "auto/exchange-ooo-german-subject-only.eml",  # fault 4
    "dead@prospect.example": "bounces/dsn-no-returned-part.eml",  # fault 5
    "full@prospect.example": "bounces/dsn-mailbox-full-4.2.2.eml",  # fault 6
    "quiet@prospect.example": None,
}
DAY1, AFTER, DAY2, DAY3 = ("2026-12-01T09:00:00Z", "2026-12-01T12:00:00Z", "2026-12-02T12:00:00Z",
                           "2026-12-03T12:00:00Z")


def test_replies_automatic_replies_and_bounces_as_real_servers_send_them(cli):
    (cli.home / "later.yml").write_text(LATER, encoding="utf-8")
    maildir = cli.maildir_campaign(CAMPAIGN, contacts=people_csv(ARRIVALS))
    cli.launch("Stop", now="2026-12-01T08:00:00Z")
    cli.ok("worker", "--once", "--now", DAY1)
    first = {to: sent[0] for to, sent in by_recipient(read_folder(maildir, ".Sent")).items()}
    assert set(first) == set(ARRIVALS)

    people = MaildirPeople(maildir)
    for contact, name in ARRIVALS.items():
        if name:
            people.deliver(mail_bytes(name, message_id=first[contact]["Message-ID"], subject=first[contact]["Subject"],
                                      contact=contact, rep=REP, date="Tue, 01 Dec 2026 10:00:00 +0000"))
    cli.ok("worker", "--once", "--now", AFTER)

    status = json.loads(cli.ok("status", "Stop", "--json", now=AFTER))
    assert status["delivery"]["replies"] == 1  # only the person's answer, not the out-of-office
    assert status["delivery"]["bounces"] == 1  # the hard one; the full mailbox is retried
    assert status["delivery"]["soft_bounces"] == 1
    logs = cli.ok("logs", "Stop").splitlines()

    def lines(kind: str, contact: str) -> list[str]:
        return [line for line in logs if line.split()[2:3] == [kind] and contact in line]

    [replied] = lines("replied", "reply@prospect.example")
    assert "rule subject" in replied and "Yes, interested - call me Thursday." in replied
    [auto] = lines("auto_replied", "ooo@prospect.example")
    assert "Automatische Antwort" in auto and "the sequence goes on" in auto
    [dead] = lines("bounced", "dead@prospect.example")
    assert "hard bounce 5.1.1" in dead and "rule message_id" in dead
    [full] = lines("soft_bounced", "full@prospect.example")
    assert "soft bounce 4.2.2" in full and "Mailbox full" in full and "sent again once, at 2026-12-02 10:00" in full
    assert not lines("bounced", "full@prospect.example") and not lines("replied", "ooo@prospect.example")

    # A day after the full mailbox: that email goes again (a new Message-ID), nothing else does.
    cli.ok("worker", "--once", "--now", DAY2)
    sent = by_recipient(read_folder(maildir, ".Sent"))
    again = sent["full@prospect.example"]
    assert [m["Subject"] for m in again] == ["Quick question, Full"] * 2
    assert again[0]["Message-ID"] != again[1]["Message-ID"]
    assert all(len(sent[c]) == 1 for c in ARRIVALS if c != "full@prospect.example")

    # Day 3: the follow-up goes to the out-of-office and the quiet one; the full mailbox's follow-up
    # keeps its distance to the email that went again (day 4).
    cli.ok("worker", "--once", "--now", DAY3)
    cli.ok("worker", "--once", "--now", "2026-12-04T12:00:00Z")
    sent = by_recipient(read_folder(maildir, ".Sent"))
    assert {c: len(m) for c, m in sent.items()} == {
        "reply@prospect.example": 1, "dead@prospect.example": 1, "ooo@prospect.example": 2,
        "full@prospect.example": 3, "quiet@prospect.example": 2}

    # The hard bounce is excluded everywhere; the soft one is not.
    cli.ok("campaign", "import", str(cli.home / "later.yml"))
    cli.ok("enroll", "Later", "--all", "--mailbox", REP, now=DAY3)
    prepared = json.loads(cli.ok("prepare", "Later", "--json", now=DAY3))
    assert prepared["exclusions"].get("bounced") == 1
    assert prepared["to_deliver"] + prepared["to_exclude"] == len(ARRIVALS)


# contact as imported -> (as mail servers write it back, what arrives after step 1)
IDN_ARRIVALS = {
    "antwort@münchen.example": ("antwort@xn--mnchen-3ya.example", "replies/no-thread-headers-re.eml"),
    "tot@bücher.example": ("tot@xn--bcher-kva.example", "bounces/dsn-no-returned-part.eml"),
    "ruhig@münchen.example": ("ruhig@xn--mnchen-3ya.example", None),
}


def test_replies_and_bounces_from_an_idn_domain_find_their_contact(sqlite_cli):
    """Servers write an internationalised domain in IDNA; the contact is stored in Unicode."""
    cli = sqlite_cli
    maildir = cli.maildir_campaign(CAMPAIGN, contacts=people_csv(IDN_ARRIVALS))
    cli.launch("Stop", now="2026-12-01T08:00:00Z")
    cli.ok("worker", "--once", "--now", DAY1)
    first = {to: sent[0] for to, sent in by_recipient(read_folder(maildir, ".Sent")).items()}
    assert set(first) == {wire for wire, _ in IDN_ARRIVALS.values()}

    people = MaildirPeople(maildir)
    for wire, name in IDN_ARRIVALS.values():
        if name:
            people.deliver(mail_bytes(name, message_id="<unrelated@elsewhere.example>", subject=first[wire]["Subject"],
                                      contact=wire.upper(), rep=REP, date="Tue, 01 Dec 2026 10:00:00 +0000"))
    cli.ok("worker", "--once", "--now", AFTER)
    status = json.loads(cli.ok("status", "Stop", "--json", now=AFTER))
    assert (status["delivery"]["replies"], status["delivery"]["bounces"]) == (1, 1)
    logs = cli.ok("logs", "Stop")
    assert "antwort@münchen.example replied (rule subject" in logs

    cli.ok("worker", "--once", "--now", DAY3)
    sent = by_recipient(read_folder(maildir, ".Sent"))
    assert {c: len(m) for c, m in sent.items()} == {
        "antwort@xn--mnchen-3ya.example": 1, "tot@xn--bcher-kva.example": 1, "ruhig@xn--mnchen-3ya.example": 2}
