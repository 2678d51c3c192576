"""What the tracking tests share: a campaign with two tracked links, the fixed instant they run
at, and the stored open/click rows read back from the database."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from sqlalchemy import text

from tests.support.prepare import database

LINKS = """\
name: Tracked
timezone: America/New_York
steps:
  - day: 1
    action: auto
    send: at_time
    time: "09:00"
    subject: "Hello {{ first_name }}"
    body: |
      <p>Hi {{ first_name }}: <a href="https://example.org/x">one</a>,
      <a href="https://example.org/y?a=1&amp;b=2">two</a>.</p>
"""

T0 = datetime(2026, 11, 30, 16, 0, 5, tzinfo=timezone.utc)


def stored_hits(cli) -> list[tuple]:
    """(kind, message_id, link, minute, hits) of every open/click row."""
    with database(cli).connect() as connection:
        rows = connection.execute(text(
            "SELECT kind, message_id, data, at, hits FROM events WHERE kind IN ('opened', 'clicked') "
            "ORDER BY kind, message_id, at")).all()
    out = []
    for kind, message_id, data, at, hits in rows:
        if isinstance(data, str):
            data = json.loads(data)
        at = at if isinstance(at, datetime) else datetime.fromisoformat(str(at))
        out.append((kind, message_id, (data or {}).get("link"), at.strftime("%H:%M"), hits))
    return out
