"""The email of one message: threading, quoting, tracking and one-click unsubscribe (core.compose)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from core.campaign import StepSpec
from core.compose import MAX_QUOTED_EMAILS, Tracking, compose_email, display_name, reply_subject, thread_of
from core.headers import HeaderInjection
from core.mailbox import ThreadRef
from core.tracking import sign_token, verify_token
from core.vocabulary import SendOption, StepAction

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)
KEY = b"k" * 32
TRACKING = Tracking(KEY, "https://cadence.example/", clicks=True, opens=True)
BERLIN = ZoneInfo("Europe/Berlin")


@dataclass
class Row:
    """Stands for a stored message (the attributes compose reads)."""

    id: int = 41
    message_id: str = "<m2@acme.example>"
    action: str = StepAction.AUTO.value
    to_address: str = "ada@example.com"
    subject: str | None = "Quick idea"
    html: str | None = '<html><body><p>Hi <a href="https://acme.example/offer">offer</a></p></body></html>'
    text: str | None = "Hi offer"
    links: list | None = None
    provider_message_id: str | None = None
    provider_thread_id: str | None = None
    sent_at: datetime | None = None
    position: int = 1


def step(position: int = 2, *, thread: bool = False, subject: str | None = "Quick idea",
         action: StepAction = StepAction.AUTO) -> StepSpec:
    return StepSpec(position=position, day=position, action=action, send=SendOption.SAME_AS_PREVIOUS, body="b",
                    subject=subject, thread=thread)


def compose(message: Row, earlier=(), *, the_step=None, tracking=TRACKING, **names):
    return compose_email(message, step=the_step or step(), earlier=list(earlier), from_address="rep@acme.example",
                         from_name=names.get("from_name", "Rita Rep"), to_name=names.get("to_name", "Ada Lovelace"),
                         zone=BERLIN, now=NOW, tracking=tracking)


def test_reply_subjects_get_one_re_prefix():
    assert reply_subject("Quick idea") == "Re: Quick idea"
    assert reply_subject("RE: Quick idea") == "RE: Quick idea"
    assert reply_subject("") == "Re: "


def test_a_thread_hangs_under_the_last_email_that_went_out_and_references_all():
    first = Row(id=1, message_id="<m0@a>", provider_message_id="g0", provider_thread_id="t")
    second = Row(id=2, message_id="<m1@a>", provider_message_id="g1", provider_thread_id="t")
    assert thread_of([]) is None
    assert thread_of([first, second]) == ThreadRef(message_id="<m1@a>", references=("<m0@a>",),
                                                   provider_message_id="g1", provider_thread_id="t")
    assert thread_of([first]).references == ()


def test_an_automatic_email_carries_tracked_links_the_pixel_and_one_click_unsubscribe():
    message = Row(links=["https://acme.example/offer"])
    email = compose(message)
    unsubscribe = f"https://cadence.example/u/{sign_token(KEY, 'u', 41)}"
    assert email.headers == {"List-Unsubscribe": f"<{unsubscribe}>",
                             "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    assert f"https://cadence.example/t/c/{sign_token(KEY, 'c', 41, 0)}" in email.html_body
    assert "https://acme.example/offer" not in email.html_body
    assert f"https://cadence.example/t/o/{sign_token(KEY, 'o', 41)}" in email.html_body
    assert email.text_body.endswith(f"Not interested? Unsubscribe: {unsubscribe}\n")
    assert verify_token([KEY], sign_token(KEY, "u", 41)).message_id == 41
    assert (email.message_id, email.from_address, email.from_name, email.to_address, email.to_name, email.subject) == (
        "<m2@acme.example>", "rep@acme.example", "Rita Rep", "ada@example.com", "Ada Lovelace", "Quick idea")
    assert email.reply_to is None


def test_tracking_off_leaves_links_and_adds_no_pixel_but_keeps_unsubscribe():
    email = compose(Row(links=["https://acme.example/offer"]), tracking=Tracking(KEY, "https://c.example"))
    assert 'href="https://acme.example/offer"' in email.html_body and "/t/o/" not in email.html_body
    assert email.headers["List-Unsubscribe"].startswith("<https://c.example/u/")


def test_a_task_draft_is_the_rendering_as_it_is():
    message = Row(action=StepAction.TASK.value)
    email = compose(message, tracking=None)
    assert (email.html_body, email.text_body, email.headers) == (message.html, message.text, {})


def test_an_automatic_email_without_tracking_is_refused():
    with pytest.raises(ValueError):
        compose(Row(), tracking=None)


def test_a_threaded_step_replies_under_what_really_went_out_and_quotes_it():
    parent = Row(id=1, message_id="<m1@acme.example>", subject="Edited by the rep", text="First words",
                 html="<html><body><p>First words</p></body></html>", provider_message_id="g1",
                 provider_thread_id="t1", sent_at=datetime(2026, 11, 28, 8, 5, tzinfo=timezone.utc))
    message = Row(action=StepAction.TASK.value, subject="Re: Quick idea", text="Following up", html="<p>Following up</p>")
    email = compose(message, [parent], the_step=step(thread=True, subject=None), tracking=None)
    assert email.subject == "Re: Edited by the rep"
    assert email.reply_to == ThreadRef("<m1@acme.example>", (), "g1", "t1")
    # dated in the contact's zone: 08:05 UTC is 09:05 in Berlin
    assert email.text_body == "Following up\n\nOn Sat, 28 Nov 2026 at 09:05, Rita Rep wrote:\n> First words"
    assert "<blockquote" in email.html_body and "<p>First words</p>" in email.html_body


def test_a_threaded_step_with_its_own_subject_keeps_it_and_the_sender_address_stands_in_for_no_name():
    parent = Row(id=1, message_id="<m1@a>", subject="Hello", text="Hi", html="<p>Hi</p>")
    message = Row(action=StepAction.TASK.value, subject="New angle", text="More", html="<p>More</p>")
    email = compose(message, [parent], the_step=step(thread=True, subject="New angle"), tracking=None, from_name=None)
    assert email.subject == "New angle" and email.from_name is None
    # never sent: dated now (09:00 UTC is 10:00 in Berlin)
    assert "On Mon, 30 Nov 2026 at 10:00, rep@acme.example wrote:" in email.text_body


def test_a_threaded_first_step_with_nothing_sent_before_is_not_threaded():
    email = compose(Row(action=StepAction.TASK.value), [], the_step=step(1, thread=True), tracking=None)
    assert email.reply_to is None and email.subject == "Quick idea" and "wrote:" not in email.text_body


def test_display_names_no_header_may_carry_are_refused():
    with pytest.raises(HeaderInjection):
        compose(Row(action=StepAction.TASK.value), tracking=None, to_name="Ada\r\nBcc: x@evil.example")
    assert display_name("Ada", None) == "Ada" and display_name(None, None) is None
    assert display_name("Ada", "Lovelace") == "Ada Lovelace"


def _sent(position: int) -> Row:
    return Row(id=position, position=position, message_id=f"<m{position}@a>", subject=f"Step {position}",
               html=f"<p>Body {position}</p>", text=f"Body {position}",
               sent_at=datetime(2026, 11, position, 9, 0, tzinfo=timezone.utc))


@pytest.mark.parametrize(("threaded_steps", "quoted"), [
    ({2, 3}, ["Body 2", "Body 1"]),  # step 3 quotes step 2 with step 2's own quote of step 1
    ({3}, ["Body 2"]),  # step 2 began a new thread: it quoted nothing
    (set(range(2, 9)), [f"Body {n}" for n in range(8, 8 - MAX_QUOTED_EMAILS, -1)]),  # the cap: 8 earlier, 5 quoted
])
def test_a_follow_up_quotes_the_conversation_as_mail_clients_do(threaded_steps, quoted):
    last = max(threaded_steps) + 1 if len(threaded_steps) > 2 else 3
    earlier = [_sent(n) for n in range(1, last)]
    message = Row(id=99, position=last, message_id="<new@a>", html="<p>Newest</p>", text="Newest", action="task")
    email = compose_email(message, step=step(last, thread=True, subject=None), earlier=earlier,
                          from_address="rep@acme.example", from_name="Rita Rep", to_name="Ada", zone=BERLIN, now=NOW,
                          tracking=None, threaded=lambda position: position in threaded_steps)
    text_quotes = [line.lstrip("> ") for line in email.text_body.splitlines() if line.startswith(">")
                   and "Body" in line]
    assert text_quotes == quoted
    depth = {line.lstrip("> "): len(line) - len(line.lstrip("> ").lstrip()) for line in email.text_body.splitlines()
             if "Body" in line}
    assert [depth[q] for q in quoted] == sorted(depth[q] for q in quoted)  # each older one quoted one level deeper
    assert [email.html_body.index(q) for q in quoted] == sorted(email.html_body.index(q) for q in quoted)
    assert email.html_body.count("<blockquote") == len(quoted)
    assert email.text_body.count("Rita Rep wrote:") == len(quoted)  # each quoted email with its own attribution


@pytest.mark.parametrize(("last", "threaded_steps", "in_reply_to", "references"), [
    (3, {2, 3}, "<m2@a>", ("<m1@a>",)),
    (4, {2, 3, 4}, "<m3@a>", ("<m1@a>", "<m2@a>")),
    (6, {2, 3, 4, 6}, "<m5@a>", ()),  # step 5 began a new thread: step 6 references only it
    (7, {2, 3, 4, 6, 7}, "<m6@a>", ("<m5@a>",)),
])
def test_references_hold_the_thread_the_reply_belongs_to(last, threaded_steps, in_reply_to, references):
    earlier = [_sent(n) for n in range(1, last)]
    message = Row(id=99, position=last, message_id="<new@a>", html="<p>New</p>", text="New", action="task")
    email = compose_email(message, step=step(last, thread=True, subject=None), earlier=earlier,
                          from_address="rep@acme.example", from_name="Rita Rep", to_name="Ada", zone=BERLIN, now=NOW,
                          tracking=None, threaded=lambda position: position in threaded_steps)
    assert email.reply_to.message_id == in_reply_to
    assert email.references == references + (in_reply_to,)
