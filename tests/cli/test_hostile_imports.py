"""Hostile and broken campaign files through `cadence campaign import` (issue #12 items 4 and 5).

Each shape must end in one sentence on standard error naming the file, the line and the field,
with no traceback, and nothing stored. `body_file` stays inside the campaign file's folder, reads
regular files only, and both it and an inline `body:` are limited to 1 MB.
"""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.support.cli import Cli

HEAD = "name: Hostile\ntimezone: UTC\nsteps:\n"
STEP = "  - day: 1\n    action: auto\n    send: at_time\n    time: '09:00'\n    subject: Hello\n"


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys) -> Cli:
    """The real CLI on SQLite (these refusals happen before the database is touched)."""
    home = tmp_path / "home"
    home.mkdir()
    return Cli(home, f"sqlite:///{tmp_path / 'cadence.db'}", monkeypatch, capsys)


def _refused(cli, path: Path, line: int | None, field: str, *words: str) -> str:
    result = cli("campaign", "import", str(path))
    err = result.err.strip()
    assert result.code != 0, result
    assert "Traceback" not in result.err + result.out
    assert len(err.splitlines()) == 1, err
    assert str(path) in err and field in err, err
    if line is not None:
        assert f"line {line}" in err, err
    for word in words:
        assert word in err, err
    assert json.loads(cli.ok("campaign", "list", "--json")) == []
    return err


def _with_body_file(cli, relative: str) -> Path:
    path = cli.home / "campaigns" / "c.yml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(HEAD + STEP + f"    body_file: {json.dumps(relative)}\n", encoding="utf-8")
    return path


@pytest.fixture
def outside(tmp_path) -> Path:
    secret = tmp_path / "outside.html"
    secret.write_text("<p>not for the campaign</p>", encoding="utf-8")
    return secret


BODY_FILE_SHAPES = {
    # name: (set-up(folder, outside) -> relative path, words the refusal must hold)
    "../ to /etc/passwd": (lambda d, o: "../../../../../../../../etc/passwd", "outside the campaign file's folder"),
    "../ to a sibling file": (lambda d, o: os.path.relpath(o, d), "outside the campaign file's folder"),
    "absolute /etc/passwd": (lambda d, o: "/etc/passwd", "relative to the campaign file's folder"),
    "absolute /dev/zero": (lambda d, o: "/dev/zero", "relative to the campaign file's folder"),
    "home-relative": (lambda d, o: "~/x.html", "relative to the campaign file's folder"),
    "symlink to /etc/passwd": (lambda d, o: _link(d, "passwd.html", "/etc/passwd"), "outside"),
    "symlink to a sibling file": (lambda d, o: _link(d, "s.html", str(o)), "outside"),
    "symlink to /dev/zero": (lambda d, o: _link(d, "zero.html", "/dev/zero"), "outside"),
    "symlink loop": (lambda d, o: _loop(d), "cannot be resolved"),
    "a FIFO": (lambda d, o: _fifo(d), "not a regular file"),
    "a directory": (lambda d, o: _dir(d), "not a regular file"),
    "over 1 MB": (lambda d, o: _file(d, "big.html", b"<p>" + b"x" * 1_000_000 + b"</p>"), "over 1,000,000 bytes"),
    "missing": (lambda d, o: "nowhere.html", "does not exist"),
    "not UTF-8 (cp1252)": (lambda d, o: _file(d, "cp.html", "<p>Hi</p>\n<p>Café</p>".encode("cp1252")),
                           "not UTF-8 text (line 2"),
    "empty": (lambda d, o: _file(d, "empty.html", b""), "empty"),
}


def _link(folder: Path, name: str, target: str) -> str:
    (folder / name).symlink_to(target)
    return name


def _loop(folder: Path) -> str:
    (folder / "a.html").symlink_to(folder / "b.html")
    (folder / "b.html").symlink_to(folder / "a.html")
    return "a.html"


def _fifo(folder: Path) -> str:
    os.mkfifo(folder / "pipe.html")
    return "pipe.html"


def _dir(folder: Path) -> str:
    (folder / "templates").mkdir()
    return "templates"


def _file(folder: Path, name: str, data: bytes) -> str:
    (folder / name).write_bytes(data)
    return name


@pytest.mark.parametrize("shape", sorted(BODY_FILE_SHAPES))
def test_a_body_file_outside_the_folder_or_not_a_small_regular_file_is_refused(cli, outside, shape):
    make, words = BODY_FILE_SHAPES[shape]
    folder = cli.home / "campaigns"
    folder.mkdir()
    relative = make(folder, outside)
    path = _with_body_file(cli, relative)
    signal.alarm(60)  # a FIFO once hung the import: fail instead of hanging the suite
    try:
        _refused(cli, path, 9, "steps[1].body_file", words)
    finally:
        signal.alarm(0)


@pytest.mark.parametrize("shape", ["a file beside it", "a file in a subfolder", "a symlink to a file inside",
                                   "exactly 1 MB"])
def test_a_body_file_inside_the_folder_is_read(cli, shape):
    folder = cli.home / "campaigns"
    (folder / "templates").mkdir(parents=True)
    (folder / "templates" / "idea.html").write_text("<p>An idea for {{ company }}.</p>", encoding="utf-8")
    relative = {"a file beside it": _file(folder, "b.html", b"<p>Hi {{ first_name }}</p>"),
                "a file in a subfolder": "templates/idea.html",
                "a symlink to a file inside": _link(folder, "l.html", str(folder / "templates" / "idea.html")),
                "exactly 1 MB": _file(folder, "max.html", b"<p>" + b"x" * (1_000_000 - 7) + b"</p>")}[shape]
    path = _with_body_file(cli, relative)
    assert cli.ok("campaign", "import", str(path)).strip() == "Hostile"


def _campaign(cli, text: str) -> Path:
    path = cli.home / "c.yml"
    path.write_text(text, encoding="utf-8")
    return path


NESTED_IFS = "".join("{% if a %}" for _ in range(300)) + "x" + "".join("{% endif %}" for _ in range(300))

# name: (file text, line, field, words)
IMPORT_SHAPES = {
    "huge day": (HEAD + STEP.replace("day: 1", "day: 99999999999999999999999") + "    body: b\n",
                 4, "steps[1].day", "from 1 to 365"),
    "day 366": (HEAD + STEP.replace("day: 1", "day: 366") + "    body: b\n", 4, "steps[1].day", "from 1 to 365"),
    "negative day": (HEAD + STEP.replace("day: 1", "day: -1") + "    body: b\n", 4, "steps[1].day", "from 1"),
    "complex key at the top": ("name: Hostile\n? [a, b]\n: x\nsteps: []\n", 2, "yaml", "plain text"),
    "complex key in a step": (HEAD + STEP + "    ? {a: 1}\n    : x\n    body: b\n", 9, "yaml", "plain text"),
    "name twice": ("name: Hostile\nname: Other\nsteps: []\n", 2, "name", "twice"),
    "body twice": (HEAD + STEP + "    body: one\n    body: two\n", 10, "body", "first on line 9"),
    "day twice": (HEAD + STEP + "    day: 2\n    body: b\n", 9, "day", "twice"),
    "subject of 200 + 1 terms": (HEAD + STEP.replace("subject: Hello", "subject: \"{{ 1" + " + 1" * 200 + " }}\"")
                                 + "    body: b\n", 8, "steps[1].subject", "template error"),
    "5,000 nested parentheses": (HEAD + STEP.replace("subject: Hello", "subject: \"{{ " + "(" * 5000 + "1"
                                                     + ")" * 5000 + " }}\"") + "    body: b\n",
                                 8, "steps[1].subject", "template error"),
    "5,000 nested parentheses in the body": (HEAD + STEP + "    body: \"<p>{{ " + "(" * 5000 + "1" + ")" * 5000
                                             + " }}</p>\"\n", 9, "steps[1].body", "template error"),
    "300 nested ifs": (HEAD + STEP + f"    body: \"<p>{NESTED_IFS}</p>\"\n", 9, "steps[1].body", "template error"),
    "300 nested ifs in plain text": (HEAD + STEP + f"    body: \"{NESTED_IFS}\"\n", 9, "steps[1].body",
                                     "template error"),
    "deeply nested YAML": (HEAD + STEP + "    body: " + "[" * 5000 + "]" * 5000 + "\n", 9, "yaml", "nested"),
    "inline body over 1 MB": (HEAD + STEP + "    body: \"" + "x" * 1_000_001 + "\"\n", 9, "steps[1].body",
                              "over 1,000,000 bytes"),
    "file over 2M characters": ("# " + "x" * 2_000_001 + "\n" + HEAD + STEP + "    body: b\n", None, "campaign",
                                "body_file"),
}


@pytest.mark.parametrize("shape", sorted(IMPORT_SHAPES))
def test_a_campaign_file_that_once_crashed_the_import_gets_one_sentence(cli, shape):
    text, line, field, words = IMPORT_SHAPES[shape]
    _refused(cli, _campaign(cli, text), line, field, words)


def test_day_365_and_a_body_of_exactly_1_mb_are_accepted(cli):
    text = HEAD + STEP.replace("day: 1", "day: 365") + "    body: \"" + "x" * 1_000_000 + "\"\n"
    assert cli.ok("campaign", "import", str(_campaign(cli, text))).strip() == "Hostile"
