"""The email of one message (pure): threading, the quoted previous email, tracking and the
one-click unsubscribe headers (RFC 8058), from the message's stored rendering.

The caller reads the rows; nothing here does I/O. Protocols name the attributes read, so store
rows can be passed as they are.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Protocol, Sequence
from zoneinfo import ZoneInfo

from core.campaign import StepSpec
from core.headers import check_display_name
from core.mailbox import OutgoingEmail, ThreadRef
from core.render import RenderedEmail, quote_previous
from core.tracking import add_open_pixel, add_unsubscribe_footer, rewrite_links, sign_token
from core.vocabulary import StepAction


class Earlier(Protocol):
    """An earlier message of the same sequence that really went out."""

    message_id: str
    provider_message_id: str | None
    provider_thread_id: str | None
    position: int  # the step's position in the campaign, 1-based
    subject: str | None
    html: str | None
    text: str | None
    sent_at: datetime | None


class Outgoing(Protocol):
    """The message to send, as prepared (and maybe edited by the rep)."""

    id: int
    message_id: str
    action: str
    to_address: str
    subject: str | None
    html: str | None
    text: str | None
    links: list | None


@dataclass(frozen=True)
class Tracking:
    """How tracked links are made: the newest signing key and the public base URL."""

    key: bytes
    base_url: str
    clicks: bool = False
    opens: bool = False


def reply_subject(previous: str) -> str:
    """`Re: <previous>`, unless it starts with `Re:` (any case) already."""
    return previous if previous.lower().startswith("re:") else f"Re: {previous}"


def _current_thread(earlier: Sequence[Earlier], threaded: Callable[[int], bool]) -> Sequence[Earlier]:
    """The earlier emails of the thread the last one belongs to: from the last one that began a
    thread (`threaded(position)` false, or the first email) to the last."""
    start = len(earlier) - 1
    while start > 0 and threaded(earlier[start].position):
        start -= 1
    return earlier[start:]


def thread_of(earlier: Sequence[Earlier], threaded: Callable[[int], bool] = lambda position: True
              ) -> ThreadRef | None:
    """Threading under the last email that went out (`In-Reply-To`), the emails of its thread in
    `References` (RFC 5322 section 3.6.4: from the last one that began a thread, `threaded(position)`
    false, to the parent), and the provider's own ids of the parent; None when none went out."""
    if not earlier:
        return None
    parent = earlier[-1]
    chain = tuple(m.message_id for m in _current_thread(earlier, threaded))
    return ThreadRef(message_id=parent.message_id, references=chain[:-1],
                     provider_message_id=parent.provider_message_id, provider_thread_id=parent.provider_thread_id)


# A follow-up quotes the conversation below it as mail clients do: the previous email with its own
# quoted part, and so on back; beyond this many emails the oldest are left out.
MAX_QUOTED_EMAILS = 5


def _quote_conversation(new: RenderedEmail, earlier: Sequence[Earlier], *, threaded: Callable[[int], bool],
                        sender: str, zone: ZoneInfo, now: datetime) -> RenderedEmail:
    """`new` with the last emails of its thread quoted as each went out, the oldest innermost."""
    def below(email: RenderedEmail, previous: RenderedEmail, when: datetime) -> RenderedEmail:
        return quote_previous(email, previous=previous, previous_from=sender,
                              previous_date=when.strftime("%a, %d %b %Y at %H:%M"))

    as_sent: tuple[RenderedEmail, datetime] | None = None  # the previous email as it went out, and when
    for email in _current_thread(earlier, threaded)[-MAX_QUOTED_EMAILS:]:
        current = RenderedEmail(email.subject or "", email.html or "", email.text or "")
        if as_sent is not None:
            current = below(current, *as_sent)
        as_sent = (current, (email.sent_at or now).astimezone(zone))
    return new if as_sent is None else below(new, *as_sent)


def compose_email(message: Outgoing, *, step: StepSpec, earlier: Sequence[Earlier], from_address: str,
                  from_name: str | None, to_name: str | None, zone: ZoneInfo, now: datetime,
                  tracking: Tracking | None, threaded: Callable[[int], bool] = lambda position: False
                  ) -> OutgoingEmail:
    """The email for `message`.

    A threaded step replies under the last earlier email that went out: its subject defaults to
    `Re: <that email's subject as it really went out>` and the conversation is quoted below it as
    mail clients quote: the previous email with its own quoted part, which holds the one before
    it when that step was threaded too (`threaded(position)`), up to MAX_QUOTED_EMAILS emails,
    each dated in the contact's `zone` (its `sent_at`, else `now`). An automatic email gets tracked links and the
    open pixel as `tracking` asks, a visible unsubscribe link and the `List-Unsubscribe` /
    `List-Unsubscribe-Post` headers (RFC 8058); `tracking` is required for it.
    Raises HeaderInjection for a display name no header may carry.
    """
    rendered = RenderedEmail(message.subject or "", message.html or "", message.text or "")
    reply_to = None
    if step.thread:
        reply_to = thread_of(earlier, threaded)
        if reply_to is not None:
            parent = earlier[-1]
            if step.subject is None:  # as it really went out (the rep may have edited it)
                rendered = RenderedEmail(reply_subject(parent.subject or ""), rendered.html, rendered.text)
            rendered = _quote_conversation(rendered, earlier, threaded=threaded,
                                           sender=from_name or from_address, zone=zone, now=now)
    html, text, headers = rendered.html, rendered.text, {}
    if message.action == StepAction.AUTO.value:
        if tracking is None:
            raise ValueError("an automatic email needs its tracking (signing key and public URL)")
        key, base = tracking.key, tracking.base_url.rstrip("/")
        if tracking.clicks and message.links:
            index = {url: i for i, url in enumerate(message.links)}
            html = rewrite_links(html, lambda url: f"{base}/t/c/{sign_token(key, 'c', message.id, index[url])}"
                                 if url in index else None)
        unsubscribe = f"{base}/u/{sign_token(key, 'u', message.id)}"
        html, text = add_unsubscribe_footer(html, text, unsubscribe)
        if tracking.opens:
            html = add_open_pixel(html, f"{base}/t/o/{sign_token(key, 'o', message.id)}")
        headers = {"List-Unsubscribe": f"<{unsubscribe}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    return OutgoingEmail(
        message_id=message.message_id, from_address=from_address,
        from_name=check_display_name("from name", from_name) if from_name else None,
        to_address=message.to_address, to_name=check_display_name("to name", to_name) if to_name else None,
        subject=rendered.subject, html_body=html, text_body=text, reply_to=reply_to, headers=headers)


def display_name(first_name: str | None, last_name: str | None) -> str | None:
    """`First Last` from the parts given, None when neither is."""
    return " ".join(p for p in (first_name, last_name) if p) or None
