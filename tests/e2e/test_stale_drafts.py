"""A task draft made stale by a reply leaves the rep's Drafts in Gmail and in Outlook (issue 11
item 8), through the real CLI and the fake Gmail / Graph servers over real HTTP; where Gmail
refuses to delete it, the draft is marked stale instead. `cadence tasks --state stale` and
`cadence logs` say why.
"""
from __future__ import annotations

import json

from cadence.services.stale_drafts import STALE_MARK
from tests.support.e2e import REP, add_gmail_mailbox, connect_outlook_mailbox

CAMPAIGN = """\
name: Calls
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
"""
CONTACTS = "email,first_name,company\nada@prospect.example,Ada,Engines\nbob@prospect.example,Bob,Builders\n"
DAY1, DAY2, LATER = "2026-12-01T09:00:00Z", "2026-12-02T09:30:00Z", "2026-12-02T12:00:00Z"


def _start(cli) -> None:
    (cli.home / "c.yml").write_text(CAMPAIGN, encoding="utf-8")
    (cli.home / "contacts.csv").write_text(CONTACTS, encoding="utf-8")
    cli.ok("campaign", "import", str(cli.home / "c.yml"))
    cli.ok("contacts", "import", str(cli.home / "contacts.csv"))
    cli.ok("enroll", "Calls", "--all", "--mailbox", REP, now="2026-12-01T08:00:00Z")
    cli.ok("prepare", "Calls", now="2026-12-01T08:00:00Z")
    cli.ok("send", "Calls", now="2026-12-01T08:00:00Z")
    cli.ok("worker", "--once", "--now", DAY1)
    cli.ok("worker", "--once", "--now", DAY2)


def _said_why(cli, contact: str, how: str) -> None:
    [stale] = json.loads(cli.ok("tasks", "--state", "stale", "--json"))
    assert stale["contact"] == contact and stale["state"] == "stale" and stale["draft_link"] is None
    assert stale["reason"] == "the contact replied; its draft was withdrawn from Drafts"
    [line] = [line for line in cli.ok("logs", "Calls").splitlines() if "draft_withdrawn" in line]
    assert contact in line and how in line and "the contact replied" in line, line
    assert [t["contact"] for t in json.loads(cli.ok("tasks", "--json"))] == ["ada@prospect.example"]


def test_gmail_a_reply_withdraws_the_task_draft_and_a_draft_gmail_will_not_delete_is_marked(cli, gmail):
    server, account = gmail
    add_gmail_mailbox(cli, account)
    _start(cli)
    drafts = {d.to_addresses[0]: d for d in account.folder("drafts")}
    assert set(drafts) == {"ada@prospect.example", "bob@prospect.example"}
    bob_first = next(r for r in server.outbox if r.recipients[0] == "bob@prospect.example")
    account.deliver(from_address="bob@prospect.example", subject="Re: Hello Bob", body="Call me tomorrow.",
                    thread_id=account.message_by_message_id(bob_first.message_id).thread_id,
                    in_reply_to=bob_first.message_id)
    cli.ok("worker", "--once", "--now", LATER)
    assert [d.to_addresses[0] for d in account.folder("drafts")] == ["ada@prospect.example"]
    assert server.call_count("drafts.delete") == 1
    _said_why(cli, "bob@prospect.example", "withdrawn from the Drafts of rep@example.com")

    # Ada replies too, but Gmail refuses to delete her draft: it is marked instead, never left as it was.
    ada_first = next(r for r in server.outbox if r.recipients[0] == "ada@prospect.example")
    account.deliver(from_address="ada@prospect.example", subject="Re: Hello Ada", body="Not now.",
                    thread_id=account.message_by_message_id(ada_first.message_id).thread_id,
                    in_reply_to=ada_first.message_id)
    server.fail_next("drafts.delete", 400, reason="invalidArgument", message="Invalid draft")
    cli.ok("worker", "--once", "--now", "2026-12-02T13:00:00Z")
    [marked] = account.folder("drafts")
    assert marked.to_addresses[0] == "ada@prospect.example" and marked.subject == STALE_MARK + "Idea for Engines"
    assert "do not send it" in marked.text_body and "the contact replied" in marked.text_body
    logs = cli.ok("logs", "Calls")
    assert f"is marked '{STALE_MARK.strip()}'" in logs and "could not be deleted" in logs
    ada = next(t for t in json.loads(cli.ok("tasks", "--state", "stale", "--json"))
               if t["contact"] == "ada@prospect.example")
    assert ada["reason"] == "the contact replied; its draft is marked stale in Drafts; do not send it"
    assert ada["draft_link"].startswith("https://mail.google.com/")


def test_outlook_a_reply_withdraws_the_task_draft(cli, outlook):
    identity, graph = outlook
    connect_outlook_mailbox(cli, identity)
    _start(cli)
    drafts = {m.to[0][1]: m for m in graph.messages(REP, "drafts")}
    assert set(drafts) == {"ada@prospect.example", "bob@prospect.example"}
    bob_first = next(m for m in graph.messages(REP, "sentitems") if m.to[0][1] == "bob@prospect.example")
    graph.deliver(REP, from_address="bob@prospect.example", subject="RE: Hello Bob", body_text="Call me.",
                  in_reply_to_id=bob_first.id)
    cli.ok("worker", "--once", "--now", LATER)
    assert [m.to[0][1] for m in graph.messages(REP, "drafts")] == ["ada@prospect.example"]
    assert drafts["bob@prospect.example"].id in {m.id for m in graph.messages(REP, "deleteditems")}
    _said_why(cli, "bob@prospect.example", "withdrawn from the Drafts of rep@example.com")
    assert len(graph.sent_by(REP)) == 2  # the stale draft was never sent
