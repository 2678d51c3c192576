"""Bad settings and bad input are one sentence on standard error, never a traceback (issue 14 item 3,
issue 10 item 5); read-only commands never create a database (item 9); the CLI starts light (item 10)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import Cli

REP = "rita@acme.example"
CAMPAIGN = """\
name: Errors
timezone: Europe/Paris
steps:
  - day: 1
    action: auto
    send: at_time
    time: "09:30"
    subject: "Hello {{ first_name }}"
    body_file: body.html
"""


def one_sentence(result, *words: str) -> str:
    """The command failed with one line on stderr naming `words`, and no traceback."""
    assert result.code != 0, result.out
    assert "Traceback" not in result.err and "Traceback" not in result.out
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1, result.err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def home_cli(tmp_path, monkeypatch, capsys) -> Cli:
    """A CLI with CADENCE_HOME only (the embedded SQLite default), in a folder of its own."""
    home = tmp_path / "home"
    home.mkdir()
    cli = Cli(home, "unused", monkeypatch, capsys)
    cli.setenv("CADENCE_DATABASE_URL", None)
    return cli


@pytest.mark.parametrize("name, value", [
    ("CADENCE_TIMEZONE", "Mars/Base"),
    ("CADENCE_DATABASE_URL", "foo://bar"),
    ("CADENCE_SECRET_KEY", "not-a-key"),
    ("CADENCE_SECRET_KEY", "A" * 43 + "=," + "short"),
    ("CADENCE_PUBLIC_URL", "cadence.example"),
    ("CADENCE_PREPARE_BATCH", "-3"),
    ("CADENCE_CLAIM_BATCH", "2.5"),
    ("CADENCE_SYNC_INTERVAL", "soon"),
    ("CADENCE_DEBUG", "perhaps"),
])
def test_a_bad_setting_is_one_sentence_naming_the_variable(home_cli, name, value):
    home_cli.setenv(name, value)
    for args in (("init",), ("status", "X"), ("rep", "list")):
        line = one_sentence(home_cli(*args), name)
        assert line.startswith("error: ")
    assert not (home_cli.home / "cadence.db").exists()


def test_a_bad_setting_in_dot_env_is_named_too(home_cli):
    (home_cli.home / ".env").write_text("CADENCE_TIMEZONE=Mars/Base\n", encoding="utf-8")
    one_sentence(home_cli("init"), "CADENCE_TIMEZONE", "Mars/Base")
    (home_cli.home / ".env").write_text("CADENCE_TIMEZONE=Asia/Tokyo\nCADENCE_NOW=2026-11-30T09:00\n",
                                        encoding="utf-8")
    home_cli.ok("init")
    home_cli.ok("rep", "add", "--email", REP)
    home_cli.ok("campaign", "import", str(write_campaign(home_cli.home)))
    # CADENCE_NOW read from .env, in CADENCE_TIMEZONE from .env: 09:00 Tokyo is 00:00 UTC
    listed = json.loads(home_cli.ok("rep", "list", "--json"))
    assert [r["email"] for r in listed] == [REP]


def test_worker_tuning_is_read_from_dot_env_too(home_cli):
    from cadence.worker.options import DispatchOptions
    from cadence.worker.runtime import Intervals

    (home_cli.home / ".env").write_text("CADENCE_CLAIM_BATCH=7\nCADENCE_SYNC_INTERVAL=2.5\n", encoding="utf-8")
    assert DispatchOptions.from_env().batch == 7 and Intervals.from_env().sync == 2.5


def test_an_unusable_home_is_one_sentence(home_cli, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x", encoding="utf-8")
    home_cli.setenv("CADENCE_HOME", str(blocker / "home"))
    one_sentence(home_cli("init"), "CADENCE_HOME", str(blocker / "home"))
    home_cli.setenv("CADENCE_HOME", str(blocker))
    one_sentence(home_cli("rep", "add", "--email", REP), "CADENCE_HOME", "not a folder")


def test_a_port_out_of_range_is_refused_before_anything_starts(home_cli):
    result = home_cli("serve", "--port", "99999")
    assert result.code == 2
    one_sentence(result, "--port", "65535")
    assert not (home_cli.home / "cadence.db").exists()


def test_serve_where_nothing_can_listen_is_one_sentence(home_cli):
    import socket

    home_cli.ok("init")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        one_sentence(home_cli("serve", "--port", port), "--port", f"127.0.0.1:{port}", "in use")
    one_sentence(home_cli("serve", "--host", "no-such-host.invalid", "--port", "8080"), "--host",
                 "'no-such-host.invalid'")


def test_a_wrong_secret_key_stops_the_worker_with_one_sentence(home_cli, tmp_path):
    from cryptography.fernet import Fernet

    first, second = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    home_cli.setenv("CADENCE_SECRET_KEY", first)
    home_cli.ok("init")
    home_cli.ok("rep", "add", "--email", REP)
    token = tmp_path / "token"
    token.write_text("a-refresh-token", encoding="utf-8")
    home_cli.ok("mailbox", "add", "--provider", "maildir", "--address", REP, "--owner", REP,
                "--refresh-token-file", str(token))
    home_cli.setenv("CADENCE_SECRET_KEY", second)
    one_sentence(home_cli("worker", "--once"), "CADENCE_SECRET_KEY", REP)
    home_cli.setenv("CADENCE_SECRET_KEY", f"{second},{first}")  # rotation: the old key after the new one
    home_cli.ok("worker", "--once")


def test_debug_shows_the_traceback(home_cli):
    home_cli.setenv("CADENCE_TIMEZONE", "Mars/Base")
    home_cli.setenv("CADENCE_DEBUG", "1")
    result = home_cli("init")
    assert result.code == 1
    assert "Traceback" in result.err and "error: CADENCE_TIMEZONE" in result.err


def test_a_body_file_that_is_not_utf8_is_one_sentence(home_cli):
    path = write_campaign(home_cli.home)
    (home_cli.home / "body.html").write_bytes("<p>Caf\u00e9</p>".encode("latin-1"))
    home_cli.ok("init")
    one_sentence(home_cli("campaign", "import", str(path)), "body_file", "body.html", "not UTF-8")


def test_weekdays_are_spelled_as_the_interface_says(home_cli):
    path = write_campaign(home_cli.home)
    path.write_text(CAMPAIGN.replace("timezone: Europe/Paris\n", "timezone: Europe/Paris\nsend_window: "
                                     "{days: [monday], start: '08:00', end: '18:00'}\n"), encoding="utf-8")
    home_cli.ok("init")
    one_sentence(home_cli("campaign", "import", str(path)), "send_window.days", "'monday'",
                 "mon, tue, wed, thu, fri, sat, sun")


def test_an_impossible_date_is_no_such_date(home_cli):
    home_cli.ok("init")
    one_sentence(home_cli("worker", "--once", "--now", "2026-11-31T09:00"), "--now", "2026-11-31 is no such date")
    one_sentence(home_cli("worker", "--once", "--now", "soon"), "--now", "'soon' is not an ISO date-time")
    # enroll --send-at reads its own shape ('YYYY-MM-DD HH:MM') and says the same of an impossible date
    home_cli.ok("rep", "add", "--email", REP)
    home_cli.ok("mailbox", "add", "--provider", "maildir", "--address", REP, "--owner", REP)
    home_cli.ok("campaign", "import", str(write_campaign(home_cli.home)))
    (home_cli.home / "people.csv").write_text("email,first_name\na@prospect.example,Ada\n", encoding="utf-8")
    home_cli.ok("contacts", "import", str(home_cli.home / "people.csv"))
    enroll = ("enroll", "Errors", "--emails", "a@prospect.example", "--mailbox", REP, "--send-at")
    one_sentence(home_cli(*enroll, "2026-11-31 09:00"), "--send-at", "2026-11-31 is no such date")
    one_sentence(home_cli(*enroll, "tomorrow"), "--send-at", "'tomorrow' is not a time as 'YYYY-MM-DD HH:MM'")
    assert home_cli.ok("logs", "Errors").splitlines() == ["0 line(s), 0 error(s)"]  # nobody was enrolled


def test_a_tab_separated_file_is_reported_as_such(home_cli):
    home_cli.ok("init")
    (home_cli.home / "people.tsv").write_text("email\tfirst_name\na@b.example\tAda\n", encoding="utf-8")
    one_sentence(home_cli("contacts", "import", str(home_cli.home / "people.tsv")), "people.tsv", "line 1",
                 "tab-separated")


@pytest.mark.parametrize("args", [
    ("status", "Q4"), ("logs", "Q4"), ("tasks",), ("campaign", "list"), ("mailbox", "list"), ("rep", "list"),
    ("digest", "--manager", REP), ("explain", "Q4", "--contact", "a@b.example"), ("crm", "status"),
    # commands that act on something stored say where they looked too, instead of "no campaign named …"
    ("send", "Q4"), ("pause", "Q4"), ("resume", "Q4"), ("stop", "Q4", "--yes"), ("prepare", "Q4"),
    ("enroll", "Q4", "--all", "--mailbox", REP), ("unenroll", "Q4", "--emails", "a@b.example"),
    ("task", "send", "1"), ("task", "skip", "1"), ("web", "link", "--email", REP),
    ("digest", "--manager", REP, "--post"), ("crm", "connect", "salesforce", "--owner", REP, "--link"),
])
def test_read_only_commands_never_create_a_database(home_cli, args):
    home_cli.setenv("CADENCE_HOME", str(home_cli.home / "nowhere"))
    line = one_sentence(home_cli(*args), "no Cadence database at", str(home_cli.home / "nowhere" / "cadence.db"),
                        "cadence init")
    assert "CADENCE_HOME=" in line
    assert not (home_cli.home / "nowhere").exists()


def test_read_only_commands_refuse_an_empty_database_without_changing_it(home_cli):
    (home_cli.home / "cadence.db").write_bytes(b"")
    one_sentence(home_cli("status", "Q4"), "holds no Cadence schema", "cadence init")
    one_sentence(home_cli("pause", "Q4"), "holds no Cadence schema", "cadence init")
    assert (home_cli.home / "cadence.db").stat().st_size == 0


def test_help_shows_flags_without_types_and_every_option_has_help():
    import typer

    from cadence.cli import app_cli

    def walk(command, path):
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, f"{path} {name}")

    missing = [f"{path} {param.opts[0]}" for path, command in walk(typer.main.get_command(app_cli), "cadence")
               for param in command.params
               if getattr(param, "opts", None) and param.opts[0].startswith("--") and param.opts[0] != "--help"
               and not getattr(param, "help", None)]
    assert missing == []
    shown = subprocess.run([sys.executable, "-m", "cadence.cli", "status", "--help"], capture_output=True, text=True,
                           env={**os.environ, "COLUMNS": "100"}, timeout=60)
    assert shown.returncode == 0 and "--json" in shown.stdout
    assert "<bool>" not in shown.stdout and "Traceback" not in shown.stderr


def test_the_provider_list_offers_no_test_fake(home_cli):
    home_cli.ok("init")
    home_cli.ok("rep", "add", "--email", REP)
    one_sentence(home_cli("mailbox", "add", "--provider", "memory", "--address", REP, "--owner", REP),
                 "--provider", "gmail, outlook, maildir")
    assert "memory" not in home_cli.ok("mailbox", "add", "--help")


def test_rep_add_says_added_then_updated_and_rep_list_shows_it(home_cli):
    home_cli.ok("init")
    assert home_cli.ok("rep", "add", "--email", REP).strip() == f"rep {REP} (rep) added"
    assert home_cli.ok("rep", "add", "--email", REP, "--name", "Rita Rep", "--role", "manager").strip() == \
        f"rep {REP} (manager) updated"
    listing = home_cli.ok("rep", "list")
    assert REP in listing and "Rita Rep" in listing and "manager" in listing


def test_tasks_for_an_unknown_rep_is_an_error(home_cli):
    home_cli.ok("init")
    one_sentence(home_cli("tasks", "--rep", "ghost@acme.example"), "--rep", "ghost@acme.example")


def test_stop_asks_on_a_terminal_only(home_cli):
    home_cli.ok("init")
    # Not a terminal (tests capture both streams): no question; the campaign does not exist.
    one_sentence(home_cli("stop", "Nope", "--yes"), "Nope")
    one_sentence(home_cli("stop", "Nope"), "Nope")


LIGHT = ("sqlalchemy", "alembic", "googleapiclient", "google.auth", "slack_sdk", "slack_bolt", "matplotlib",
         "msal", "jinja2", "starlette", "uvicorn", "apscheduler", "cryptography", "pydantic_settings")


def modules_loaded(code: str, cwd: Path) -> set[str]:
    """Top-level modules loaded by `code` run in a fresh interpreter with CADENCE_HOME=cwd/.cadence."""
    result = subprocess.run([sys.executable, "-c", code + "\nimport sys, json\n"
                             "print(json.dumps(sorted({m.split('.')[0] if m.split('.')[0] != 'google' else m "
                             "for m in sys.modules})))"], capture_output=True, text=True, cwd=cwd, timeout=120,
                            env={k: v for k, v in os.environ.items() if not k.startswith("CADENCE_")})
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_help_loads_no_heavy_module(tmp_path):
    loaded = modules_loaded("import contextlib, io\nfrom cadence.cli import main\n"
                            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
                            "    main(['--help'])\n"
                            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
                            "    main(['status', '--help'])", tmp_path)
    heavy = {m for m in loaded for name in LIGHT if m == name.split(".")[0] and (m != "google" or name in loaded)}
    assert heavy == set()


def test_read_commands_load_no_migration_tool_nor_provider_client(tmp_path):
    run = "import contextlib, io\nfrom cadence.cli import main\n" \
          "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n    main({args!r})\n"
    assert "alembic" in modules_loaded(run.format(args=["init"]), tmp_path)
    for args in (["campaign", "list"], ["status", "Nope"], ["mailbox", "list"]):
        loaded = modules_loaded(run.format(args=args), tmp_path)
        assert "sqlalchemy" in loaded  # it did read the database
        assert {"alembic", "googleapiclient", "slack_sdk", "slack_bolt", "matplotlib", "msal"} & loaded == set()


def write_campaign(home: Path) -> Path:
    path = home / "errors.yml"
    path.write_text(CAMPAIGN, encoding="utf-8")
    (home / "body.html").write_text("<p>Hi {{ first_name }}</p>", encoding="utf-8")
    return path
