"""Campaign YAML → CampaignSpec (core/definition.py): what is read, and each refusal's file, line and field."""
from __future__ import annotations

from datetime import time

import pytest

from core.campaign import SendWindow
from core.definition import DefinitionError, parse_campaign
from core.vocabulary import SendOption, StepAction

FIRST_STEP = """\
  - day: 1
    action: auto
    send: at_time
    time: "09:30"
    subject: "Hello {{ first_name }}"
    body: "Hi {{ first_name }}"
"""


def parse(text: str, files: dict[str, str] | None = None):
    def read_file(path: str) -> str:
        if files is None or path not in files:
            raise FileNotFoundError(2, "No such file or directory", path)
        return files[path]

    return parse_campaign(text, source="spring.yml", read_file=read_file)


def test_a_full_campaign_is_read_into_its_spec():
    spec = parse("""\
name: "  Spring  "
timezone: America/New_York
send_window: {days: [mon, tue, fri], start: "08:00", end: "18:00", skip_holidays: true}
daily_limit: 40
track: {opens: false}
exclusions: {active_elsewhere: false, do_not_contact_domains: [rival.example, "@other.example"]}
steps:
  - day: 1
    action: auto
    send: at_time
    time: 09:30
    subject: "Hello {{ first_name }}"
    body: "Hi {{ first_name }}"
  - day: 3
    action: task
    send: same_as_previous
    thread: true
    body_file: step2.html
""", files={"step2.html": "<p>Second, {{ first_name }}</p>"})
    assert spec.name == "Spring"
    assert spec.timezone == "America/New_York"
    assert spec.send_window == SendWindow(frozenset({0, 1, 4}), time(8, 0), time(18, 0), True)
    assert spec.daily_limit == 40
    assert (spec.track_opens, spec.track_clicks) == (False, True)
    assert spec.exclusions == {"active_elsewhere": False, "do_not_contact_domains": ["rival.example", "@other.example"]}
    first, second = spec.steps
    assert (first.position, first.day, first.action, first.send, first.time, first.thread) == (
        1, 1, StepAction.AUTO, SendOption.AT_TIME, time(9, 30), False)  # unquoted 09:30 stays a time, not 570
    assert first.subject == "Hello {{ first_name }}"
    assert (second.position, second.day, second.action, second.send, second.subject, second.thread) == (
        2, 3, StepAction.TASK, SendOption.SAME_AS_PREVIOUS, None, True)
    assert second.body == "<p>Second, {{ first_name }}</p>"


@pytest.mark.parametrize(("options", "expected"), [
    ("", (None, None, True, True, 1)),
    ("send_window: {days: [sat, sun]}\n", (None, SendWindow(frozenset({5, 6})), True, True, 1)),
    ("track: {clicks: false, opens: true}\n", (None, None, True, False, 1)),
    ("daily_limit: 1\n", (1, None, True, True, 1)),
])
def test_optional_settings_take_their_defaults(options, expected):
    spec = parse(f"name: Spring\n{options}steps:\n{FIRST_STEP}")
    assert (spec.daily_limit, spec.send_window, spec.track_opens, spec.track_clicks, len(spec.steps)) == expected


def test_a_first_step_chosen_at_launch_asks_for_a_send_time():
    spec = parse("name: Spring\nsteps:\n  - day: 1\n    send: choose_at_launch\n    subject: Hi\n    body: Hello\n")
    assert spec.steps[0].send is SendOption.CHOOSE_AT_LAUNCH
    assert spec.asks_for_send_time
    assert spec.steps[0].action is StepAction.AUTO  # the default action


STEP2 = "  - day: {day}\n    send: {send}\n{extra}"


@pytest.mark.parametrize(("text", "line", "field", "words"), [
    ("name: Spring\nsteps: [\n", 3, "yaml", "not valid YAML"),
    ("- one\n- two\n", 1, "campaign", "must be a mapping"),
    ("steps: []\n", 1, "name", "non-empty name"),
    ("name: Spring\nsend_window: {days: [mon]}\ncolour: red\nsteps: []\n", 3, "colour", "unknown option"),
    ("name: Spring\ntimezone: Mars/Olympus\nsteps: []\n", 2, "timezone", "not an IANA time zone"),
    ("name: Spring\ndaily_limit: 0\nsteps: []\n", 2, "daily_limit", "at least 1"),
    ("name: Spring\ndaily_limit: true\nsteps: []\n", 2, "daily_limit", "whole number"),
    ("name: Spring\ntrack: {opens: sometimes}\nsteps: []\n", 2, "track.opens", "true or false"),
    ("name: Spring\nexclusions: {replied: false}\nsteps: []\n", 2, "exclusions.replied", "unknown option"),
    ("name: Spring\nexclusions:\n  do_not_contact_domains: [not a domain]\nsteps: []\n", 3,
     "exclusions.do_not_contact_domains", "list of domains"),
    ("name: Spring\nsend_window:\n  days: [mon, funday]\nsteps: []\n", 3, "send_window.days", "not a weekday"),
    ("name: Spring\nsend_window:\n  days: [tues]\nsteps: []\n", 3, "send_window.days", "not a weekday"),
    ("name: Spring\nsend_window:\n  days: [Tuesday]\nsteps: []\n", 3, "send_window.days", "not a weekday"),
    ("name: Spring\nsend_window:\n  days: [7]\nsteps: []\n", 3, "send_window.days", "not a weekday"),
    ("name: Spring\nsend_window:\n  start: \"18:00\"\n  end: \"08:00\"\nsteps: []\n", 4, "send_window.end",
     "later than start"),
    ("name: Spring\nsend_window:\n  start: \"8am\"\nsteps: []\n", 3, "send_window.start", "HH:MM"),
    ("name: Spring\nsteps: {day: 1}\n", 2, "steps", "list of steps"),
    ("name: Spring\nsteps:\n  - day: 0\n    send: at_time\n", 3, "steps[1].day", "must be a whole number"),
    ("name: Spring\nsteps:\n  - day: 1\n    send: whenever\n    subject: a\n    body: b\n", 4, "steps[1].send",
     "not one of choose_at_launch | at_time | same_as_previous"),
    ("name: Spring\nsteps:\n  - day: 1\n    subject: a\n    body: b\n", 3, "steps[1].send", "is required"),
    ("name: Spring\nsteps:\n  - day: 1\n    send: at_time\n    time: \"24:00\"\n    subject: a\n    body: b\n", 5,
     "steps[1].time", "HH:MM"),
    ("name: Spring\nsteps:\n  - day: 1\n    send: same_as_previous\n    subject: a\n    body: b\n", 4,
     "steps[1].send", "needs a previous step"),
    ("name: Spring\nsteps:\n  - day: 1\n    send: choose_at_launch\n    thread: true\n    subject: a\n    body: b\n", 5,
     "steps[1].thread", "no previous email"),
    ("name: Spring\nsteps:\n  - day: 1\n    send: choose_at_launch\n    time: \"09:00\"\n    subject: a\n    body: b\n",
     5, "steps[1].time", "only used with send: at_time"),
    ("name: Spring\nsteps:\n  - day: 1\n    send: choose_at_launch\n    body: b\n", 3, "steps[1].subject",
     "required unless the step is threaded"),
    ("name: Spring\nsteps:\n  - day: 1\n    send: choose_at_launch\n    subject: a\n", 3, "steps[1].body",
     "exactly one of body and body_file"),
    ("name: Spring\nsteps:\n  - day: 1\n    send: choose_at_launch\n    subject: a\n    body_file: missing.html\n", 6,
     "steps[1].body_file", "cannot read missing.html"),
    ("name: Spring\nsteps:\n  - day: 1\n    send: choose_at_launch\n    subject: a\n    body: \"{% if %}\"\n", 6,
     "steps[1].body", "template error"),
    (f"name: Spring\nsteps:\n{FIRST_STEP}  - day: 3\n    send: choose_at_launch\n    subject: a\n    body: b\n", 10,
     "steps[2].send", "only for the first step"),
    ("name: Spring\nsteps:\n  - day: 5\n    send: choose_at_launch\n    subject: a\n    body: b\n"
     "  - day: 2\n    send: same_as_previous\n    subject: a\n    body: b\n", 7, "steps[2].day",
     "comes before the previous step's day 5"),
    ("name: Spring\nsteps:\n  - just text\n", 2, "steps[1]", "must be a mapping"),  # the line of `steps:`
])
def test_each_refusal_names_the_file_the_line_and_the_field(text, line, field, words):
    with pytest.raises(DefinitionError) as refused:
        parse(text)
    assert (refused.value.source, refused.value.line, refused.value.field) == ("spring.yml", line, field)
    assert words in refused.value.message
    assert str(refused.value).startswith(f"spring.yml, line {line}: {field}: ")
