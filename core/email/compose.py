"""Building the RFC 5322 message of an `OutgoingEmail`, and giving a draft new content.

One builder for every provider that takes MIME (Maildir writes it, Gmail sends it in `raw`):
multipart/alternative (text/plain first, text/html last, UTF-8), From and To with display names,
our Message-ID, In-Reply-To/References for a threaded step, then the email's own headers
(List-Unsubscribe …). Every value passes `core.headers` (line breaks, control characters, also
inside RFC 2047 encoded words); every Message-ID passes `core.email.message_id`. A refusal is a
`HeaderInjection` (a ValueError) whose text starts with the header's name.
"""
from __future__ import annotations

import copy
import re
from datetime import datetime, timezone
from email.errors import HeaderParseError, MessageDefect
from email.headerregistry import Address
from email.message import EmailMessage, MIMEPart
from email.utils import format_datetime

import idna

from core.email.folding import MAIL_POLICY, literal_text
from core.email.message_id import check_message_id
from core.headers import HeaderInjection, check_field_name, check_header_value
from core.mailbox import OutgoingEmail

__all__ = ["RESERVED_HEADERS", "build_message", "check_outgoing", "replace_content", "wire_address"]

# Headers the builder writes itself (or that would change who gets the email); an
# `OutgoingEmail.headers` entry may not set them.
RESERVED_HEADERS = frozenset({
    "from", "to", "cc", "bcc", "sender", "subject", "date", "message-id", "in-reply-to", "references",
    "mime-version", "content-type", "content-transfer-encoding", "content-disposition",
})


def wire_address(addr_spec: str) -> str:
    """`local@domain` with the domain in IDNA (RFC 5891, UTS #46), as it must appear in a header
    or a provider's recipient field: `anna@münchen.example` → `anna@xn--mnchen-3ya.example`. An
    ASCII address comes back unchanged. Raises HeaderInjection when the domain is no valid IDN."""
    local, at, domain = addr_spec.rpartition("@")
    if not at or domain.isascii():
        return addr_spec
    try:
        return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"
    except idna.IDNAError as exc:
        raise HeaderInjection("To", f"{addr_spec!r} has no valid domain name ({exc})") from None


# A dot-atom local part @ a dot-atom domain of letters, digits and hyphens (RFC 5322 section 3.4.1):
# the email package would read it as exactly these two parts, without defects, so it is not parsed.
_PLAIN_ADDRESS = re.compile(r"([A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*)"
                            r"@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)")


def _address(field: str, addr_spec: str, display_name: str | None) -> Address:
    check_header_value(field, addr_spec)
    if display_name is not None:
        check_header_value(field, display_name)
    addr_spec = wire_address(addr_spec)
    plain = _PLAIN_ADDRESS.fullmatch(addr_spec)
    if plain is not None:
        return Address(display_name=display_name or "", username=plain.group(1), domain=plain.group(2))
    try:
        address = Address(display_name=display_name or "", addr_spec=addr_spec)
    except (ValueError, HeaderParseError, MessageDefect, IndexError) as bad:
        raise HeaderInjection(field, f"{addr_spec!r} is not a valid address ({bad})") from None
    if not address.username or not address.domain:
        raise HeaderInjection(field, f"{addr_spec!r} is not a valid address")
    return address


def check_outgoing(email: OutgoingEmail) -> tuple[Address, Address, list[tuple[str, str]]]:
    """Check every header value of `email` before anything is built or sent; returns the From
    and To addresses and the extra headers. Raises HeaderInjection naming the header."""
    check_message_id("Message-ID", email.message_id)
    sender = _address("From", email.from_address, email.from_name)
    recipient = _address("To", email.to_address, email.to_name)
    check_header_value("Subject", email.subject)
    if email.reply_to is not None:
        check_message_id("In-Reply-To", email.reply_to.message_id)
    for ref in email.references:
        check_message_id("References", ref)
    extra: list[tuple[str, str]] = []
    for name, value in email.headers.items():
        check_field_name(name)
        if name.lower() in RESERVED_HEADERS:
            raise HeaderInjection(name, "it is set by Cadence and may not be given in headers")
        extra.append((name, check_header_value(name, str(value))))
    return sender, recipient, extra


def build_message(email: OutgoingEmail, *, date: datetime | None = None) -> EmailMessage:
    """The RFC 5322 message for `email`; with `date` (naive = UTC) a Date header, without one
    none (Gmail stamps its own at send time). Raises HeaderInjection naming the header for a
    line break or control character, an invalid address or Message-ID, a malformed header name,
    or an `email.headers` entry that would replace a header built here."""
    sender, recipient, extra = check_outgoing(email)
    message = EmailMessage(policy=MAIL_POLICY)
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = literal_text(email.subject)
    if date is not None:
        message["Date"] = format_datetime(_utc(date))
    message["Message-ID"] = email.message_id
    references = email.references
    if references:
        message["In-Reply-To"] = references[-1]
        message["References"] = " ".join(references)
    for name, value in extra:
        message[name] = value
    _set_alternative(message, email.text_body, email.html_body)
    return message


def replace_content(message: EmailMessage, *, subject: str, text_body: str, html_body: str,
                    date: datetime | None = None) -> EmailMessage:
    """A copy of `message` with a new Subject (and Date, when given) and new text/html bodies;
    every other header kept in place. Raises HeaderInjection naming Subject."""
    check_header_value("Subject", subject)
    fresh = copy.deepcopy(message)
    fresh.clear_content()
    changes = [("Subject", literal_text(subject))]
    if date is not None:
        changes.append(("Date", format_datetime(_utc(date))))
    for name, value in changes:
        if name in fresh:
            fresh.replace_header(name, value)
        else:
            fresh[name] = value
    _set_alternative(fresh, text_body, html_body)
    return fresh


def _set_alternative(message: EmailMessage, text_body: str, html_body: str) -> None:
    """text/plain first, text/html last (the preferred one). The html part is a `MIMEPart`, so it
    carries no stray MIME-Version header. Without HTML the message is text/plain alone."""
    message.set_content(text_body or "", subtype="plain", charset="utf-8")
    if not html_body:
        return
    html_part = MIMEPart(policy=message.policy)
    html_part.set_content(html_body, subtype="html", charset="utf-8")
    message.make_alternative()
    message.attach(html_part)


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)
