"""DMs to reps from the event log: drafts ready, replies, bounces, stale drafts, disconnections."""
from __future__ import annotations

import threading

from sqlalchemy import select, update

from bot.notify import CURSOR, send_notifications
from store.mailboxes import mark_disconnected
from connectors.maildir import MaildirPeople
from store.models import Cursor, MailboxRow, Message, Rep
from tests.support.slack import NOW, make_app, text_of


def posts(fake, channel: str | None = None) -> list[dict]:
    return [p for p in fake.calls_to("chat.postMessage") if channel is None or p["channel"] == channel]


def step_one_message_id(app, address: str) -> str:
    with app.db.session() as session:
        return session.scalar(select(Message.message_id).where(Message.to_address == address, Message.position == 1))


def test_drafts_ready_are_dmed_once_with_their_buttons(app, fake_slack):
    assert send_notifications(app) == 4
    rita, otto = posts(fake_slack, "DURITA"), posts(fake_slack, "DUOTTO")
    assert len(rita) == 3 and len(otto) == 1
    assert {c["users"] for c in fake_slack.calls_to("conversations.open")} == {"URITA", "UOTTO"}
    body = text_of(rita)
    for name in ("Nora", "Leo", "Taro"):
        assert f"*{name}*" in body
    assert "A draft is ready" in body and "task_send" in body and "task_edit" in body
    # their App Homes follow the new queue
    assert {c["user_id"] for c in fake_slack.calls_to("views.publish")} == {"URITA", "UOTTO"}

    fake_slack.clear()
    assert send_notifications(app) == 0
    assert posts(fake_slack) == []
    with app.db.session() as session:
        assert int(session.get(Cursor, CURSOR).value) > 0


def test_replies_bounces_and_stale_drafts(app, world, fake_slack):
    send_notifications(app)
    fake_slack.clear()
    people = MaildirPeople(world.maildir("rita"))
    people.contact_replies(step_one_message_id(app, "ldn@prospect.example"), from_address="ldn@prospect.example",
                           body="Yes, call me on Tuesday.\nBest, Leo")
    people.bounce(step_one_message_id(app, "tyo@prospect.example"), recipient="tyo@prospect.example")
    world.run("worker", "--once", "--now", "2026-12-02T16:00:00Z")

    assert send_notifications(make_app(world, fake_slack)) == 4
    body = text_of(posts(fake_slack, "DURITA"))
    assert "replied" in body and "Leo (LondonCo)" in body and "Yes, call me on Tuesday." in body
    assert "The email to *tyo@prospect.example* bounced" in body and "Flow" in body
    stale = [p for p in posts(fake_slack, "DURITA") if "is stale" in p["text"]]
    assert len(stale) == 2  # Leo replied first, Taro bounced: both drafts are stale
    assert posts(fake_slack, "DUOTTO") == []


def test_a_disconnected_mailbox_is_told_to_its_owner(app, fake_slack):
    send_notifications(app)
    fake_slack.clear()
    with app.db.session() as session:
        box = session.scalar(select(MailboxRow).where(MailboxRow.address == "otto@acme.example"))
        assert mark_disconnected(session, box, "invalid_grant: token revoked", NOW)
    assert send_notifications(app) == 1
    [post] = posts(fake_slack, "DUOTTO")
    assert "otto@acme.example" in post["text"] and "token revoked" in post["text"]


def test_a_rep_without_slack_id_is_found_by_email(app, fake_slack):
    with app.db.session() as session:
        session.execute(update(Rep).where(Rep.email == "otto@acme.example").values(slack_id=None))
    assert send_notifications(app) == 4
    assert fake_slack.calls_to("users.lookupByEmail") == [{"email": "otto@acme.example"}]
    assert len(posts(fake_slack, "DUOTTO")) == 1
    with app.db.session() as session:
        assert session.scalar(select(Rep.slack_id).where(Rep.email == "otto@acme.example")) == "UOTTO"


def test_slack_saying_later_keeps_the_event_for_the_next_run(app, fake_slack):
    fake_slack.fail_next("chat.postMessage", "ratelimited", retry_after=30)
    assert send_notifications(app) == 0
    with app.db.session() as session:
        before = session.get(Cursor, CURSOR).value
    fake_slack.fail_next("chat.postMessage", "internal_error", status=500)
    assert send_notifications(app) == 0
    assert send_notifications(app) == 4
    texts = [p["text"] for p in posts(fake_slack)]
    assert len(texts) == 6  # 2 refused attempts of the first one, then the 4 posts
    assert texts[0] == texts[1] == texts[2] and len(set(texts[2:])) == 4  # none posted twice
    with app.db.session() as session:
        assert session.get(Cursor, CURSOR).value != before


def test_an_unreachable_recipient_is_dropped_not_retried(app, fake_slack):
    fake_slack.fail_next("conversations.open", "user_not_found")
    assert send_notifications(app) == 3  # one of the four is dropped
    assert send_notifications(app) == 0


def test_two_notifiers_at_once_never_post_twice(app, world, fake_slack):
    other = make_app(world, fake_slack)
    results: list[int] = []
    threads = [threading.Thread(target=lambda a=a: results.append(send_notifications(a))) for a in (app, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results) == 4
    texts = [p["text"] for p in posts(fake_slack)]
    assert len(texts) == len(set(texts)) == 4


def test_nothing_without_a_bot_token(world, fake_slack):
    assert send_notifications(make_app(world, fake_slack, SLACK_BOT_TOKEN="")) == 0
    assert fake_slack.calls == []
