"""The mail corpus of `tests/data/mail`: real-world shapes of replies, automatic replies and
delivery reports, with `%NAME%` tokens filled in for the email they answer."""
from __future__ import annotations

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
