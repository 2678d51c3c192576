"""The read side's small world (tests/reads builds its `world` fixture on it), built through the
real CLI on SQLite and PostgreSQL.

Mia manages Rita and Bob; Otto is on his own; Ada is an admin. Rita's mailbox sends "Flow" (Nora,
Leo, Taro), Otto's sends "Otto Outreach" (Ana); "Shared" sends from both (Sam from Rita's, Sue
from Otto's). Step 1 is automatic, step 2 a task on day 2. After the first two days: Nora opened
and clicked her first email, Leo replied, Taro's bounced; every task is open.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cadence.app import App
from connectors.maildir import layout

LAUNCH = "2026-11-30T05:00:00Z"  # Monday 00:00 in New York
FIRST_STEP = "2026-11-30T14:35:00Z"  # 09:35 New York: step 1 went out
TASKS = "2026-12-01T15:05:00Z"  # day 2, 10:05 New York: every task is drafted
SYNCED = "2026-12-01T16:00:00Z"
NOW = datetime(2026, 12, 1, 16, 30, tzinfo=timezone.utc)
WEEK_END = datetime(2026, 12, 3, 0, 0, tzinfo=timezone.utc)

CAMPAIGN = """\
name: {name}
timezone: America/New_York
steps:
  - day: 1
    action: auto
    send: at_time
    time: "09:30"
    subject: "Hello {{{{ first_name }}}}"
    body: "<p>Hi {{{{ first_name }}}}, see <a href='https://example.org/x'>this</a>.</p>"
  - day: 2
    action: task
    send: at_time
    time: "10:00"
    subject: "Idea for {{{{ company }}}}"
    body: "Hi {{{{ first_name }}}}, an idea for {{{{ company }}}}.\\n\\nWould Tuesday work?"
"""
CONTACTS = """\
email,first_name,last_name,company,timezone
ny@prospect.example,Nora,North,NYCo,America/New_York
ldn@prospect.example,Leo,,LondonCo,America/New_York
tyo@prospect.example,Taro,,TokyoCo,America/New_York
ana@other.example,Ana,,AnaCorp,America/New_York
sam@shared.example,Sam,,SamCo,America/New_York
sue@shared.example,Sue,,SueCo,America/New_York
"""
REPS = (("mia@acme.example", "Mia Manager", ("--role", "manager", "--timezone", "Europe/Paris")),
        ("rita@acme.example", "Rita Rep", ("--manager", "mia@acme.example")),
        ("bob@acme.example", "Bob Builder", ("--manager", "mia@acme.example")),
        ("otto@acme.example", "Otto Other", ()),
        ("ada@acme.example", "Ada Admin", ("--role", "admin")))
PIXEL = re.compile(r'https://cadence\.test/t/o/([A-Za-z0-9_\-]+)')
CLICK = re.compile(r'https://cadence\.test/t/c/([A-Za-z0-9_\-]+)')


@dataclass
class World:
    home: Path
    app: App
    run: object  # run(*args, now=None) -> stdout of `cadence ARGS`

    def maildir(self, rep: str) -> Path:
        return self.home / f"maildir-{rep}"


def sent_email(world: World, rep: str, to: str):
    for path in layout.message_files(world.maildir(rep) / layout.SENT).values():
        message = layout.read_message(path)
        if to in str(message["To"]):
            return message
    raise LookupError(to)
