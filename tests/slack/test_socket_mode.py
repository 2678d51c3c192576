"""Socket Mode: bolt's real SocketModeHandler against the fake Slack's WebSocket."""
from __future__ import annotations

import logging
import time

import pytest

from bot.app import drain
from bot.socket import build_socket_handler, socket_mode_hooks
from cadence.services.errors import UserError
from tests.support.slack import TEAM, make_app, text_of


def test_a_slash_command_over_socket_mode(world, fake_slack):
    app = make_app(world, fake_slack, SLACK_APP_TOKEN=fake_slack.app_token, SLACK_SIGNING_SECRET="")
    handler = build_socket_handler(app)
    try:
        handler.connect()
        [opened] = [c for c in fake_slack.calls if c.method == "apps.connections.open"]
        assert opened.token == fake_slack.app_token
        hook = fake_slack.response_url()
        envelope = fake_slack.push("slash_commands", {
            "token": "deprecated", "team_id": TEAM, "channel_id": "C0SALES", "user_id": "URITA",
            "command": "/cadence", "text": "tasks", "api_app_id": "ACADENCE", "response_url": hook,
            "trigger_id": fake_slack.trigger_id()})
        ack = fake_slack.wait_ack(envelope)
        assert ack is not None and ack["envelope_id"] == envelope
        answer = fake_slack.wait_for(lambda: [b for h, b in fake_slack.hooks if hook.endswith("/" + h)])
        assert answer and "3 open tasks" in text_of(answer[0])
    finally:
        stop(handler, fake_slack)


def stop(handler, fake_slack) -> None:
    handler.client.auto_reconnect_enabled = False
    fake_slack.close_sockets()  # the client's reader returns at once instead of at its 3 s timeout
    fake_slack.wait_for(lambda: not handler.client.is_connected())
    handler.close()
    drain(handler.app)


def test_socket_mode_needs_both_tokens(world, fake_slack):
    with pytest.raises(UserError, match="SLACK_APP_TOKEN"):
        build_socket_handler(make_app(world, fake_slack))
    with pytest.raises(UserError, match="SLACK_BOT_TOKEN"):
        build_socket_handler(make_app(world, fake_slack, SLACK_APP_TOKEN="xapp-1", SLACK_BOT_TOKEN=""))


def test_a_wrong_app_token_is_refused_by_slack(world, fake_slack):
    from slack_sdk.errors import SlackApiError

    handler = build_socket_handler(make_app(world, fake_slack, SLACK_APP_TOKEN="xapp-1-wrong"))
    try:
        with pytest.raises(SlackApiError, match="invalid_auth"):
            handler.connect()
    finally:
        handler.close()


def _home_opened(user: str) -> dict:
    return {"token": "deprecated", "team_id": TEAM, "api_app_id": "ACADENCE", "type": "event_callback",
            "event_id": f"Ev{time.time_ns()}", "event_time": int(time.time()),
            "event": {"type": "app_home_opened", "user": user, "channel": "D" + user, "tab": "home",
                      "event_ts": f"{time.time():.6f}"}}


def test_serve_runs_socket_mode_beside_http_when_the_app_token_is_set(world, fake_slack):
    assert socket_mode_hooks(make_app(world, fake_slack)) is None  # no SLACK_APP_TOKEN: HTTP only
    start, stop = socket_mode_hooks(make_app(world, fake_slack, SLACK_APP_TOKEN=fake_slack.app_token))
    start()
    try:
        envelope = fake_slack.push("events_api", _home_opened("URITA"))
        assert fake_slack.wait_ack(envelope) == {"envelope_id": envelope}
        published = fake_slack.wait_for(lambda: fake_slack.calls_to("views.publish"))
        assert published and published[0]["user_id"] == "URITA" and "*Nora*" in text_of(published[0]["view"])
    finally:
        fake_slack.close_sockets()
        stop()


def test_the_first_connection_is_retried_until_slack_answers(world, fake_slack, caplog):
    fake_slack.fail_next("apps.connections.open", "internal_error", status=500)
    fake_slack.fail_next("apps.connections.open", "service_unavailable", status=503)
    start, stop = socket_mode_hooks(make_app(world, fake_slack, SLACK_APP_TOKEN=fake_slack.app_token),
                                    first_retry=0.01)
    with caplog.at_level(logging.ERROR, logger="cadence.slack.socket"):
        start()
        try:
            envelope = fake_slack.push("events_api", _home_opened("UOTTO"))
            assert fake_slack.wait_ack(envelope) is not None
        finally:
            fake_slack.close_sockets()
            stop()
    assert len([c for c in fake_slack.calls if c.method == "apps.connections.open"]) == 3
    assert sum("could not connect" in r.message for r in caplog.records) == 2
