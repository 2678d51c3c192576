"""The mail corpus of `tests/data/mail`: real-world shapes of replies, automatic replies and
delivery reports, with `%NAME%` tokens filled in for the email they answer."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from core.email.read import parse_message

MAIL = Path(__file__).parents[1] / "data" / "mail"
DEFAULTS = {"MESSAGE_ID": "<step1.c0ffee@cadence.test>", "SUBJECT": "Quick question",
            "CONTACT": "ada@prospect.example", "REP": "rita@acme.example",
            "DATE": "Tue, 01 Dec 2026 10:00:00 +0000"}


def mail_text(name: str, **values: str) -> str:
    """The file `name` (e.g. "bounces/qmail-failure-notice.eml") with its tokens filled in."""
    text = (MAIL / name).read_text(encoding="utf-8")
    for key, value in {**DEFAULTS, **{k.upper(): v for k, v in values.items()}}.items():
        text = text.replace(f"%{key}%", value)
    return text


def mail_bytes(name: str, **values: str) -> bytes:
    return mail_text(name, **values).encode("utf-8")


def mail(name: str, **values: str):
    """The file parsed as an `email.message.EmailMessage`."""
    return parse_message(mail_bytes(name, **values))


class SentLookup:
    """`core.observations.Lookup` over a list of `Tracked` (our emails), for tests without a store."""

    def __init__(self, *tracked):
        self.tracked = list(tracked)

    def by_message_ids(self, ids):
        return [t for i in ids for t in self.tracked if t.message_id == i]

    def by_provider_id(self, provider_message_id):
        return next((t for t in self.tracked if t.provider_message_id == provider_message_id), None)

    def by_thread(self, thread):
        return [t for t in self.tracked if t.provider_thread_id == thread]

    def sent_to(self, address, since):
        found = [t for t in self.tracked if t.contact_email == address and t.sent_at and t.sent_at >= since]
        return sorted(found, key=lambda t: t.sent_at, reverse=True)


# Which corpus files each provider test plays, and what they must come out as: (meaning, rule or
# None, hard for a bounce). Shared by the Gmail and Outlook tests (the Maildir one goes through the CLI).
PROVIDER_TABLE = {
    "replies/gmail-reply-threaded.eml": ("reply", "thread_headers", None),
    "replies/outlook-re-in-reply-to-only.eml": ("reply", "thread_headers", None),
    "replies/apple-mail-references-only.eml": ("reply", "thread_headers", None),
    "replies/colleague-forwarded-reply.eml": ("reply", "thread_headers", None),
    "replies/no-thread-headers-re.eml": ("reply", None, None),  # subject, or the provider's thread
    "replies/german-aw-no-thread-headers.eml": ("reply", None, None),
    "replies/outlook-re-no-thread-headers.eml": ("reply", None, None),
    "auto/exchange-ooo-english.eml": ("auto_reply", None, None),
    "auto/exchange-ooo-german-subject-only.eml": ("auto_reply", None, None),
    "auto/gmail-vacation-responder.eml": ("auto_reply", None, None),
    "auto/null-return-path-autoresponder.eml": ("auto_reply", None, None),
    "bounces/dsn-no-returned-part.eml": ("bounce", "message_id", True),
    "bounces/exchange-online-ndr.eml": ("bounce", "message_id", True),
    "bounces/gmail-over-quota-5.2.2.eml": ("bounce", "message_id", False),
    "bounces/dsn-mailbox-full-4.2.2.eml": ("bounce", "message_id", False),
    "bounces/qmail-failure-notice.eml": ("bounce", "message_id", True),
    "bounces/exim-user-unknown.eml": ("bounce", "message_id", True),
    "bounces/gmail-delay.eml": ("unrelated", None, None),
}


def assert_read_as_table_says(name: str, observed, sent, *, subject: str, contact: str, rep: str) -> None:
    """The core's reading of `observed` (corpus file `name`, arrived after our email `sent` with
    `subject` from `rep` to `contact`) is what PROVIDER_TABLE says: meaning, rule, and hard or soft
    for a bounce."""
    from core.observations import Tracked, classify, judge_bounce
    from core.vocabulary import MessageState

    meaning, rule, hard = PROVIDER_TABLE[name]
    now = datetime.now(timezone.utc)
    ours = Tracked(1, MessageState.SENT, contact, sent.message_id, sent.provider_message_id,
                   sent.provider_thread_id, subject, now - timedelta(hours=1))
    result = classify(observed, SentLookup(ours), rep, now)
    assert result.meaning == meaning, result.why
    if meaning != "unrelated":
        assert result.message == ours
    if rule:
        assert result.rule == rule
    if hard is not None:
        assert judge_bounce(result.bounce, now, 0).hard is hard
