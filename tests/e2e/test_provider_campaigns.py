"""A campaign through the real CLI on a Gmail mailbox and on an Outlook mailbox.

The connectors talk to local fake Gmail / Graph / Microsoft identity servers over real HTTP(S);
the mailboxes are connected the way an operator does it (refresh-token file, signed connect link
through `cadence serve`'s OAuth routes).
"""
from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import httpx
from starlette.testclient import TestClient
from sqlalchemy import select

from tests.support.e2e import REP
CAMPAIGN = """\
name: Providers
timezone: UTC
steps:
  - day: 1
    action: auto
    send: at_time
    time: "09:00"
    subject: "Hello {{ first_name }}"
    body: "<p>Hi {{ first_name }}, one question.</p>"
  - day: 2
    action: task
    send: at_time
    time: "09:00"
    subject: "Idea for {{ company }}"
    body: "Hi {{ first_name }}, an idea."
  - day: 3
    action: auto
    send: same_as_previous
    thread: true
    body: "Bumping this, {{ first_name }}."
"""
CONTACTS = "email,first_name,company\nada@prospect.example,Ada,Engines\nbob@prospect.example,Bob,Builders\n"
DAY1, DAY2, DAY3 = "2026-12-01T09:00:00Z", "2026-12-02T09:00:00Z", "2026-12-03T12:00:00Z"


def start_campaign(cli) -> None:
    (cli.home / "c.yml").write_text(CAMPAIGN, encoding="utf-8")
    (cli.home / "contacts.csv").write_text(CONTACTS, encoding="utf-8")
    cli.ok("campaign", "import", str(cli.home / "c.yml"))
    cli.ok("contacts", "import", str(cli.home / "contacts.csv"))
    cli.ok("enroll", "Providers", "--all", "--mailbox", REP, now="2026-12-01T08:00:00Z")
    cli.ok("prepare", "Providers", now="2026-12-01T08:00:00Z")
    cli.ok("send", "Providers", now="2026-12-01T08:00:00Z")


def status(cli, now: str) -> dict:
    return json.loads(cli.ok("status", "Providers", "--json", now=now))


def test_a_campaign_on_a_gmail_mailbox(cli, gmail):
    server, account = gmail
    cli.ok("rep", "add", "--email", REP, "--name", "Rita Rep")
    token_file = cli.home / "refresh-token.txt"
    token_file.write_text(account.refresh_token + "\n", encoding="utf-8")
    cli.ok("mailbox", "add", "--provider", "gmail", "--address", REP, "--owner", REP,
           "--refresh-token-file", str(token_file))
    _assert_credentials_encrypted(cli, account.refresh_token)
    start_campaign(cli)

    cli.ok("worker", "--once", "--now", DAY1)
    first = [r for r in server.outbox if r.subject.startswith("Hello")]
    assert sorted(r.recipients[0] for r in first) == ["ada@prospect.example", "bob@prospect.example"]

    cli.ok("worker", "--once", "--now", DAY2)
    drafts = {d.to_addresses[0]: d for d in account.folder("drafts")}
    assert set(drafts) == {"ada@prospect.example", "bob@prospect.example"}
    assert drafts["ada@prospect.example"].subject == "Idea for Engines"
    tasks = {t["contact"]: t for t in json.loads(cli.ok("tasks", "--json"))}
    assert tasks["ada@prospect.example"]["draft_link"].startswith("https://mail.google.com/")

    # Ada: the rep sends the draft from Gmail's web client (new Message-ID). Bob replies first.
    ada_draft_id = _gmail_draft_id(account, drafts["ada@prospect.example"])
    account.user_sends_draft(ada_draft_id, new_subject="Idea for Engines (v2)")
    bob_first = next(r for r in first if r.recipients[0] == "bob@prospect.example")
    bob_stored = account.message_by_message_id(bob_first.message_id)
    account.deliver(from_address="bob@prospect.example", subject="Re: Hello Bob", body="Call me tomorrow.",
                    thread_id=bob_stored.thread_id, in_reply_to=bob_first.message_id)
    cli.ok("worker", "--once", "--now", "2026-12-02T12:00:00Z")
    kpis = status(cli, "2026-12-02T12:00:00Z")["delivery"]
    assert kpis["tasks_done"] == 1 and kpis["replies"] == 1 and kpis["tasks_open"] == 0

    cli.ok("worker", "--once", "--now", DAY3)
    follow_ups = [r for r in server.outbox if r.subject.startswith("Re:")]
    assert [r.recipients[0] for r in follow_ups] == ["ada@prospect.example"]  # Bob replied: nothing more
    sent = account.message_by_message_id(follow_ups[0].message_id)
    ada_task_sent = next(m for m in account.folder("sent") if m.subject == "Idea for Engines (v2)")
    assert sent.thread_id == ada_task_sent.thread_id
    assert sent.in_reply_to == ada_task_sent.message_id
    assert sent.subject == "Re: Idea for Engines (v2)"  # Gmail threads only when the subject matches
    assert len([r for r in server.outbox if r.recipients[0] == "ada@prospect.example"]) == 3
    assert status(cli, DAY3)["state"] == "finished"


def _gmail_draft_id(account, stored) -> str:
    for draft_id, message_id in account.drafts.items():
        if message_id == stored.id:
            return draft_id
    raise AssertionError("no draft for that message")


def _assert_credentials_encrypted(cli, secret: str) -> None:
    from cadence.app import App
    from store.models import MailboxRow

    app = App.from_settings()
    with app.db.session() as session:
        row = session.scalar(select(MailboxRow))
    assert row.credentials and secret.encode() not in row.credentials
    assert app.decrypt(row.credentials)["refresh_token"] == secret


def test_a_revoked_gmail_token_disconnects_the_mailbox_and_messages_wait(cli, gmail):
    server, account = gmail
    cli.ok("rep", "add", "--email", REP)
    token_file = cli.home / "t.txt"
    token_file.write_text(account.refresh_token, encoding="utf-8")
    cli.ok("mailbox", "add", "--provider", "gmail", "--address", REP, "--owner", REP,
           "--refresh-token-file", str(token_file))
    start_campaign(cli)
    account.revoke()
    cli.ok("worker", "--once", "--now", DAY1)
    assert server.outbox == []
    boxes = json.loads(cli.ok("mailbox", "list", "--json"))
    assert boxes[0]["health"] == "disconnected" and boxes[0]["reason"]
    assert status(cli, DAY1)["next_due"] == "2026-12-01T09:00:00Z"  # waiting, not failed, not lost
    token_file.write_text(account.grant(), encoding="utf-8")  # the rep consents again: a new refresh token
    cli.ok("mailbox", "add", "--provider", "gmail", "--address", REP, "--owner", REP,
           "--refresh-token-file", str(token_file))
    cli.ok("worker", "--once", "--now", "2026-12-01T10:00:00Z")
    assert len(server.outbox) == 2


def test_connecting_gmail_through_a_signed_link_on_the_server(cli, gmail):
    server, account = gmail
    cli.ok("rep", "add", "--email", REP)
    link = cli.ok("mailbox", "connect", "gmail", "--owner", REP, "--link").split()[-1]
    from cadence.app import App
    from cadence.connect import oauth_routes
    from cadence.http import create_http_app

    app = App.from_settings()
    web = create_http_app(app, extra_routes=oauth_routes(app))
    with TestClient(web, base_url="https://cadence.test", follow_redirects=False) as client:
        forged = client.get(link.replace("/start?t=", "/start?t=x"))
        assert forged.status_code == 403
        start = client.get(link)
        assert start.status_code == 302
        consent = httpx.get(start.headers["location"], follow_redirects=False)  # Google's consent page
        callback = consent.headers["location"]
        assert callback.startswith("https://cadence.test/oauth/gmail/callback?")
        done = client.get(callback)
        assert done.status_code == 200 and REP in done.text
        assert client.get(callback).status_code == 400  # a replayed answer finds no pending sign-in
    boxes = json.loads(cli.ok("mailbox", "list", "--json"))
    assert [(b["address"], b["provider"], b["health"]) for b in boxes] == [(REP, "gmail", "connected")]


def test_a_campaign_on_an_outlook_mailbox_connected_through_the_server(cli, outlook):
    identity, graph = outlook
    cli.ok("rep", "add", "--email", REP)
    link = cli.ok("mailbox", "connect", "outlook", "--owner", REP, "--link").split()[-1]
    from cadence.app import App
    from cadence.connect import oauth_routes
    from cadence.http import create_http_app

    app = App.from_settings()
    web = create_http_app(app, extra_routes=oauth_routes(app))
    with TestClient(web, base_url="https://cadence.test", follow_redirects=False) as client:
        start = client.get(link)
        assert start.status_code == 302 and "code_challenge" in start.headers["location"]
        identity.sign_in(REP)
        assert "response_mode=query" in start.headers["location"]  # a GET carries the browser's cookie
        answer = identity.complete_sign_in(start.headers["location"])  # the redirect's query
        tampered = client.get("/oauth/outlook/callback", params={**answer, "state": "not-ours"})
        assert tampered.status_code == 400
        done = client.get("/oauth/outlook/callback", params=answer)
        assert done.status_code == 200, done.text
    start_campaign(cli)

    cli.ok("worker", "--once", "--now", DAY1)
    sent = graph.sent_by(REP)
    assert len(sent) == 2
    cli.ok("worker", "--once", "--now", DAY2)
    drafts = {m.to[0][1]: m for m in graph.messages(REP, "drafts")}
    assert set(drafts) == {"ada@prospect.example", "bob@prospect.example"}
    tasks = {t["contact"]: t for t in json.loads(cli.ok("tasks", "--json"))}
    assert tasks["ada@prospect.example"]["draft_link"]
    graph.user_sends_draft(REP, drafts["ada@prospect.example"].id)
    bob_first = next(m for m in graph.messages(REP, "sentitems") if m.to[0][1] == "bob@prospect.example")
    graph.deliver(REP, from_address="bob@prospect.example", subject="RE: Hello Bob", body_text="Call me.",
                  in_reply_to_id=bob_first.id)
    cli.ok("worker", "--once", "--now", "2026-12-02T12:00:00Z")
    kpis = status(cli, "2026-12-02T12:00:00Z")["delivery"]
    assert kpis["tasks_done"] == 1 and kpis["replies"] == 1

    cli.ok("worker", "--once", "--now", DAY3)
    ada = [m for m in graph.messages(REP, "sentitems") if m.to[0][1] == "ada@prospect.example"]
    assert len(ada) == 3
    follow_up = max(ada, key=lambda m: m.seq)
    task_sent = next(m for m in ada if m.subject == "Idea for Engines")
    assert follow_up.conversation_id == task_sent.conversation_id
    assert follow_up.in_reply_to == task_sent.internet_message_id
    assert len([m for m in graph.messages(REP, "sentitems") if m.to[0][1] == "bob@prospect.example"]) == 1
    assert status(cli, DAY3)["state"] == "finished"
    assert parse_qs(urlsplit(link).query)["t"]
