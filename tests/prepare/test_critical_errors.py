"""Critical errors fail a preparation (state failed, `send` refused) and the log names each one;
template escapes and bombs in a campaign file are refused at import or stopped by limits."""
from __future__ import annotations

import json
import time

import pytest

from tests.support.prepare import LAUNCH, REP, base, campaign, campaign_yaml, contacts, prepared, status, write

STEP_TWO = """\
name: Bomb
steps:
  - day: 1
    action: auto
    send: at_time
    time: "09:00"
    subject: "Hello {{ first_name }}"
    body: "Hi {{ first_name }}."
  - day: 2
    action: auto
    send: at_time
    time: "09:00"
    subject: "Again"
    body: |
      BODY
"""

ESCAPES = {  # refused when the file is imported: the sandbox sees them at compile time
    "mro": "{{ ''.__class__.__mro__ }}",
    "globals": "{{ cycler.__init__.__globals__ }}",
    "format": '{{ "{0.__class__}".format(1) }}',
}
BOMBS = {  # compile, then stopped while rendering: the step's error fails the preparation
    "attr": ("{% set s = first_name %}{{ s|attr('format') }}", "refused by the sandbox"),
    "huge range": ("{{ range(10**9) }}", "max_iterations"),
    "huge string": ("{{ 'a'*10**9 }}", "max_output_chars"),
    "nested loops": ("{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}x"
                     "{% endfor %}{% endfor %}{% endfor %}", "max_iterations"),
    "recursive macro": ("{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}", "recursion_depth"),
}


def _ready(cli, yaml_text: str, name: str = "campaign.yml") -> str:
    base(cli)
    contacts(cli, ["ana@prospect.example,Ana,AnaCo", "ben@prospect.example,Ben,BenCo"])
    campaign_name = campaign(cli, yaml_text, name=name)
    cli.ok("enroll", campaign_name, "--all", "--mailbox", REP, now=LAUNCH)
    return campaign_name


def _refused_to_send(cli, name: str) -> str:
    result = cli("send", name, now=LAUNCH)
    assert result.code == 1
    return result.err


@pytest.mark.parametrize("template", ESCAPES.values(), ids=ESCAPES.keys())
def test_template_escapes_are_refused_when_the_campaign_file_is_imported(sqlite_cli, template):
    cli = sqlite_cli
    base(cli)
    path = write(cli, "escape.yml", STEP_TWO.replace("BODY", template))
    result = cli("campaign", "import", str(path))
    assert result.code == 1 and result.out == ""
    assert result.err.startswith(f"error: {path}, line 14: steps[2].body: template error")
    assert "private attribute" in result.err or "private attributes" in result.err
    assert json.loads(cli.ok("campaign", "list", "--json")) == []  # nothing half-written


@pytest.mark.parametrize("template, limit", BOMBS.values(), ids=BOMBS.keys())
def test_template_bombs_fail_the_preparation_as_that_steps_error(sqlite_cli, template, limit):
    cli = sqlite_cli
    name = _ready(cli, STEP_TWO.replace("BODY", template))
    started = time.perf_counter()
    result = prepared(cli, name, code=1)
    assert time.perf_counter() - started < 20  # stopped by the limits, not left to run
    assert result["state"] == "failed" and result["errors"] == 1
    (error,) = result["error_messages"]
    assert error.startswith("step 2, body line 1: ") and limit in error
    assert "the preparation stops here" in error
    errors = cli.ok("logs", name, "--errors")
    assert error in errors and errors.splitlines()[-1].endswith(" 1 error(s)")
    assert "the latest preparation failed" in _refused_to_send(cli, name)
    assert status(cli, name)["state"] == "failed"


def test_a_campaign_without_steps_fails_with_a_named_error(sqlite_cli):
    cli = sqlite_cli
    name = _ready(cli, "name: Empty\nsteps: []\n")
    result = prepared(cli, name, code=1)
    assert result["error_messages"] == ["the campaign has no steps"]
    assert "the latest preparation failed" in _refused_to_send(cli, name)


def test_a_disconnected_mailbox_fails_the_preparation(sqlite_cli):
    cli = sqlite_cli
    name = _ready(cli, campaign_yaml("Offline"))
    from cadence.app import App
    from store.mailboxes import mark_disconnected
    from store.models import MailboxRow

    app = App.from_settings()
    with app.db.session() as session:  # what a worker does when the provider refuses the credentials
        box = session.query(MailboxRow).one()
        mark_disconnected(session, box, "the refresh token was revoked", app.clock.now())
    app.db.dispose()
    result = prepared(cli, name, code=1)
    assert result["error_messages"] == [f"mailbox {REP} is disconnected (the refresh token was revoked); its "
                                        "messages cannot be sent"]
    cli.ok("mailbox", "add", "--provider", "maildir", "--address", REP, "--owner", REP)  # reconnected
    assert prepared(cli, name)["state"] == "prepared"


def test_nobody_to_deliver_fails_the_preparation(sqlite_cli):
    cli = sqlite_cli
    base(cli)
    campaign(cli, campaign_yaml("Nobody"))
    result = prepared(cli, "Nobody", code=1)
    assert result["targeted"] == 0
    assert result["error_messages"] == ["no contact to deliver: nobody is enrolled and not yet launched"]
    logs = cli.ok("logs", "Nobody").splitlines()
    assert "preparation failed: targeted 0" in logs[-2] and logs[-1].endswith(", 1 error(s)")


def test_a_body_file_changed_on_disk_changes_nothing_until_it_is_imported_again(sqlite_cli):
    cli = sqlite_cli
    write(cli, "templates/body.html.j2", "<p>Hi {{ first_name }}, version one.</p>")
    yaml_text = campaign_yaml("Files").replace(
        "    body: \"<p>Hi {{ first_name | default('there') }}, see <a href='https://example.org/x'>this</a>.</p>\"",
        "    body_file: templates/body.html.j2")
    name = _ready(cli, yaml_text)
    write(cli, "templates/body.html.j2", "<p>Hi {{ ''.__class__.__mro__ }}</p>")  # broken after the import
    result = prepared(cli, name)  # the imported (checked) version is what is prepared
    assert result["state"] == "prepared"
    logs = cli.ok("logs", name)
    assert "the campaign file can no longer be imported" in logs and "private attribute" in logs
    refused = cli("campaign", "import", str(cli.home / "campaign.yml"))
    assert refused.code == 1 and "steps[1].body_file: template error" in refused.err
    write(cli, "templates/body.html.j2", "<p>Hi {{ first_name }}, version two.</p>")
    assert prepared(cli, name)["state"] == "prepared"
    assert "changed since it was imported" in cli.ok("logs", name)
    assert _bodies(cli) == {"<p>Hi Ana, version one.</p>", "<p>Hi Ben, version one.</p>"}
    cli.ok("campaign", "import", str(cli.home / "campaign.yml"))  # now the change counts
    assert "prepare it first" in _refused_to_send(cli, name)
    assert prepared(cli, name)["state"] == "prepared"
    assert _bodies(cli) == {"<p>Hi Ana, version two.</p>", "<p>Hi Ben, version two.</p>"}


def _bodies(cli) -> set[str]:
    from sqlalchemy import text

    from tests.support.prepare import database

    with database(cli).connect() as connection:
        return set(connection.scalars(text("SELECT html FROM messages WHERE position = 1")))


def test_a_public_url_that_is_not_https_is_a_warning_in_the_log(sqlite_cli):
    cli = sqlite_cli
    cli.setenv("CADENCE_PUBLIC_URL", "http://cadence.example")
    name = _ready(cli, campaign_yaml("Plain"))
    assert prepared(cli, name)["state"] == "prepared"
    logs = cli.ok("logs", name)
    assert "CADENCE_PUBLIC_URL is http://cadence.example, not https" in logs
    assert logs.splitlines()[-1].endswith(", 0 error(s)")
