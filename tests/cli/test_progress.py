"""Long commands show progress on a terminal and nothing when piped (issue 14 item 5); `stop` asks
for confirmation on a terminal (item 11). Run as real processes: a pseudo-terminal or a pipe."""
from __future__ import annotations

import os
import pty
import subprocess
import sys

REP = "rita@acme.example"


def run(cli, *args: str, terminal: bool, stdin: bytes = b"") -> tuple[int, str, str]:
    """`cadence ARGS` in a process of its own; with `terminal`, standard error (and input) is a pty."""
    env = {**os.environ, "COLUMNS": "100", "TERM": "xterm"}
    if not terminal:
        result = subprocess.run([sys.executable, "-m", "cadence.cli", *args], cwd=cli.home, env=env,
                                capture_output=True, timeout=300, input=stdin)
        return result.returncode, result.stdout.decode(), result.stderr.decode()
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "cadence.cli", *args], cwd=cli.home, env=env,
                            stdin=slave, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    if stdin:
        os.write(master, stdin)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    out = proc.stdout.read().decode()
    proc.wait(timeout=300)
    os.close(master)
    return proc.returncode, out, seen.decode(errors="replace")


def write_contacts(cli, count: int):
    path = cli.home / "many.csv"
    path.write_text("email,first_name\n" + "".join(f"p{i}@prospect.example,P{i}\n" for i in range(count)),
                    encoding="utf-8")
    return path


def test_import_shows_counts_on_a_terminal_and_nothing_when_piped(sqlite_cli):
    sqlite_cli.ok("init")
    path = write_contacts(sqlite_cli, 3000)
    code, out, err = run(sqlite_cli, "contacts", "import", str(path), terminal=True)
    assert code == 0, err
    assert "importing" in err and "/3000" in err and "None" not in err and "Traceback" not in err
    assert "/?" not in err  # before the total is known the bar says "counting", not "0/?"
    assert out.strip() == "imported 0, updated 0, unchanged 3000, rejected 0" or out.startswith("imported 3000")
    code, out, err = run(sqlite_cli, "contacts", "import", str(path), terminal=False)
    assert code == 0 and err == "" and out.strip() == "imported 0, updated 0, unchanged 3000, rejected 0"


def test_stop_asks_on_a_terminal_and_yes_skips_the_question(sqlite_cli):
    cli = sqlite_cli
    (cli.home / "c.yml").write_text("name: Stoppable\ntimezone: UTC\nsteps:\n  - day: 1\n    action: auto\n"
                                    "    send: at_time\n    time: \"09:00\"\n    subject: \"Hi\"\n    body: \"Hi\"\n",
                                    encoding="utf-8")
    cli.ok("init")
    cli.ok("rep", "add", "--email", REP)
    cli.ok("mailbox", "add", "--provider", "maildir", "--address", REP, "--owner", REP)
    cli.ok("campaign", "import", str(cli.home / "c.yml"))
    write_contacts(cli, 3)
    cli.ok("contacts", "import", str(cli.home / "many.csv"))
    cli.ok("enroll", "Stoppable", "--all", "--mailbox", REP)
    cli.ok("prepare", "Stoppable")
    cli.ok("send", "Stoppable")
    code, out, err = run(cli, "stop", "Stoppable", terminal=True, stdin=b"n\n")
    assert "Stop 'Stoppable' for good?" in err and code == 1 and "not stopped" in err
    assert json_state(cli) == "sending"
    code, out, err = run(cli, "stop", "Stoppable", "--yes", terminal=True)
    assert code == 0 and out.strip() == "Stoppable: stopped" and "for good?" not in err


def json_state(cli) -> str:
    import json

    return json.loads(cli.ok("status", "Stoppable", "--json"))["state"]
