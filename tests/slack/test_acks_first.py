"""Acknowledge first, work after: which Slack requests `/slack/events` answers before bolt
dispatches them, when that work may start (`bot.http.AcksFirst`), and that stopping the server
still does the work it acknowledged."""
from __future__ import annotations

from tests.support.slack import text_of


def test_only_requests_whose_ack_is_always_empty_are_answered_before_dispatch():
    from bot.app import acked_before_dispatch

    def actions(*ids):
        return {"type": "block_actions", "actions": [{"action_id": i} for i in ids]}

    assert acked_before_dispatch({"command": "/cadence", "text": "status"})
    assert acked_before_dispatch(actions("task_skip"))
    assert acked_before_dispatch(actions("task_send", "task_open"))
    assert acked_before_dispatch({"type": "event_callback", "event": {"type": "app_home_opened"}})
    # bolt answers these itself: with errors, a challenge, or as unhandled
    assert not acked_before_dispatch({"command": "/other"})
    assert not acked_before_dispatch(actions("task_skip", "somebody_elses_button"))
    assert not acked_before_dispatch(actions())
    assert not acked_before_dispatch({"type": "block_actions", "actions": "task_skip"})
    assert not acked_before_dispatch({"type": "view_submission", "view": {"callback_id": "task_edit_modal"}})
    assert not acked_before_dispatch({"type": "url_verification", "challenge": "abc"})
    assert not acked_before_dispatch({"type": "event_callback", "event": {"type": "message"}})
    assert not acked_before_dispatch({"type": "event_callback", "event": "app_home_opened"})
    assert not acked_before_dispatch({"ssl_check": "1"})
    assert not acked_before_dispatch("command=/cadence")


class _Time:
    """A monotonic clock that moves only when slept on; `during_sleep` runs at each sleep."""

    def __init__(self, at: float):
        self.at, self.slept, self.during_sleep = at, [], None

    def monotonic(self) -> float:
        return self.at

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.at += seconds
        if self.during_sleep:
            self.during_sleep()


def test_work_after_an_ack_waits_for_a_pause_in_requests_and_never_longer_than_its_bound():
    from bot.http import AcksFirst

    t = _Time(100.0)
    turns = AcksFirst(quiet=0.25, longest=1.0, monotonic=t.monotonic, sleep=t.sleep)  # exact in binary
    turns.wait_turn(acked_at=99.0)  # nothing came in yet: no wait
    assert t.slept == []

    acked = turns.touch()
    t.at += 0.125
    turns.wait_turn(acked)  # waits out the quiet time after the last request
    assert t.slept == [0.125] and t.at == 100.25

    t.slept.clear()
    acked = turns.touch()
    t.during_sleep = turns.touch  # a request comes in during every wait: steady traffic
    turns.wait_turn(acked)
    assert t.at - acked == 1.0 and t.slept == [0.25] * 4  # then it goes ahead anyway

    t.slept.clear()
    turns.touch()
    turns.stopping = True  # the server stops: what was acknowledged is done without waiting
    turns.wait_turn(turns.touch())
    assert t.slept == []


def test_commands_acknowledged_before_the_server_stops_are_all_answered(served):
    """Ten commands acked (an empty 200 each), then at once the drain of a stopping server: it
    dispatches every one (the last ones are still waiting for a pause) and waits for its answer."""
    from bot.http import slack_drain

    hooks = []
    for _ in range(10):
        response, hook = served.command("URITA", "help")
        assert (response.status_code, response.text) == (200, "")
        hooks.append(hook)
    slack_drain(served.routes)
    assert all(len(served.hooks(hook)) == 1 and "/cadence status" in text_of(served.hooks(hook)[0])
               for hook in hooks)


def test_a_command_bolt_refuses_after_its_ack_tells_the_user_why(served, fake_slack):
    """Before the early ack, bolt's refusal (here: auth.test failing, Cadence no longer installed)
    was the answer Slack showed; after an empty ack it must reach the user on the response URL,
    not only the log."""
    from bot.http import slack_drain

    fake_slack.fail_next("auth.test", "invalid_auth")
    response, hook = served.command("URITA", "help")
    assert (response.status_code, response.text) == (200, "")
    slack_drain(served.routes)
    answers = served.hooks(hook)
    assert len(answers) == 1 and "reinstall this app" in text_of(answers[0])
    assert answers[0].get("response_type") == "ephemeral"
