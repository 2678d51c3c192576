"""One contact's data over a render limit excludes that contact (issue #12 item 8).

Before, a single contact whose data made a step hit a render limit failed the whole preparation.
Now that contact is excluded with cause `render_limit` (logged, counted); the preparation fails
only when the template is over a limit with no contact data at all. A preparation also has an
overall time budget (CADENCE_PREPARE_BUDGET) and says so when it is spent.
"""
from __future__ import annotations

import json

import pytest

from tests.support.prepare import LAUNCH, REP, base, campaign, contacts, prepared, recipients

LIMITS = """\
name: Limits
timezone: UTC
steps:
  - day: 1
    action: auto
    send: at_time
    time: "09:00"
    subject: "Hello {{ first_name }}"
    body: "<p>Hi {{ first_name }}{% for i in range(reps | int) %}.{% endfor %}{{ notes * (times | int) }}{{ (power | int) ** (power | int) }}</p>"
  - day: 2
    action: auto
    send: same_as_previous
    thread: true
    body: "Bumping this, {{ first_name }}."
"""
HEADER = "email,first_name,company,reps,notes,times,power"
# (contact row, the limit its data hits or None)
SHAPES = [
    ("ana@prospect.example,Ana,AnaCo,3,abc,2,2", None),
    ("ben@prospect.example,Ben,BenCo,10000000,abc,1,2", "max_iterations"),
    ("cy@prospect.example,Cy,CyCo,1,abcdefghij,100000,2", "max_output_chars"),
    ("dee@prospect.example,Dee,DeeCo,1,abc,1,5000", "number_size"),
    ("eve@prospect.example,Eve,EveCo,2,abc,3,3", None),
]


def _ready(cli, yaml_text: str = LIMITS) -> str:
    base(cli)
    contacts(cli, [row for row, _ in SHAPES], header=HEADER)
    name = campaign(cli, yaml_text)
    cli.ok("enroll", name, "--all", "--mailbox", REP, now=LAUNCH)
    return name


def test_a_contact_whose_data_hits_a_render_limit_is_excluded_and_the_rest_is_prepared(sqlite_cli):
    cli = sqlite_cli
    name = _ready(cli)
    maildir = cli.home / "maildir"
    result = prepared(cli, name)
    over = [row.split(",")[0] for row, limit in SHAPES if limit]
    assert result["state"] == "prepared" and result["errors"] == 0
    assert (result["targeted"], result["to_deliver"], result["to_exclude"]) == (5, 2, 3)
    assert result["exclusions"] == {"render_limit": 3}
    logs = cli.ok("logs", name)
    for row, limit in SHAPES:
        address = row.split(",")[0]
        line = next((entry for entry in logs.splitlines() if address in entry and "excluded" in entry), None)
        if limit is None:
            assert line is None, logs
        else:
            assert line is not None and "render_limit" in line and limit in line, (address, logs)
    cli.ok("send", name, now=LAUNCH)
    cli.ok("worker", "--once", "--now", "2026-12-01T09:30:00Z")
    assert recipients(maildir) == ["ana@prospect.example", "eve@prospect.example"]
    assert not any(a in cli.ok("logs", name, "--errors") for a in over)


@pytest.mark.parametrize("body, limit", [
    ("{% for i in range(10**7) %}.{% endfor %}{{ first_name }}", "max_iterations"),
    ("{{ 'ab' * 300000 }}{{ first_name }}", "max_output_chars"),
    ("{{ 7 ** 100000 }}{{ first_name }}", "number_size"),
])
def test_a_template_over_a_limit_with_no_contact_data_fails_the_preparation(sqlite_cli, body, limit):
    cli = sqlite_cli
    name = _ready(cli, LIMITS.replace(LIMITS.splitlines()[8].split("body: ")[1], json.dumps(body)))
    result = prepared(cli, name, code=1)
    assert result["state"] == "failed" and result["errors"] == 1
    (error,) = result["error_messages"]
    assert error.startswith("step 1, body") and limit in error and "with no contact data" in error, error
    assert "the latest preparation failed" in cli("send", name, now=LAUNCH).err


def test_a_preparation_over_its_time_budget_fails_and_says_so(sqlite_cli):
    cli = sqlite_cli
    name = _ready(cli)
    cli.setenv("CADENCE_PREPARE_BUDGET", "0.000001")
    result = prepared(cli, name, code=1)
    assert result["state"] == "failed"
    (error,) = result["error_messages"]
    assert "time budget (1e-06 s, CADENCE_PREPARE_BUDGET)" in error and "after 0 of 5 contacts" in error, error
    assert error in cli.ok("logs", name, "--errors")
    cli.setenv("CADENCE_PREPARE_BUDGET", None)
    assert prepared(cli, name)["state"] == "prepared"
