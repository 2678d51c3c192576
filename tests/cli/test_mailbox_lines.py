"""A mailbox that becomes unusable says so in one line on standard error, and one line when it
works again, from `cadence worker --once` too (issue 14 item 2). Real processes, real stderr."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

REP = "rita@acme.example"


def worker_once(cli, now: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cadence.cli", "worker", "--once", "--now", now], cwd=cli.home,
                          env=dict(os.environ), capture_output=True, text=True, timeout=300)


def test_worker_once_says_unusable_once_and_works_again_once(sqlite_cli):
    sqlite_cli.ok("init")
    sqlite_cli.ok("rep", "add", "--email", REP)
    root = sqlite_cli.home / "box"
    sqlite_cli.ok("mailbox", "add", "--provider", "maildir", "--address", REP, "--owner", REP, "--path", str(root))
    kept = sqlite_cli.home / "kept"
    shutil.move(root, kept)
    root.write_text("now a file", encoding="utf-8")

    first = worker_once(sqlite_cli, "2026-12-01T09:00:00Z")
    assert first.returncode == 0 and "Traceback" not in first.stderr
    said = [line for line in first.stderr.splitlines() if REP in line]
    assert len(said) == 1 and "cannot be used (misconfigured)" in said[0] and str(root) in said[0]
    again = worker_once(sqlite_cli, "2026-12-01T09:05:00Z")  # still unusable: nothing new to say
    assert again.returncode == 0 and [line for line in again.stderr.splitlines() if REP in line] == []

    root.unlink()
    shutil.move(kept, root)
    back = worker_once(sqlite_cli, "2026-12-01T09:10:00Z")
    assert back.returncode == 0 and "Traceback" not in back.stderr
    said = [line for line in back.stderr.splitlines() if REP in line]
    assert len(said) == 1 and "works again (was misconfigured)" in said[0]
    assert " connected " in sqlite_cli.ok("mailbox", "list").splitlines()[1] + " "
