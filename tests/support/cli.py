"""The real CLI run in-process (`Cli`): what the `cli` fixtures of tests/conftest.py hand out, and
what a test folder uses to build a CLI of its own."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class CliResult:
    code: int
    out: str
    err: str


class Cli:
    """Runs `cadence ARGS` in-process through the real entry point, with its own environment."""

    def __init__(self, home: Path, database_url: str, monkeypatch, capsys):
        self.home, self.database_url = home, database_url
        self._monkeypatch, self._capsys = monkeypatch, capsys
        monkeypatch.setenv("CADENCE_HOME", str(home))
        monkeypatch.setenv("CADENCE_DATABASE_URL", database_url)
        monkeypatch.setenv("CADENCE_PUBLIC_URL", "https://cadence.test")
        monkeypatch.chdir(home)

    def setenv(self, name: str, value: str | None) -> None:
        if value is None:
            self._monkeypatch.delenv(name, raising=False)
        else:
            self._monkeypatch.setenv(name, value)

    def __call__(self, *args: str, now: str | None = None) -> CliResult:
        from cadence.cli import main

        self.setenv("CADENCE_NOW", now)
        self._capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        captured = self._capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    def ok(self, *args: str, now: str | None = None) -> str:
        result = self(*args, now=now)
        assert result.code == 0, f"cadence {' '.join(args)} failed ({result.code}): {result.err}{result.out}"
        return result.out

    def maildir_campaign(self, *campaigns: str, contacts: str, rep: str = "rita@acme.example",
                         rep_name: str | None = "Rita Rep") -> Path:
        """`init`, a rep with a Maildir mailbox (`<home>/maildir`), then each campaign's YAML and the
        contacts CSV written into the home folder and imported; returns the Maildir's path."""
        maildir = self.home / "maildir"
        self.ok("init")
        self.ok("rep", "add", "--email", rep, *(("--name", rep_name) if rep_name else ()))
        self.ok("mailbox", "add", "--provider", "maildir", "--address", rep, "--owner", rep, "--path", str(maildir))
        for index, campaign_yaml in enumerate(campaigns):
            (self.home / f"campaign{index}.yml").write_text(campaign_yaml, encoding="utf-8")
            self.ok("campaign", "import", str(self.home / f"campaign{index}.yml"))
        (self.home / "contacts.csv").write_text(contacts, encoding="utf-8")
        self.ok("contacts", "import", str(self.home / "contacts.csv"))
        return maildir

    def launch(self, campaign: str, *, now: str, mailbox: str = "rita@acme.example") -> None:
        """`enroll --all`, `prepare` and `send`, all at `now`."""
        self.ok("enroll", campaign, "--all", "--mailbox", mailbox, now=now)
        self.ok("prepare", campaign, now=now)
        self.ok("send", campaign, now=now)


def people_csv(addresses) -> str:
    """A contacts CSV of `addresses`, each first_name the title-cased part before the @."""
    return "email,first_name\n" + "".join(f"{email},{email.split('@')[0].title()}\n" for email in addresses)


def question_then_follow_up(name: str, *, day: int, action: str = "auto",
                            body: str = "Bumping this, {{ first_name }}.") -> str:
    """Campaign YAML (UTC): on day 1 at 09:00 an automatic "Quick question" email, then on `day` at
    09:00 a threaded step (`action` auto or task) with `body`."""
    return f"""\
name: {name}
timezone: UTC
steps:
  - day: 1
    action: auto
    send: at_time
    time: "09:00"
    subject: "Quick question, {{{{ first_name }}}}"
    body: "<p>Hi {{{{ first_name }}}}, one question.</p>"
  - day: {day}
    action: {action}
    send: at_time
    time: "09:00"
    thread: true
    body: "{body}"
"""
