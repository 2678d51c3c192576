"""Mailboxes as an operator adds and runs them (issue 14 items 1 and 2): credentials checked at
`mailbox add` (nothing stored when they fail), an Outlook mailbox from a refresh-token file, and a
health state with its reason, said once, retried with back-off, said again once it recovers."""
from __future__ import annotations

import json
import logging

import pytest

from connectors.outlook import OutlookSignIn
from tests.support.outlook import CLIENT_ID, CLIENT_SECRET
from tests.fakes.gmail_server import FakeGmail
from tests.fakes.graph_server import FakeGraphServer
from tests.fakes.identity_server import FakeIdentityServer
from tests.fakes.tls import make_test_tls

REP = "rep@example.com"
REDIRECT = "https://cadence.test/oauth/outlook/callback"
CAMPAIGN = """\
name: Health
timezone: UTC
steps:
  - day: 1
    action: auto
    send: at_time
    time: "09:00"
    subject: "Hello {{ first_name }}"
    body: "<p>Hi {{ first_name }}.</p>"
"""
DAY1 = "2026-12-01T09:00:00Z"


def refused(result, *words: str) -> str:
    assert result.code != 0 and "Traceback" not in result.err
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1, result.err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def start_campaign(cli) -> None:
    (cli.home / "c.yml").write_text(CAMPAIGN, encoding="utf-8")
    (cli.home / "contacts.csv").write_text("email,first_name\nada@prospect.example,Ada\n", encoding="utf-8")
    cli.ok("campaign", "import", str(cli.home / "c.yml"))
    cli.ok("contacts", "import", str(cli.home / "contacts.csv"))
    cli.ok("enroll", "Health", "--all", "--mailbox", REP, now="2026-12-01T08:00:00Z")
    cli.ok("prepare", "Health", now="2026-12-01T08:00:00Z")
    cli.ok("send", "Health", now="2026-12-01T08:00:00Z")


def boxes(cli) -> list[dict]:
    return json.loads(cli.ok("mailbox", "list", "--json"))


@pytest.fixture
def outlook(sqlite_cli, tmp_path):
    tls = make_test_tls(tmp_path / "tls")
    identity = FakeIdentityServer(tls).start()
    graph = FakeGraphServer(identity=identity).start()
    identity.register_client(CLIENT_ID, CLIENT_SECRET, (REDIRECT,))
    graph.add_mailbox(REP, "Rita Rep")
    for name, value in (("CADENCE_MS_AUTHORITY", identity.authority()), ("CADENCE_GRAPH_API_URL", graph.graph_url),
                        ("CADENCE_MS_CLIENT_ID", CLIENT_ID), ("CADENCE_MS_CLIENT_SECRET", CLIENT_SECRET),
                        ("REQUESTS_CA_BUNDLE", str(tls.ca_path)), ("SSL_CERT_FILE", str(tls.ca_path))):
        sqlite_cli.setenv(name, value)
    sqlite_cli.ok("rep", "add", "--email", REP)
    yield identity, graph, tls
    graph.stop()
    identity.stop()


def outlook_refresh_token(identity, tls) -> str:
    """What an operator gets from their own sign-in tooling: a refresh token, in a file."""
    sign_in = OutlookSignIn(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, authority=identity.authority(),
                            http_client=tls.session())
    flow = sign_in.start_auth_code_flow(REDIRECT)
    identity.sign_in(REP)
    connection = sign_in.finish_auth_code_flow(flow, identity.complete_sign_in(flow["auth_uri"]))
    [entry] = json.loads(connection.token_cache)["RefreshToken"].values()
    return entry["secret"]


def test_an_outlook_mailbox_from_a_refresh_token_file_sends(sqlite_cli, outlook):
    identity, graph, tls = outlook
    token = sqlite_cli.home / "rt.txt"
    token.write_text(outlook_refresh_token(identity, tls) + "\n", encoding="utf-8")
    sqlite_cli.ok("mailbox", "add", "--provider", "outlook", "--address", REP, "--owner", REP,
                  "--refresh-token-file", str(token))
    assert [(b["provider"], b["health"]) for b in boxes(sqlite_cli)] == [("outlook", "connected")]
    start_campaign(sqlite_cli)
    sqlite_cli.ok("worker", "--once", "--now", DAY1)
    assert len(graph.sent_by(REP)) == 1
    assert [m.to[0][1] for m in graph.messages(REP, "sentitems")] == ["ada@prospect.example"]


def test_a_refused_outlook_token_is_one_sentence_and_nothing_is_stored(sqlite_cli, outlook):
    token = sqlite_cli.home / "rt.txt"
    token.write_text("0.AAAA-not-a-token", encoding="utf-8")
    refused(sqlite_cli("mailbox", "add", "--provider", "outlook", "--address", REP, "--owner", REP,
                       "--refresh-token-file", str(token)), "--refresh-token-file", "AADSTS70000", "nothing was stored")
    assert boxes(sqlite_cli) == []


def test_an_outlook_mailbox_needs_the_client_id_before_anything_is_stored(sqlite_cli, outlook):
    sqlite_cli.setenv("CADENCE_MS_CLIENT_ID", None)
    token = sqlite_cli.home / "rt.txt"
    token.write_text("anything", encoding="utf-8")
    refused(sqlite_cli("mailbox", "add", "--provider", "outlook", "--address", REP, "--owner", REP,
                       "--refresh-token-file", str(token)), "CADENCE_MS_CLIENT_ID")
    assert boxes(sqlite_cli) == []


@pytest.fixture
def gmail(sqlite_cli):
    with FakeGmail() as server:
        account = server.add_account(REP)
        for name, value in (("CADENCE_GMAIL_API_URL", server.api_url), ("CADENCE_GOOGLE_TOKEN_URL", server.token_url),
                            ("CADENCE_GOOGLE_CLIENT_ID", server.client_id),
                            ("CADENCE_GOOGLE_CLIENT_SECRET", server.client_secret)):
            sqlite_cli.setenv(name, value)
        sqlite_cli.ok("rep", "add", "--email", REP)
        yield server, account


def test_a_refused_gmail_token_is_one_sentence_and_nothing_is_stored(sqlite_cli, gmail):
    token = sqlite_cli.home / "rt.txt"
    token.write_text("1//not-a-token", encoding="utf-8")
    refused(sqlite_cli("mailbox", "add", "--provider", "gmail", "--address", REP, "--owner", REP,
                       "--refresh-token-file", str(token)), "--refresh-token-file", "nothing was stored")
    assert boxes(sqlite_cli) == []


def test_an_unusable_maildir_path_is_one_sentence_and_nothing_is_stored(sqlite_cli):
    sqlite_cli.ok("init")
    sqlite_cli.ok("rep", "add", "--email", REP)
    blocker = sqlite_cli.home / "a-file"
    blocker.write_text("x", encoding="utf-8")
    refused(sqlite_cli("mailbox", "add", "--provider", "maildir", "--address", REP, "--owner", REP,
                       "--path", str(blocker / "box")), "--path", "nothing was stored")
    assert boxes(sqlite_cli) == []


def mailbox_lines(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "cadence.mailboxes"]


def test_a_gmail_mailbox_without_the_client_id_is_misconfigured_once_then_recovers(sqlite_cli, gmail, caplog):
    server, account = gmail
    caplog.set_level(logging.INFO, logger="cadence.mailboxes")
    token = sqlite_cli.home / "rt.txt"
    token.write_text(account.refresh_token, encoding="utf-8")
    sqlite_cli.ok("mailbox", "add", "--provider", "gmail", "--address", REP, "--owner", REP,
                  "--refresh-token-file", str(token))
    start_campaign(sqlite_cli)
    client_id = server.client_id
    sqlite_cli.setenv("CADENCE_GOOGLE_CLIENT_ID", None)
    for minute in ("00", "00", "01", "02"):  # the serve loop's ticks: one line, not one per tick
        result = sqlite_cli("worker", "--once", "--now", f"2026-12-01T09:{minute}:00Z")
        assert result.code == 0 and "Traceback" not in result.err
    [box] = boxes(sqlite_cli)
    assert box["health"] == "misconfigured" and "CADENCE_GOOGLE_CLIENT_ID" in box["reason"]
    table = sqlite_cli.ok("mailbox", "list")
    assert "misconfigured (CADENCE_GOOGLE_CLIENT_ID is not set" in table
    said = mailbox_lines(caplog)
    assert [r.levelname for r in said] == ["WARNING"] and not any(r.exc_info for r in caplog.records)
    assert "misconfigured" in said[0].getMessage() and "trying again in" in said[0].getMessage()
    assert server.outbox == []

    sqlite_cli.setenv("CADENCE_GOOGLE_CLIENT_ID", client_id)
    caplog.clear()
    sqlite_cli.ok("worker", "--once", "--now", "2026-12-01T10:00:00Z")  # after the back-off
    assert [b["health"] for b in boxes(sqlite_cli)] == ["connected"]
    assert [r.getMessage() for r in mailbox_lines(caplog)] == [f"mailbox {REP} works again (was misconfigured)"]
    sqlite_cli.ok("worker", "--once", "--now", "2026-12-01T10:01:00Z")
    assert [r.recipients[0] for r in server.outbox] == ["ada@prospect.example"]


def test_an_outlook_mailbox_without_the_client_id_is_misconfigured(sqlite_cli, outlook, caplog):
    identity, graph, tls = outlook
    token = sqlite_cli.home / "rt.txt"
    token.write_text(outlook_refresh_token(identity, tls), encoding="utf-8")
    sqlite_cli.ok("mailbox", "add", "--provider", "outlook", "--address", REP, "--owner", REP,
                  "--refresh-token-file", str(token))
    sqlite_cli.setenv("CADENCE_MS_CLIENT_ID", None)
    for minute in ("00", "01"):
        assert "Traceback" not in sqlite_cli("worker", "--once", "--now", f"2026-12-01T09:{minute}:00Z").err
    [box] = boxes(sqlite_cli)
    assert (box["health"], box["reason"].split(" ")[0]) == ("misconfigured", "CADENCE_MS_CLIENT_ID")
    assert len(mailbox_lines(caplog)) == 1


def test_a_maildir_whose_folder_became_unusable_is_misconfigured(sqlite_cli, caplog):
    sqlite_cli.ok("init")
    sqlite_cli.ok("rep", "add", "--email", REP)
    root = sqlite_cli.home / "box"
    sqlite_cli.ok("mailbox", "add", "--provider", "maildir", "--address", REP, "--owner", REP, "--path", str(root))
    import shutil

    shutil.rmtree(root)
    root.write_text("now a file", encoding="utf-8")
    for minute in ("00", "01"):
        assert "Traceback" not in sqlite_cli("worker", "--once", "--now", f"2026-12-01T09:{minute}:00Z").err
    [box] = boxes(sqlite_cli)
    assert box["health"] == "misconfigured" and str(root) in box["reason"]
    assert len(mailbox_lines(caplog)) == 1
