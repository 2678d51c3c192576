"""`cadence.heap.settle()` (gc.freeze) belongs to a process that is the command: run in-process
(the CLI of the tests, anything embedding `cadence.cli.main(argv)`), a command must leave the
collector as it found it, or whatever the caller held then (and the command's own App) would be
frozen and never collected again."""
from __future__ import annotations

import gc
import weakref

import pytest

from tests.support.cli import people_csv
from tests.support.prepare import CAMPAIGN as ONE_CAMPAIGN

CAMPAIGN = ONE_CAMPAIGN.format(name="Heap")
NOW = "2026-11-30T08:00:00Z"


class Cycle:
    """An object that only the cyclic collector can free."""

    def __init__(self):
        self.me = self


@pytest.mark.parametrize("command", [
    ("contacts", "import", "contacts.csv"),
    ("enroll", "Heap", "--all", "--mailbox", "rita@acme.example"),
    ("prepare", "Heap"),
])
def test_an_in_process_command_freezes_nothing_the_caller_holds(cli, command):
    cli.maildir_campaign(CAMPAIGN, contacts=people_csv(["ana@prospect.example", "bo@prospect.example"]))
    if command[0] == "prepare":
        cli.ok("enroll", "Heap", "--all", "--mailbox", "rita@acme.example", now=NOW)
    held = Cycle()
    gone = weakref.ref(held)
    frozen = gc.get_freeze_count()
    cli.ok(*command, now=NOW)
    del held
    gc.collect()
    assert gone() is None, f"`cadence {' '.join(command)}` in-process froze what its caller held"
    assert gc.get_freeze_count() == frozen
