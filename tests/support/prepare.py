"""Shared set-up for prepare/send tests: a rep, a Maildir mailbox, campaign and contact files."""
from __future__ import annotations

import json
import mailbox as stdlib_mailbox
from email import policy
from email.parser import BytesParser
from pathlib import Path

REP = "rita@acme.example"
LAUNCH = "2026-11-30T14:00:00Z"  # Monday, 09:00 in New York

CAMPAIGN = """\
name: {name}
timezone: America/New_York
track: {{opens: true, clicks: true}}
steps:
  - day: 1
    action: auto
    send: at_time
    time: "09:00"
    subject: "Hello {{{{ first_name | default('there') }}}}"
    body: "<p>Hi {{{{ first_name | default('there') }}}}, see <a href='https://example.org/x'>this</a>.</p>"
  - day: 2
    action: auto
    send: same_as_previous
    thread: true
    body: "Bumping this, {{{{ first_name | default('there') }}}}."
"""


def campaign_yaml(name: str = "Spring", **extra: str) -> str:
    """The two-step campaign above; `extra` adds top-level YAML lines (`exclusions="{...}"`)."""
    text = CAMPAIGN.format(name=name)
    for key, value in extra.items():
        text = text.replace("steps:\n", f"{key}: {value}\nsteps:\n", 1)
    return text


def write(cli, name: str, text: str) -> Path:
    path = cli.home / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def base(cli) -> Path:
    """Database, rep and Maildir mailbox; returns the Maildir root."""
    maildir = cli.home / "maildir"
    cli.ok("init")
    cli.ok("rep", "add", "--email", REP, "--name", "Rita Rep")
    cli.ok("mailbox", "add", "--provider", "maildir", "--address", REP, "--owner", REP, "--path", str(maildir))
    return maildir


def contacts(cli, rows: list[str], name: str = "contacts.csv", header: str = "email,first_name,company") -> Path:
    path = write(cli, name, header + "\n" + "\n".join(rows) + "\n")
    cli.ok("contacts", "import", str(path))
    return path


def campaign(cli, text: str, name: str = "campaign.yml") -> str:
    return cli.ok("campaign", "import", str(write(cli, name, text))).strip()


def prepared(cli, name: str, now: str = LAUNCH, code: int = 0) -> dict:
    result = cli("prepare", name, "--json", now=now)
    assert result.code == code, result.err + result.out
    return json.loads(result.out)


def status(cli, name: str, now: str = LAUNCH) -> dict:
    return json.loads(cli.ok("status", name, "--json", now=now))


def sent_messages(maildir: Path) -> list:
    folder = maildir / ".Sent"
    if not folder.exists():
        return []
    box = stdlib_mailbox.Maildir(folder, factory=None, create=False)
    parser = BytesParser(policy=policy.default)
    return [parser.parsebytes(box.get_bytes(key)) for key in box.keys()]


def sent_by_recipient(maildir: Path) -> dict[str, list]:
    """The Sent folder's emails by To address, each recipient's oldest first."""
    out: dict[str, list] = {}
    for message in sorted(sent_messages(maildir), key=lambda m: m["Date"].datetime):
        out.setdefault(str(message["To"].addresses[0].addr_spec), []).append(message)
    return out


def sent_campaign(cli, yaml_text: str, people: int = 4) -> tuple[Path, str]:
    """A Maildir campaign of `yaml_text` to up to four contacts (ana, ben, cy, dee), prepared, sent
    and its first worker pass run at LAUNCH; returns the Maildir and the campaign's name."""
    maildir = base(cli)
    contacts(cli, [f"{n}@prospect.example,{n.title()},{n.title()}Co" for n in ("ana", "ben", "cy", "dee")[:people]])
    name = campaign(cli, yaml_text)
    cli.ok("enroll", name, "--all", "--mailbox", REP, now=LAUNCH)
    prepared(cli, name)
    cli.ok("send", name, now=LAUNCH)
    cli.ok("worker", "--once", "--now", LAUNCH)
    return maildir, name


def recipients(maildir: Path) -> list[str]:
    return sorted(str(m["To"].addresses[0].addr_spec) for m in sent_messages(maildir))


def database(cli):
    """A SQLAlchemy engine on the test's database, for reading what the CLI stored."""
    from store.db import make_engine

    return make_engine(cli.database_url)
