"""Slack's v0 request signatures on `cadence serve`'s /slack/events, over real HTTP."""
from __future__ import annotations

import time

import pytest

from tests.support.slack import SIGNING_SECRET, make_app, sign, text_of


def _nothing_happened(served, hook: str, wait: float = 0.2) -> None:
    time.sleep(wait)  # the bot works after acknowledging: give it the chance to (wrongly) act
    assert served.hooks(hook) == []
    assert served.fake.calls_to("users.info") == []


def test_a_correctly_signed_command_is_answered(served):
    response, hook = served.command("URITA", "help")
    assert response.status_code == 200
    assert "/cadence status" in text_of(served.hook(hook))


@pytest.mark.parametrize("case", ["no headers", "no timestamp", "no signature", "stale timestamp",
                                  "future timestamp", "changed byte", "v1 prefix", "short signature",
                                  "long signature", "wrong secret", "timestamp not a number", "non-ascii",
                                  "400-digit timestamp", "negative timestamp", "arabic-indic digits",
                                  "float timestamp", "timestamp with a plus", "two timestamps"])
def test_bad_signatures_get_401_and_do_nothing(served, case):
    hook_url = served.fake.response_url()
    body = served.command_body("URITA", "pause Flow", hook_url)
    now = str(int(time.time()))
    good = sign(SIGNING_SECRET, now, body)
    kwargs: dict = {}
    if case == "no headers":
        kwargs = {"timestamp": "<omit>", "signature": "<omit>"}
    elif case == "no timestamp":
        kwargs = {"timestamp": "<omit>", "signature": good}
    elif case == "no signature":
        kwargs = {"timestamp": now, "signature": "<omit>"}
    elif case == "stale timestamp":
        old = str(int(time.time()) - 6 * 60)
        kwargs = {"timestamp": old, "signature": sign(SIGNING_SECRET, old, body)}
    elif case == "future timestamp":
        ahead = str(int(time.time()) + 6 * 60)
        kwargs = {"timestamp": ahead, "signature": sign(SIGNING_SECRET, ahead, body)}
    elif case == "changed byte":
        body = body.replace(b"pause", b"pausE")
        kwargs = {"timestamp": now, "signature": good}
    elif case == "v1 prefix":
        kwargs = {"timestamp": now, "signature": "v1=" + good[3:]}
    elif case == "short signature":
        kwargs = {"timestamp": now, "signature": good[:-2]}
    elif case == "long signature":
        kwargs = {"timestamp": now, "signature": good + "00"}
    elif case == "wrong secret":
        kwargs = {"timestamp": now, "signature": sign("not-the-secret", now, body)}
    elif case == "timestamp not a number":
        kwargs = {"timestamp": now + "x", "signature": sign(SIGNING_SECRET, now + "x", body)}
    elif case == "400-digit timestamp":  # once an OverflowError and a 500 with a traceback
        huge = "9" * 400
        kwargs = {"timestamp": huge, "signature": sign(SIGNING_SECRET, huge, body)}
    elif case == "negative timestamp":
        kwargs = {"timestamp": "-" + now, "signature": sign(SIGNING_SECRET, "-" + now, body)}
    elif case == "arabic-indic digits":  # str.isdigit() and int() accept these
        eastern = now.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
        kwargs = {"timestamp": eastern.encode(), "signature": sign(SIGNING_SECRET, now, body)}
    elif case == "float timestamp":
        kwargs = {"timestamp": now + ".5", "signature": sign(SIGNING_SECRET, now + ".5", body)}
    elif case == "timestamp with a plus":  # int() takes it
        kwargs = {"timestamp": "+" + now, "signature": sign(SIGNING_SECRET, "+" + now, body)}
    elif case == "two timestamps":
        kwargs = {"timestamp": f"{now}, {now}", "signature": sign(SIGNING_SECRET, now, body)}
    elif case == "non-ascii":
        kwargs = {"timestamp": now, "signature": ("v0=" + "é" * 64).encode("latin-1")}
    response = served.post(body, **kwargs)
    assert response.status_code == 401, (case, response.status_code, response.text)
    _nothing_happened(served, hook_url.rsplit("/", 1)[1])
    with served.app.db.session() as session:
        from store.models import Campaign

        assert {c.state for c in session.query(Campaign)} == {"sending"}


def test_a_replayed_request_inside_the_window_acts_once(served):
    hook_url = served.fake.response_url()
    body = served.command_body("URITA", "pause Flow", hook_url)
    now = str(int(time.time()))
    signature = sign(SIGNING_SECRET, now, body)
    first = served.post(body, timestamp=now, signature=signature)
    replay = served.post(body, timestamp=now, signature=signature)
    assert first.status_code == 200 and replay.status_code == 200
    hook = hook_url.rsplit("/", 1)[1]
    assert "is now paused" in text_of(served.hook(hook))
    time.sleep(0.2)
    assert len(served.hooks(hook)) == 1  # a second pause would have answered "cannot be paused"
    # The same command signed anew is a new request and is handled.
    again = served.post(body, timestamp=str(int(now) + 1))
    assert again.status_code == 200
    assert served.fake.wait_for(lambda: len(served.hooks(hook)) == 2)
    assert "cannot be paused" in text_of(served.hooks(hook)[1])


def test_a_retried_event_is_handled_once(served):
    event = {"type": "app_home_opened", "user": "URITA", "channel": "DURITA", "tab": "home",
             "event_ts": f"{time.time():.6f}"}
    assert served.event(event, event_id="Ev0RETRY").status_code == 200
    # Slack's retry is signed again (new timestamp) but keeps the event id.
    assert served.event(event, event_id="Ev0RETRY").status_code == 200
    assert served.fake.wait_for(lambda: served.fake.calls_to("views.publish"))
    time.sleep(0.2)
    assert len(served.fake.calls_to("views.publish")) == 1


def test_no_slack_route_without_a_signing_secret(world, fake_slack):
    from bot.http import slack_routes_for

    assert slack_routes_for(make_app(world, fake_slack, SLACK_SIGNING_SECRET="")) == []
    assert slack_routes_for(make_app(world, fake_slack, SLACK_BOT_TOKEN="")) == []
    assert len(slack_routes_for(make_app(world, fake_slack))) == 1
