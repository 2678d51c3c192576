"""`cadence campaign import` and `cadence contacts import`, as an operator runs them."""
from __future__ import annotations

import json
import textwrap

import pytest
from sqlalchemy import select

from cadence.app import App
from cadence.settings import Settings
from store.models import Contact

GOOD = """\
name: Q4 outbound
timezone: America/New_York
send_window: {days: [mon, tue, wed, thu, fri], start: "08:00", end: "18:00", skip_holidays: true}
daily_limit: 150
steps:
  - day: 1
    action: auto
    send: choose_at_launch
    subject: "Quick question, {{ first_name | default('there') }}"
    body: "Hi {{ first_name | default('there') }}"
  - day: 3
    send: same_as_previous
    thread: true
    body: "Just bumping this up."
  - day: 6
    action: task
    send: at_time
    time: "10:00"
    subject: "Idea for {{ company }}"
    body_file: templates/idea.html.j2
"""


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_campaign_import_prints_its_name_and_updates_until_launched(cli):
    write(cli.home / "templates/idea.html.j2", "<p>{{ company }}</p>")
    path = write(cli.home / "q4.yml", GOOD)
    assert cli.ok("campaign", "import", str(path)).strip() == "Q4 outbound"
    write(path, GOOD.replace("daily_limit: 150", "daily_limit: 100"))
    assert cli.ok("campaign", "import", str(path)).strip() == "Q4 outbound"
    listed = json.loads(cli.ok("campaign", "list", "--json"))
    assert [c["campaign"] for c in listed] == ["Q4 outbound"] and listed[0]["state"] == "draft"


# (file body after a first "name:" line, the line the error must name, the field it must name)
BAD_CASES = [
    ("steps:\n  - day: 1\n    action: auto\n    send: at_time\n    time: '25:00'\n    subject: s\n    body: b\n",
     "line 6", "steps[1].time"),
    ("steps:\n  - day: 1\n    action: auto\n    send: same_as_previous\n    subject: s\n    body: b\n",
     "line 5", "steps[1].send"),
    ("steps:\n  - day: 1\n    send: at_time\n    time: '09:00'\n    thread: true\n    subject: s\n    body: b\n",
     "line 6", "steps[1].thread"),
    ("steps:\n  - day: 1\n    send: at_time\n    time: '09:00'\n    subject: s\n    body: b\n"
     "  - day: 2\n    send: choose_at_launch\n    subject: s\n    body: b\n", "line 9", "steps[2].send"),
    ("steps:\n  - day: 1\n    send: at_time\n    time: '09:00'\n    subject: s\n    body: b\n    colour: red\n",
     "line 8", "steps[1].colour"),
    ("timezone: Mars/Olympus\nsteps: []\n", "line 2", "timezone"),
    ("steps:\n  - day: 1\n    send: at_time\n    time: '09:00'\n    subject: s\n    body: 'Hi {{ name '\n",
     "line 7", "steps[1].body"),
    ("steps:\n  - day: 1\n    send: at_soon\n    subject: s\n    body: b\n", "line 4", "steps[1].send"),
    ("send_window: {days: [mon], start: '18:00', end: '08:00'}\nsteps: []\n", "line 2", "send_window.end"),
]


@pytest.mark.parametrize("body, line, field", BAD_CASES)
def test_a_bad_campaign_file_is_refused_naming_file_line_and_field_and_writes_nothing(sqlite_cli, body, line, field):
    path = write(sqlite_cli.home / "bad.yml", "name: Bad one\n" + body)
    result = sqlite_cli("campaign", "import", str(path))
    assert result.code != 0
    assert str(path) in result.err and line in result.err and field in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1
    assert json.loads(sqlite_cli.ok("campaign", "list", "--json")) == []


def test_updating_a_campaign_with_a_bad_file_keeps_the_stored_one(sqlite_cli):
    write(sqlite_cli.home / "templates/idea.html.j2", "<p>{{ company }}</p>")
    path = write(sqlite_cli.home / "q4.yml", GOOD)
    sqlite_cli.ok("campaign", "import", str(path))
    write(path, GOOD.replace('time: "10:00"', 'time: "10:70"'))
    assert sqlite_cli("campaign", "import", str(path)).code != 0
    from cadence.app import App
    from store.campaigns import find_campaign, read_spec

    app = App.from_settings()
    with app.db.session() as session:
        spec = read_spec(session, find_campaign(session, "Q4 outbound"))
    assert spec.steps[2].time.hour == 10 and spec.steps[2].time.minute == 0


CSV = (
    "\ufeffemail;first_name;company;timezone;country;favourite_colour\n"
    "ada@example.com;Ada;Engines;Europe/London;GB;green\n"
    "not-an-address;Bob;X;;;\n"
    "carol@example.com;Carol;Y;Mars/Base;;\n"
    "dave@example.com;Dave;Z;;ZZ;\n"
    "ADA@example.com;Ada again;;;;\n"
    "erin@example.com;Erin;W;America/New_York;US;blue\n"
)


def test_contacts_import_reports_each_bad_row_with_its_line_and_keeps_the_good_ones(cli):
    path = cli.home / "contacts.csv"
    path.write_bytes(CSV.encode("utf-8"))
    result = cli("contacts", "import", str(path))
    assert result.code == 1
    assert "imported 2, updated 0, unchanged 0, rejected 4" in result.out
    for line, field in ((3, "email"), (4, "timezone"), (5, "country"), (6, "email")):
        assert f"line {line}: {field}:" in result.err
    again = cli("contacts", "import", str(path))
    assert "imported 0, updated 0, unchanged 2, rejected 4" in again.out


def test_importing_again_updates_what_changed_merges_custom_columns_and_keeps_the_rest(cli):
    first = cli.home / "first.csv"
    first.write_text("email,first_name,company,timezone,colour\n"
                     "ada@example.com,Ada,Engines,Europe/London,green\n"
                     "bob@example.com,Bob,Builders,,\n"
                     "cy@example.com,Cy,Cables,Asia/Tokyo,red\n", encoding="utf-8")
    assert "imported 3, updated 0, unchanged 0, rejected 0" in cli.ok("contacts", "import", str(first))
    second = cli.home / "second.csv"
    # ada: a new custom column merged in; bob: a new name and zone, an empty company keeps the
    # stored one; cy: the same values; dee: new
    second.write_text("email,first_name,company,timezone,colour\n"
                      "ada@example.com,Ada,Engines,Europe/London,blue\n"
                      "BOB@example.com,Robert,,US/Eastern,\n"
                      "cy@example.com,Cy,Cables,Asia/Tokyo,red\n"
                      "dee@example.com,Dee,,,\n", encoding="utf-8")
    assert "imported 1, updated 2, unchanged 1, rejected 0" in cli.ok("contacts", "import", str(second))
    app = App.from_settings(Settings(), upgrade=False)
    with app.db.session(readonly=True) as session:
        people = {c.email: (c.first_name, c.company, c.timezone, c.custom) for c in session.scalars(select(Contact))}
    app.db.dispose()
    assert people == {
        "ada@example.com": ("Ada", "Engines", "Europe/London", {"colour": "blue"}),
        "bob@example.com": ("Robert", "Builders", "America/New_York", {"colour": ""}),
        "cy@example.com": ("Cy", "Cables", "Asia/Tokyo", {"colour": "red"}),
        "dee@example.com": ("Dee", None, None, {"colour": ""}),
    }


def test_strict_contacts_import_writes_nothing_when_a_row_is_bad(sqlite_cli):
    path = sqlite_cli.home / "contacts.csv"
    path.write_bytes(CSV.encode("utf-8"))
    result = sqlite_cli("contacts", "import", str(path), "--strict")
    assert result.code == 1 and "nothing was written" in result.err
    good = sqlite_cli.home / "good.csv"
    good.write_text("email,first_name\nada@example.com,Ada\n", encoding="utf-8")
    assert "imported 1," in sqlite_cli.ok("contacts", "import", str(good), "--strict")


def test_contacts_file_without_email_column_is_refused(sqlite_cli):
    path = sqlite_cli.home / "contacts.csv"
    path.write_text("name,company\nAda,Engines\n", encoding="utf-8")
    result = sqlite_cli("contacts", "import", str(path))
    assert result.code == 1 and "line 1" in result.err and "no email column" in result.err
