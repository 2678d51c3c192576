"""MIME for Gmail: the RFC 5322 message of an `OutgoingEmail`, and reading what Gmail reports.

Built with the stdlib `email` package. Delivery-status notifications (RFC 3464) are read from
their `message/delivery-status` part; the bounced email's Message-ID comes from the
`text/rfc822-headers` or `message/rfc822` part, else from the report's In-Reply-To.
"""
from __future__ import annotations

import base64
import email
import email.policy
import re
from dataclasses import dataclass
from email.message import EmailMessage, Message
from email.parser import HeaderParser
from email.utils import formataddr, getaddresses, parseaddr

from core.mailbox import OutgoingEmail

POLICY = email.policy.SMTP  # CRLF line ends, RFC 2047 encoded words where needed

# Headers the connector writes itself; `OutgoingEmail.headers` may not override them.
RESERVED_HEADERS = frozenset(h.lower() for h in (
    "From", "To", "Cc", "Bcc", "Subject", "Message-ID", "In-Reply-To", "References", "Date", "Sender",
    "MIME-Version", "Content-Type", "Content-Transfer-Encoding", "Content-Disposition",
))
HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # printable ASCII without ":" (RFC 5322 field-name)
MESSAGE_ID = re.compile(r"^<[^<>\s@]+@[^<>\s@]+>$")
BOUNCE_SENDERS = ("mailer-daemon", "postmaster")


def encode_raw(message: EmailMessage) -> str:
    """The base64url `raw` field Gmail expects."""
    return base64.urlsafe_b64encode(message.as_bytes(policy=POLICY)).decode("ascii")


def decode_raw(raw: str) -> EmailMessage:
    data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


def validate_email(outgoing: OutgoingEmail) -> None:
    """Raise ValueError naming the first bad field of `outgoing`; nothing is sent to Gmail then."""
    if not MESSAGE_ID.match(outgoing.message_id or ""):
        raise ValueError(f"message_id: expected '<local@domain>', got {outgoing.message_id!r}")
    for name in ("from_address", "to_address"):
        value = getattr(outgoing, name)
        if not value or any(c in value for c in "\r\n"):
            raise ValueError(f"{name}: expected one email address, got {value!r}")
    for name in ("subject", "from_name", "to_name"):
        value = getattr(outgoing, name)
        if value and any(c in value for c in "\r\n"):
            raise ValueError(f"{name}: may not contain line breaks")
    if outgoing.reply_to is not None and not MESSAGE_ID.match(outgoing.reply_to.message_id or ""):
        raise ValueError(f"reply_to.message_id: expected '<local@domain>', got {outgoing.reply_to.message_id!r}")
    for header, value in outgoing.headers.items():
        if not HEADER_NAME.match(header):
            raise ValueError(f"headers[{header!r}]: not a valid header name")
        if header.lower() in RESERVED_HEADERS:
            raise ValueError(f"headers[{header!r}]: set by the connector, may not be overridden")
        if any(c in str(value) for c in "\r\n"):
            raise ValueError(f"headers[{header!r}]: value may not contain line breaks")


def build_message(outgoing: OutgoingEmail) -> EmailMessage:
    """multipart/alternative (text, then HTML) with our Message-ID and, when threaded, In-Reply-To/References."""
    validate_email(outgoing)
    message = EmailMessage(policy=POLICY)
    message["From"] = formataddr((outgoing.from_name or "", outgoing.from_address))
    message["To"] = formataddr((outgoing.to_name or "", outgoing.to_address))
    message["Subject"] = outgoing.subject
    message["Message-ID"] = outgoing.message_id
    if outgoing.reply_to is not None:
        message["In-Reply-To"] = outgoing.reply_to.message_id
        message["References"] = " ".join(outgoing.references)
    for header, value in outgoing.headers.items():
        message[header] = value
    set_bodies(message, outgoing.text_body, outgoing.html_body)
    return message


def set_bodies(message: EmailMessage, text_body: str, html_body: str) -> None:
    """Replace the content of `message` with text + HTML alternatives, keeping its other headers."""
    message.clear_content()
    message.set_content(text_body or "")
    if html_body:
        message.add_alternative(html_body, subtype="html")


def replace_subject(message: EmailMessage, subject: str) -> None:
    if any(c in subject for c in "\r\n"):
        raise ValueError("subject: may not contain line breaks")
    del message["Subject"]
    message["Subject"] = subject


@dataclass(frozen=True)
class DeliveryReport:
    """What a delivery-status notification says about the email it reports on."""

    message_id: str | None
    recipient: str | None
    reason: str | None
    failed: bool


def looks_like_delivery_report(headers: dict[str, str]) -> bool:
    """From the top-level headers (lower-case names) alone: worth fetching the whole message?"""
    content_type = headers.get("content-type", "").lower()
    sender = parseaddr(headers.get("from", ""))[1].lower()
    return ("multipart/report" in content_type or "x-failed-recipients" in headers
            or sender.split("@")[0] in BOUNCE_SENDERS)


def read_delivery_report(message: Message) -> DeliveryReport | None:
    """The bounced Message-ID, recipient and reason of a DSN; None when it is not one."""
    status_blocks: list[Message] = []
    original_id: str | None = None
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/delivery-status":
            payload = part.get_payload()
            if isinstance(payload, list):
                status_blocks = payload
            else:  # some parsers leave it as text
                status_blocks = [HeaderParser().parsestr(block) for block in str(payload).split("\n\n") if block]
        elif kind == "text/rfc822-headers" and original_id is None:
            text = part.get_payload(decode=True) or b""
            original_id = clean_message_id(HeaderParser().parsestr(text.decode("utf-8", "replace"))["Message-ID"])
        elif kind == "message/rfc822" and original_id is None:
            inner = part.get_payload()
            if isinstance(inner, list) and inner:
                original_id = clean_message_id(inner[0]["Message-ID"])
    failed_header = message.get("X-Failed-Recipients")
    if not status_blocks and failed_header is None:
        return None
    recipients = [b for b in status_blocks[1:] if b.get("Final-Recipient") or b.get("Original-Recipient")]
    chosen = next((b for b in recipients if str(b.get("Action", "")).strip().lower() == "failed"),
                  recipients[0] if recipients else None)
    recipient, reason, failed = None, None, failed_header is not None
    if chosen is not None:
        recipient = _address_field(chosen.get("Final-Recipient") or chosen.get("Original-Recipient"))
        action = str(chosen.get("Action", "")).strip().lower()
        status = str(chosen.get("Status", "")).strip()
        failed = action == "failed" or (not action and status.startswith("5"))
        diagnostic = " ".join(str(chosen.get("Diagnostic-Code", "")).split())
        diagnostic = diagnostic.split(";", 1)[1].strip() if ";" in diagnostic else diagnostic
        reason = " ".join(x for x in (status, diagnostic) if x) or None
    if recipient is None and failed_header:
        recipient = str(failed_header).split(",")[0].strip() or None
    if original_id is None:
        original_id = clean_message_id(message.get("In-Reply-To"))
    return DeliveryReport(original_id, recipient, reason, failed)


def _address_field(value: object) -> str | None:
    """'rfc822; ada@example.com' -> 'ada@example.com'."""
    if value is None:
        return None
    text = str(value)
    text = text.split(";", 1)[1] if ";" in text else text
    addresses = [a for _, a in getaddresses([text.strip()]) if a]
    return addresses[0] if addresses else (text.strip() or None)


def clean_message_id(value: object) -> str | None:
    if value is None:
        return None
    text = " ".join(str(value).split())
    found = re.search(r"<[^<>\s]+>", text)
    return found.group(0) if found else (f"<{text}>" if text else None)
