"""The Slack bot's test world (tests/slack builds its fixtures on it): reps, mailboxes, two campaigns with open tasks (built with the real
CLI and a real Maildir), a fake Slack, and `cadence serve`'s Starlette app served by uvicorn.

The world is built once per session through the CLI on SQLite and cloned per test (the database
file, the secret key and the Maildirs, with the mailbox paths moved to the clone); the PostgreSQL
test builds it from scratch through the `cli` fixture.
"""
from __future__ import annotations

import io
import json
import mailbox as stdlib_mailbox
import threading
import time
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email import policy
from email.parser import BytesParser
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from cadence.app import App
from cadence.settings import Settings
from core.clock import FixedClock
from tests.fakes.slack_server import FakeSlack, sign

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TEAM = "TCADENCE"
LAUNCH = "2026-11-30T05:00:00Z"  # Monday 00:00 New York, 14:00 Tokyo
FIRST_STEP = "2026-11-30T14:30:00Z"  # step 1 goes out in New York and London
TASKS_DUE = "2026-12-02T15:05:00Z"  # day 3, 10:00 local: every task is drafted
NOW = datetime(2026, 12, 2, 15, 10, tzinfo=timezone.utc)

CAMPAIGN = """\
name: {name}
timezone: America/New_York
send_window: {{days: [mon, tue, wed, thu, fri], start: "08:00", end: "18:00"}}
steps:
  - day: 1
    action: auto
    send: at_time
    time: "09:30"
    subject: "Hello {{{{ first_name }}}}"
    body: "<p>Hi {{{{ first_name }}}}, see <a href='https://example.org/x'>this</a>.</p>"
  - day: 3
    action: task
    send: at_time
    time: "10:00"
    subject: "Idea for {{{{ company }}}}"
    body: "Hi {{{{ first_name }}}}, an idea for {{{{ company }}}}.\\n\\nWould Tuesday work?"
  - day: 5
    action: auto
    send: same_as_previous
    thread: true
    body: "Bumping this, {{{{ first_name }}}}."
"""
CONTACTS = """\
email,first_name,company,timezone,country
ny@prospect.example,Nora,NYCo,America/New_York,US
ldn@prospect.example,Leo,LondonCo,Europe/London,GB
tyo@prospect.example,Taro,TokyoCo,Asia/Tokyo,JP
ana@other.example,Ana,AnaCorp,America/New_York,US
"""
# (email, name, slack id in Cadence, Slack user id, options)
REPS = (
    ("mia@acme.example", "Mia Manager", "UMIA", "UMIA", ("--role", "manager", "--timezone", "Europe/Paris")),
    ("rita@acme.example", "Rita Rep", "URITA", "URITA", ("--manager", "mia@acme.example")),
    ("bob@acme.example", "Bob Builder", None, "UBOB", ("--manager", "mia@acme.example")),
    ("otto@acme.example", "Otto Other", "UOTTO", "UOTTO", ()),
    ("ada@acme.example", "Ada Admin", "UADA", "UADA", ("--role", "admin")),
)
STRANGER = ("USTRANGER", "stranger@elsewhere.example")


def build_world(run, home: Path) -> None:
    """Everything through the CLI: `run(*args, now=None)` runs `cadence ARGS` and must succeed."""
    (home / "flow.yml").write_text(CAMPAIGN.format(name="Flow"), encoding="utf-8")
    (home / "otto.yml").write_text(CAMPAIGN.format(name="Otto Outreach"), encoding="utf-8")
    (home / "contacts.csv").write_text(CONTACTS, encoding="utf-8")
    run("init", now=LAUNCH)
    for email, name, slack_id, _, options in REPS:
        run("rep", "add", "--email", email, "--name", name, *(("--slack-id", slack_id) if slack_id else ()), *options,
            now=LAUNCH)
    for rep in ("rita", "otto"):
        run("mailbox", "add", "--provider", "maildir", "--address", f"{rep}@acme.example", "--owner",
            f"{rep}@acme.example", "--path", str(home / f"maildir-{rep}"), now=LAUNCH)
    run("campaign", "import", str(home / "flow.yml"), now=LAUNCH)
    run("campaign", "import", str(home / "otto.yml"), now=LAUNCH)
    run("contacts", "import", str(home / "contacts.csv"), now=LAUNCH)
    run("enroll", "Flow", "--emails", "ny@prospect.example,ldn@prospect.example,tyo@prospect.example",
        "--mailbox", "rita@acme.example", now=LAUNCH)
    run("enroll", "Otto Outreach", "--emails", "ana@other.example", "--mailbox", "otto@acme.example", now=LAUNCH)
    for name in ("Flow", "Otto Outreach"):
        run("prepare", name, now=LAUNCH)
        run("send", name, now=LAUNCH)
    run("worker", "--once", "--now", LAUNCH)
    run("worker", "--once", "--now", FIRST_STEP)
    run("worker", "--once", "--now", TASKS_DUE)


def run_cli(home: Path, database_url: str):
    from cadence.cli import main

    def run(*args: str, now: str | None = None) -> str:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("CADENCE_HOME", str(home))
            mp.setenv("CADENCE_DATABASE_URL", database_url)
            mp.setenv("CADENCE_PUBLIC_URL", "https://cadence.test")
            if now:
                mp.setenv("CADENCE_NOW", now)
            else:
                mp.delenv("CADENCE_NOW", raising=False)
            mp.chdir(home)
            out, err = io.StringIO(), io.StringIO()
            code = 0
            with redirect_stdout(out), redirect_stderr(err):
                try:
                    main(list(args))
                except SystemExit as exit_:
                    code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
            assert code == 0, f"cadence {' '.join(args)} failed: {err.getvalue()}{out.getvalue()}"
            return out.getvalue()

    return run


@dataclass
class World:
    home: Path
    database_url: str
    run: object  # run(*args, now=None) -> stdout of `cadence ARGS`
    cli: object = None  # the `Cli` of tests/conftest.py (setenv for the CLI's environment)
    apps: list = field(default_factory=list)

    def maildir(self, rep: str) -> Path:
        return self.home / f"maildir-{rep}"


def make_app(world: World, fake: FakeSlack, *, now: datetime = NOW, **overrides) -> App:
    values = {"CADENCE_HOME": str(world.home), "CADENCE_DATABASE_URL": world.database_url,
              "CADENCE_PUBLIC_URL": "https://cadence.test", "SLACK_BOT_TOKEN": fake.bot_token,
              "SLACK_SIGNING_SECRET": SIGNING_SECRET, "CADENCE_SLACK_API_URL": fake.api_url, **overrides}
    app = App.from_settings(Settings(**values), clock=FixedClock(now), upgrade=False)  # the CLI migrated it
    world.apps.append(app)
    return app


class Served:
    """`cadence serve`'s Starlette app with the Slack routes, on 127.0.0.1:<ephemeral port>."""

    def __init__(self, app: App, fake: FakeSlack):
        import uvicorn

        from bot.http import slack_routes_for
        from cadence.http import create_http_app

        self.app, self.fake = app, fake
        self.routes = routes = slack_routes_for(app)
        self.asgi = create_http_app(app, slack_routes=routes)
        config = uvicorn.Config(self.asgi, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn-test", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60  # returns as soon as it is there
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def close(self) -> None:
        from bot.http import slack_drain

        self.http.close()
        self.server.should_exit = True
        self.thread.join(timeout=10)
        slack_drain(self.routes)  # work acknowledged but not finished must not outlive the fake Slack

    # -- signed requests -----------------------------------------------------------------------
    def post(self, body: bytes, *, content_type: str = "application/x-www-form-urlencoded",
             timestamp: str | None = None, signature: str | bytes | None = None, headers: dict | None = None,
             secret: str = SIGNING_SECRET) -> httpx.Response:
        timestamp = timestamp if timestamp is not None else str(int(time.time()))
        if signature is None:
            signature = sign(secret, timestamp, body)
        sent = {"Content-Type": content_type, "X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature}
        sent = {k: v for k, v in sent.items() if v != "<omit>"}
        sent.update(headers or {})
        return self.http.post("/slack/events", content=body, headers=sent)

    def command_body(self, user: str, text: str, response_url: str | None = None) -> bytes:
        return urlencode({
            "token": "deprecated-verification-token", "team_id": TEAM, "team_domain": "cadence-test",
            "channel_id": "C0SALES", "channel_name": "sales", "user_id": user, "user_name": user.lower(),
            "command": "/cadence", "text": text, "api_app_id": "ACADENCE", "is_enterprise_install": "false",
            "response_url": response_url or self.fake.response_url(), "trigger_id": self.fake.trigger_id(),
        }).encode()

    def command(self, user: str, text: str) -> tuple[httpx.Response, str]:
        """POST `/cadence text` as `user`; returns the HTTP response and the response_url's hook id."""
        url = self.fake.response_url()
        response = self.post(self.command_body(user, text, url))
        return response, url.rsplit("/", 1)[1]

    def action(self, user: str, action_id: str, value: str, *, surface: str = "list", in_view: bool = False,
               response_url: str | None = None) -> tuple[httpx.Response, str | None]:
        url = None if in_view else (response_url or self.fake.response_url())
        payload = {
            "type": "block_actions", "team": {"id": TEAM, "domain": "cadence-test"},
            "user": {"id": user, "team_id": TEAM}, "api_app_id": "ACADENCE", "token": "deprecated",
            "trigger_id": self.fake.trigger_id(), "is_enterprise_install": False,
            "container": ({"type": "view", "view_id": "VHOME"} if in_view
                          else {"type": "message", "message_ts": "1.2", "channel_id": "DURITA", "is_ephemeral": True}),
            "actions": [{"type": "button", "action_id": action_id, "block_id": f"task:{surface}:{value}",
                         "value": value, "action_ts": f"{time.time():.6f}",
                         "text": {"type": "plain_text", "text": "x"}}],
        }
        if url:
            payload["response_url"] = url
        response = self.post(urlencode({"payload": json.dumps(payload)}).encode())
        return response, (url.rsplit("/", 1)[1] if url else None)

    def submit_edit(self, user: str, task_value, subject: str | None, body: str | None) -> httpx.Response:
        payload = {
            "type": "view_submission", "team": {"id": TEAM, "domain": "cadence-test"},
            "user": {"id": user, "team_id": TEAM}, "api_app_id": "ACADENCE", "token": "deprecated",
            "trigger_id": self.fake.trigger_id(), "is_enterprise_install": False,
            "view": {"id": "VMODAL", "team_id": TEAM, "type": "modal", "callback_id": "task_edit_modal",
                     "private_metadata": json.dumps({"task": task_value}), "hash": "1.abc",
                     "state": {"values": {"subject": {"subject": {"type": "plain_text_input", "value": subject}},
                                          "body": {"body": {"type": "plain_text_input", "value": body}}}}},
        }
        return self.post(urlencode({"payload": json.dumps(payload)}).encode())

    def event(self, event: dict, event_id: str | None = None) -> httpx.Response:
        body = json.dumps({"token": "deprecated", "team_id": TEAM, "api_app_id": "ACADENCE", "event": event,
                           "type": "event_callback", "event_id": event_id or f"Ev{time.time_ns()}",
                           "event_time": int(time.time()), "authorizations": [
                               {"team_id": TEAM, "user_id": "UCADENCEBOT", "is_bot": True}]}).encode()
        return self.post(body, content_type="application/json")

    # -- what Slack received -------------------------------------------------------------------
    def hook(self, hook_id: str, timeout: float = 5.0) -> dict:
        found = self.fake.wait_for(lambda: [b for h, b in self.fake.hooks if h == hook_id], timeout)
        assert found, f"nothing was posted to response URL {hook_id}"
        return found[0]

    def hooks(self, hook_id: str) -> list[dict]:
        return [b for h, b in self.fake.hooks if h == hook_id]


def text_of(message: dict) -> str:
    """Everything a message or view shows, flattened (for assertions on content)."""
    return json.dumps(message, ensure_ascii=False)


def folder(root: Path, name: str) -> list:
    """The emails in one folder (`cur`, `new`, `.Drafts` …) of a rep's Maildir, parsed."""
    box = stdlib_mailbox.Maildir(root / name, factory=None, create=False)
    parser = BytesParser(policy=policy.default)
    return [parser.parsebytes(box.get_bytes(key)) for key in box.keys()]


def recipient(message) -> str:
    return message["To"].addresses[0].addr_spec
