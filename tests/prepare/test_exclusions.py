"""`cadence prepare` through the CLI: the target, every exclusion rule with its cause, KPIs, logs."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import text
from starlette.testclient import TestClient

from connectors.maildir import MaildirPeople
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
    write,
)

LATER = "2026-11-30T16:00:00Z"
SPRING = """\
name: Spring
timezone: America/New_York
exclusions: {do_not_contact_domains: [blocked.example]}
steps:
  - day: 1
    action: auto
    send: at_time
    time: "09:00"
    subject: "Hello {{ first_name | default('there') }}"
    body: "<p>A note for {{ company }}.</p>"
  - day: 3
    action: task
    send: at_time
    time: "10:00"
    subject: "Idea for {{ company }}"
    body: "Hi {{ first_name | default('there') }}."
"""


def _earlier_campaign_has_happened(cli, maildir) -> None:
    """Campaign Earlier reached four people: one bounced, one replied, one unsubscribed through
    the one-click link, one is still in the middle of it (active elsewhere)."""
    contacts(cli, ["bounced@prospect.example,Bo,BoCo", "replied@prospect.example,Ray,RayCo",
                   "optout@prospect.example,Olga,OlgaCo", "busy@prospect.example,Bea,BeaCo"], name="earlier.csv")
    campaign(cli, campaign_yaml("Earlier"), name="earlier.yml")
    cli.ok("enroll", "Earlier", "--contacts", str(cli.home / "earlier.csv"), "--mailbox", REP, now=LAUNCH)
    prepared(cli, "Earlier")
    cli.ok("send", "Earlier", now=LAUNCH)
    cli.ok("worker", "--once", "--now", LAUNCH)
    sent = {str(m["To"].addresses[0].addr_spec): m for m in sent_messages(maildir)}
    assert set(sent) == {"bounced@prospect.example", "replied@prospect.example", "optout@prospect.example",
                         "busy@prospect.example"}
    people = MaildirPeople(maildir, clock_now=lambda: datetime(2026, 11, 30, 15, tzinfo=timezone.utc))
    people.bounce(sent["bounced@prospect.example"]["Message-ID"], recipient="bounced@prospect.example")
    people.contact_replies(sent["replied@prospect.example"]["Message-ID"], from_address="replied@prospect.example",
                           body="Not now, thanks.")
    unsubscribe = sent["optout@prospect.example"]["List-Unsubscribe"].strip("<>")
    from cadence.app import App
    from cadence.http import create_http_app

    app = App.from_settings()
    with TestClient(create_http_app(app), base_url="https://cadence.test") as client:
        done = client.post(unsubscribe, data={"List-Unsubscribe": "One-Click"})
        assert done.status_code == 200
    app.db.dispose()
    cli.ok("worker", "--once", "--now", "2026-11-30T15:30:00Z")  # sync: the bounce and the reply


def test_every_rule_excludes_with_its_own_cause_and_the_kpis_add_up(cli):
    maildir = base(cli)
    _earlier_campaign_has_happened(cli, maildir)
    contacts(cli, ["ana@prospect.example,Ana,AnaCo", "ben@prospect.example,Ben,BenCo",
                   "nocompany@prospect.example,Cy,", "someone@blocked.example,Dee,DeeCo"])
    # Rows stored before addresses and names were checked this strictly: an address not valid any
    # more, the same address twice in different case, a name holding a line break. The CLI cannot
    # write such rows today; older data can hold them.
    with database(cli).begin() as connection:
        for address, first_name in (("broken@@prospect.example", "Old"), ("ANA@prospect.example", "Old"),
                                    ("unsafe@prospect.example", "Eve\nBcc: all@victim.example")):
            connection.execute(text("INSERT INTO contacts (email, first_name, company, custom, created_at, updated_at) "
                                    "VALUES (:email, :first_name, 'OldCo', '{}', :now, :now)"),
                               {"email": address, "first_name": first_name, "now": datetime(2026, 11, 1)})
    assert campaign(cli, SPRING, name="spring.yml") == "Spring"
    cli.ok("enroll", "Spring", "--all", "--mailbox", REP, now=LATER)

    kpis = prepared(cli, "Spring", now=LATER)
    assert kpis["state"] == "prepared" and kpis["errors"] == 0 and kpis["error_messages"] == []
    assert kpis["exclusions"] == {"bounced": 1, "replied": 1, "opted_out": 1, "active_elsewhere": 1,
                                  "missing_variable": 1, "do_not_contact_domain": 1, "unsafe_header": 1,
                                  "invalid_address": 1, "duplicate_address": 1}
    assert (kpis["targeted"], kpis["to_deliver"], kpis["to_exclude"]) == (11, 2, 9)
    assert kpis["messages"] == 4  # two steps for each of the two people to deliver

    state = status(cli, "Spring", now=LATER)
    assert state["state"] == "prepared" and state["preparation"]["current"] is True
    assert state["preparation"]["exclusions"] == kpis["exclusions"]

    logs = cli.ok("logs", "Spring").splitlines()
    excluded = [line for line in logs if " excluded " in line]
    for address, cause in (("bounced@prospect.example", "bounced"), ("replied@prospect.example", "replied"),
                           ("optout@prospect.example", "opted_out"), ("busy@prospect.example", "active_elsewhere"),
                           ("nocompany@prospect.example", "missing_variable"),
                           ("someone@blocked.example", "do_not_contact_domain"),
                           ("unsafe@prospect.example", "unsafe_header"), ("broken@@prospect.example", "invalid_address"),
                           ("ANA@prospect.example", "duplicate_address")):
        assert any(address in line and f"({cause})" in line for line in excluded), (address, cause, excluded)
    assert "preparation finished: targeted 11, to deliver 2, to exclude 9" in "\n".join(logs)
    assert logs[-1].endswith(", 0 error(s)")

    cli.ok("send", "Spring", now=LATER)
    cli.ok("worker", "--once", "--now", "2026-12-01T14:00:00Z")
    spring = [m for m in sent_messages(maildir) if "A note for" in m.get_body(("plain",)).get_content()]
    assert sorted(str(m["To"].addresses[0].addr_spec) for m in spring) == ["ana@prospect.example",
                                                                           "ben@prospect.example"]
    assert "unsafe@prospect.example" not in recipients(maildir)


def test_active_elsewhere_can_be_switched_off(sqlite_cli):
    cli = sqlite_cli
    base(cli)
    contacts(cli, ["busy@prospect.example,Bea,BeaCo"])
    campaign(cli, campaign_yaml("First"), name="first.yml")
    cli.ok("enroll", "First", "--all", "--mailbox", REP, now=LAUNCH)
    prepared(cli, "First")
    cli.ok("send", "First", now=LAUNCH)
    campaign(cli, campaign_yaml("Strict"), name="strict.yml")
    campaign(cli, campaign_yaml("Lenient", exclusions="{active_elsewhere: false}"), name="lenient.yml")
    for name in ("Strict", "Lenient"):
        cli.ok("enroll", name, "--all", "--mailbox", REP, now=LAUNCH)
    strict = prepared(cli, "Strict", code=1)  # its only contact is busy elsewhere: nobody to deliver
    assert strict["exclusions"] == {"active_elsewhere": 1} and strict["state"] == "failed"
    assert "no contact to deliver" in strict["error_messages"][0]
    lenient = prepared(cli, "Lenient")
    assert (lenient["to_deliver"], lenient["exclusions"]) == (1, {})


def test_a_bad_exclusions_option_is_refused_at_import_naming_the_field(sqlite_cli):
    cli = sqlite_cli
    base(cli)
    path = write(cli, "typo.yml", campaign_yaml("Typo", exclusions="{active_elsewhere: 'no'}"))
    result = cli("campaign", "import", str(path))
    assert result.code == 1
    assert str(path) in result.err and "exclusions.active_elsewhere: must be true or false" in result.err


def test_header_injection_in_contact_data_is_excluded_and_never_sent(sqlite_cli):
    cli = sqlite_cli
    maildir = base(cli)
    write(cli, "people.csv", "email,first_name,last_name\n"
                             "fine@prospect.example,Fay,Fine\n"
                             'lf@prospect.example,"Li\nBcc: x@evil.example",L\n'
                             'cr@prospect.example,"Cr\rX",C\n'
                             "ls@prospect.example,Ls\u2028X,L\n"
                             "nel@prospect.example,Ne\u0085X,N\n"
                             "encoded@prospect.example,=?UTF-8?Q?=0A?=Bcc: x@evil.example,E\n"
                             'lastname@prospect.example,Lou,"Last\nName"\n')
    refused = cli("contacts", "import", str(cli.home / "people.csv"))
    assert refused.code == 1 and "imported 1," in refused.out and "rejected 6" in refused.out
    rejections = refused.err.strip().splitlines()
    assert len(rejections) == 6 and rejections[0].endswith("(names may end up in headers)")
    assert ", line 3: first_name: first_name is refused: it contains a line feed (U+000A)" in rejections[0]
    # The same names stored by an older version (or another path) are still never sent.
    with database(cli).begin() as connection:
        for address, first_name, last_name in (
                ("lf@prospect.example", "Li\nBcc: x@evil.example", "L"), ("cr@prospect.example", "Cr\rX", "C"),
                ("ls@prospect.example", "Ls\u2028X", "L"), ("nel@prospect.example", "Ne\u0085X", "N"),
                ("encoded@prospect.example", "=?UTF-8?Q?=0A?=Bcc: x@evil.example", "E"),
                ("lastname@prospect.example", "Lou", "Last\nName")):
            connection.execute(text("INSERT INTO contacts (email, first_name, last_name, custom, created_at, "
                                    "updated_at) VALUES (:email, :first, :last, '{}', :now, :now)"),
                               {"email": address, "first": first_name, "last": last_name,
                                "now": datetime(2026, 11, 1)})
    campaign(cli, campaign_yaml("Names"))  # the subject holds the first name; the To header the whole name
    cli.ok("enroll", "Names", "--all", "--mailbox", REP, now=LAUNCH)
    kpis = prepared(cli, "Names")
    assert (kpis["to_deliver"], kpis["exclusions"]) == (1, {"unsafe_header": 6})
    logs = cli.ok("logs", "Names")
    for reason in ("a line feed (U+000A)", "a carriage return (U+000D)", "a line separator (U+2028)",
                   "a next-line character (U+0085)", "encoded-word"):
        assert reason in logs, reason
    cli.ok("send", "Names", now=LAUNCH)
    cli.ok("worker", "--once", "--now", LAUNCH)
    assert recipients(maildir) == ["fine@prospect.example"]
    raw = b"".join(path.read_bytes() for path in (maildir / ".Sent" / "cur").iterdir())
    assert b"evil.example" not in raw
