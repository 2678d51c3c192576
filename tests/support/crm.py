"""The CRM tests' Salesforce org (the fake one, tests/fakes/salesforce_server.py) and their campaign
set up through the real CLI on a Maildir mailbox (the `org` fixture is in tests/crm/conftest.py)."""
from __future__ import annotations

import json
import mailbox as stdlib_mailbox
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser
from pathlib import Path

from tests.fakes.salesforce_server import FakeSalesforce

CLIENT_ID, CLIENT_SECRET = "3MVG9-cadence-test", "cadence-secret"
REP, ADMIN = "rita@acme.example", "ada@acme.example"


@dataclass
class Org:
    fake: FakeSalesforce
    rep_user: str
    admin_user: str

    def refresh_token_file(self, cli, name: str = "sf-token.txt") -> str:
        path = cli.home / name
        path.write_text(self.fake.issue_refresh_token(self.admin_user, CLIENT_ID) + "\n", encoding="utf-8")
        return str(path)


CAMPAIGN = """\
name: CRM flow
timezone: UTC
steps:
  - day: 1
    action: auto
    send: at_time
    time: "09:00"
    subject: "Hello {{ first_name }}"
    body: "<p>Hi {{ first_name }}, a question for {{ company }}.</p>"
  - day: 2
    action: task
    send: at_time
    time: "10:00"
    subject: "Idea for {{ company }}"
    body: "Hi {{ first_name }}, an idea for {{ company }}."
"""
CONTACTS = """\
email,first_name,company
nora@prospect.example,Nora,NYCo
leo@prospect.example,Leo,LondonCo
taro@prospect.example,Taro,TokyoCo
nobody@prospect.example,Nobody,NoCo
bea@prospect.example,Bea,BCo
"""
LAUNCH = "2026-11-30T08:00:00Z"  # a Monday


def read_folder(root: Path, folder: str) -> list:
    box = stdlib_mailbox.Maildir(root / folder, factory=None, create=False)
    parser = BytesParser(policy=policy.default)
    return [parser.parsebytes(box.get_bytes(key)) for key in box.keys()]


def setup(cli, org, campaign: str = CAMPAIGN, contacts: str = CONTACTS) -> Path:
    maildir = cli.home / "maildir"
    (cli.home / "campaign.yml").write_text(campaign, encoding="utf-8")
    (cli.home / "contacts.csv").write_text(contacts, encoding="utf-8")
    cli.ok("init")
    cli.ok("rep", "add", "--email", REP, "--name", "Rita Rep")
    cli.ok("rep", "add", "--email", ADMIN, "--name", "Ada Admin", "--role", "admin")
    cli.ok("mailbox", "add", "--provider", "maildir", "--address", REP, "--owner", REP, "--path", str(maildir))
    cli.ok("campaign", "import", str(cli.home / "campaign.yml"))
    cli.ok("contacts", "import", str(cli.home / "contacts.csv"))
    out = cli.ok("crm", "connect", "salesforce", "--owner", ADMIN, "--refresh-token-file", org.refresh_token_file(cli))
    assert f"salesforce connected: {org.fake.base_url}" in out and org.admin_user in out
    return maildir


def launch(cli, name: str = "CRM flow") -> None:
    cli.ok("enroll", name, "--all", "--mailbox", REP, now=LAUNCH)
    cli.ok("prepare", name, now=LAUNCH)
    cli.ok("send", name, now=LAUNCH)


def status(cli, now: str) -> dict:
    return json.loads(cli.ok("crm", "status", "--json", now=now))
