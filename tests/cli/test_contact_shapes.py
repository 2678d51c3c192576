"""Issue 13 shapes through the real CLI: Excel's cp1252 files, legacy zone names, regions."""
from __future__ import annotations

import json


def test_a_cp1252_file_is_refused_by_line_and_column_then_read_with_encoding(sqlite_cli):
    sqlite_cli.ok("init")
    path = sqlite_cli.home / "excel.csv"
    path.write_bytes("email;first_name;country\nanna@example.com;Anna;DE-BY\nrene@example.com;René;FR\n".encode("cp1252"))
    refused = sqlite_cli("contacts", "import", str(path))
    assert refused.code != 0 and "Traceback" not in refused.err
    assert f"{path}, line 3, column 21: byte 0xe9 is not UTF-8" in refused.err
    assert "--encoding cp1252" in refused.err
    out = sqlite_cli.ok("contacts", "import", str(path), "--encoding", "cp1252")
    assert "imported 2" in out and "rejected 0" in out


def test_legacy_zone_names_are_stored_canonical_and_used(sqlite_cli):
    sqlite_cli.ok("init")
    path = sqlite_cli.home / "people.csv"
    path.write_text("email,timezone\nanna@example.com,US/Eastern\nbo@example.com,Asia/Calcutta\n", encoding="utf-8")
    assert "imported 2" in sqlite_cli.ok("contacts", "import", str(path))
    campaign = sqlite_cli.home / "c.yml"
    campaign.write_text("name: Zones\ntimezone: US/Pacific\nsteps:\n  - day: 1\n    action: auto\n"
                        "    send: at_time\n    time: '09:00'\n    subject: Hi\n    body: Hello\n", encoding="utf-8")
    assert "Zones" in sqlite_cli.ok("campaign", "import", str(campaign))
    sqlite_cli.ok("rep", "add", "--email", "rita@acme.example")
    sqlite_cli.ok("mailbox", "add", "--provider", "maildir", "--address", "rita@acme.example",
                  "--owner", "rita@acme.example", "--path", str(sqlite_cli.home / "Maildir"))
    sqlite_cli.ok("enroll", "Zones", "--all", "--mailbox", "rita@acme.example", now="2026-11-23T06:00:00Z")
    sqlite_cli.ok("prepare", "Zones", now="2026-11-23T06:00:00Z")
    sqlite_cli.ok("send", "Zones", now="2026-11-23T06:00:00Z")
    sqlite_cli.ok("worker", "--once", now="2026-11-23T06:00:00Z")
    lines = sqlite_cli.ok("logs", "Zones", now="2026-11-23T06:00:00Z")
    assert "09:00 America/New_York" in lines and "09:00 Asia/Kolkata" in lines, lines
    status = json.loads(sqlite_cli.ok("status", "Zones", "--json", now="2026-11-23T06:00:00Z"))
    # Bo's 09:00 in Kolkata had passed (sent in the pass); Anna's is 09:00 in New York = 14:00Z.
    assert status["delivery"]["sent"] == 1
    assert status["next_due"] == "2026-11-23T14:00:00Z"
