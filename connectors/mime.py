"""MIME shared by every connector: build the message Cadence sends, read the ones it observes.

`build_mime` turns an `OutgoingEmail` into one RFC 5322 message (multipart/alternative text +
html, threading headers, the email's own headers), so Maildir, Gmail and Outlook send the same
bytes. `observed_headers`, `text_snippet`, `thread_root` and `parse_delivery_status` read an
incoming message the same way for every connector.
"""
from __future__ import annotations

import copy
import html
import re
from datetime import datetime, timezone
from email import policy
from email.errors import HeaderParseError, MessageDefect
from email.header import decode_header, make_header
from email.headerregistry import Address
from email.message import EmailMessage, Message, MIMEPart
from email.parser import Parser
from email.utils import format_datetime, getaddresses, parsedate_to_datetime
from typing import NamedTuple

from core.mailbox import OutgoingEmail

# Characters that end a header line for some reader: CR, LF, the Unicode line and paragraph
# separators, NEL, and the other characters `str.splitlines` breaks on; NUL is never valid.
_LINE_BREAKS = frozenset("\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\x00")
_FIELD_NAME = re.compile(r"^[!-9;-~]+$")  # RFC 5322 ftext: printable ASCII except ':'
_MSG_ID = re.compile(r"<[^<>\s]+>")
_WHITESPACE = re.compile(r"\s+")

# Headers `build_mime` writes itself; an `OutgoingEmail.headers` entry may not replace them.
RESERVED_HEADERS = frozenset({
    "from", "to", "subject", "date", "message-id", "in-reply-to", "references", "mime-version",
    "content-type", "content-transfer-encoding", "content-disposition",
})

# Headers that tell automatic mail apart; kept (lower-case names) on every observation.
OBSERVED_HEADER_NAMES = (
    "auto-submitted", "x-autoreply", "x-autorespond", "precedence", "content-type",
    "x-auto-response-suppress", "x-failed-recipients", "list-id", "return-path",
)


def check_header_value(name: str, value: str) -> None:
    """Raise `ValueError` naming `name` when `value` holds a line break, also inside an RFC 2047
    encoded word (`=?UTF-8?Q?=0A?=`), since the email package decodes those on assignment."""
    if any(ch in _LINE_BREAKS for ch in value):
        raise ValueError(f"header {name} contains a line break or control character; refused")
    if "=?" in value:
        try:
            decoded = str(make_header(decode_header(value)))
        except (HeaderParseError, LookupError, UnicodeError, ValueError):
            raise ValueError(f"header {name} contains a malformed encoded word; refused") from None
        if any(ch in _LINE_BREAKS for ch in decoded):
            raise ValueError(f"header {name} contains an encoded line break; refused")


def check_message_id(name: str, value: str) -> None:
    """A Message-ID is one `<...>` token without spaces; `ValueError` naming `name` otherwise."""
    check_header_value(name, value)
    if not _MSG_ID.fullmatch(value):
        raise ValueError(f"header {name} must be one <id@domain> token, got {value!r}")


def _address(name: str, addr_spec: str, display_name: str | None) -> Address:
    check_header_value(name, addr_spec)
    if display_name is not None:
        check_header_value(name, display_name)
    try:
        address = Address(display_name=display_name or "", addr_spec=addr_spec)
    except (ValueError, HeaderParseError, MessageDefect) as bad:
        raise ValueError(f"header {name} has an invalid address {addr_spec!r}: {bad}") from None
    if not address.username or not address.domain:
        raise ValueError(f"header {name} has an invalid address {addr_spec!r}")
    return address


def build_mime(email: OutgoingEmail, *, date: datetime) -> EmailMessage:
    """The RFC 5322 message for `email`, dated `date` (naive = UTC).

    multipart/alternative (text/plain then text/html, UTF-8), From and To with display names,
    our Message-ID, In-Reply-To/References when `email.reply_to` is set, then every header of
    `email.headers`. Raises `ValueError` naming the header for a line break (CR, LF, U+2028,
    U+0085, also RFC 2047-encoded), an invalid address or Message-ID, a malformed header name,
    or an `email.headers` entry that would replace a header built here.
    """
    check_message_id("Message-ID", email.message_id)
    sender = _address("From", email.from_address, email.from_name)
    recipient = _address("To", email.to_address, email.to_name)
    check_header_value("Subject", email.subject)
    references = email.references
    for ref in references:
        check_message_id("References", ref)
    extra: list[tuple[str, str]] = []
    for name, value in email.headers.items():
        if not isinstance(name, str) or not _FIELD_NAME.fullmatch(name):
            raise ValueError(f"header name {name!r} is not a valid RFC 5322 field name")
        if name.lower() in RESERVED_HEADERS:
            raise ValueError(f"header {name} is set by Cadence and may not be given in headers")
        check_header_value(name, str(value))
        extra.append((name, str(value)))

    message = EmailMessage(policy=policy.default)
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = email.subject
    message["Date"] = format_datetime(_utc(date))
    message["Message-ID"] = email.message_id
    if references:
        message["In-Reply-To"] = references[-1]
        message["References"] = " ".join(references)
    for name, value in extra:
        message[name] = value
    _set_alternative(message, email.text_body, email.html_body)
    return message


def replace_content(message: EmailMessage, *, subject: str, text_body: str, html_body: str,
                    date: datetime) -> EmailMessage:
    """A copy of `message` with a new Subject, Date and text/html bodies; other headers kept
    in place. Raises `ValueError` naming Subject for a line break."""
    check_header_value("Subject", subject)
    fresh = copy.deepcopy(message)
    fresh.clear_content()
    for name, value in (("Subject", subject), ("Date", format_datetime(_utc(date)))):
        if name in fresh:
            fresh.replace_header(name, value)
        else:
            fresh[name] = value
    _set_alternative(fresh, text_body, html_body)
    return fresh


def _set_alternative(message: EmailMessage, text_body: str, html_body: str) -> None:
    """Make `message` multipart/alternative: text/plain first, text/html last (the preferred).
    The html part is a `MIMEPart`, so it carries no stray MIME-Version header."""
    message.set_content(text_body, subtype="plain", charset="utf-8")
    html_part = MIMEPart(policy=message.policy)
    html_part.set_content(html_body, subtype="html", charset="utf-8")
    message.make_alternative()
    message.attach(html_part)


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)


# ---------------------------------------------------------------- reading observed messages


def header_text(message: Message, name: str) -> str | None:
    """The decoded value of header `name` with folding whitespace collapsed; None when absent."""
    try:
        value = message.get(name)
        if value is None:
            return None
        text = str(value)
    except (HeaderParseError, MessageDefect, LookupError, UnicodeError, ValueError):
        text = next((raw for key, raw in message.raw_items() if key.lower() == name.lower()), "")
    return _WHITESPACE.sub(" ", text).strip()


def message_ids(value: str | None) -> tuple[str, ...]:
    """Every `<...>` token of a Message-ID, In-Reply-To or References value, in order."""
    return tuple(_MSG_ID.findall(value or ""))


def first_message_id(message: Message, name: str) -> str | None:
    ids = message_ids(header_text(message, name))
    return ids[0] if ids else None


def thread_root(message: Message) -> str | None:
    """The Message-ID a conversation starts with: first of References, else In-Reply-To, else
    the message's own Message-ID."""
    for name in ("References", "In-Reply-To", "Message-ID"):
        found = first_message_id(message, name)
        if found:
            return found
    return None


def addresses(message: Message, name: str) -> tuple[str, ...]:
    """The bare addresses of header `name` (all occurrences), in order."""
    found: list[str] = []
    for value in message.get_all(name, []):
        try:
            parsed = getattr(value, "addresses", None)
            if parsed is not None:
                found.extend(a.addr_spec for a in parsed if a.addr_spec and a.addr_spec != "<>")
                continue
        except (HeaderParseError, MessageDefect, ValueError):
            pass
        found.extend(addr for _, addr in getaddresses([str(value)]) if addr)
    return tuple(found)


def message_date(message: Message) -> datetime | None:
    """The Date header as an aware UTC datetime; None when absent or unreadable."""
    value = header_text(message, "Date")
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return _utc(parsed)


def observed_headers(message: Message) -> dict[str, str]:
    """The headers that tell automatic mail apart, lower-case names, decoded and unfolded."""
    found: dict[str, str] = {}
    for name in OBSERVED_HEADER_NAMES:
        value = header_text(message, name)
        if value is not None:
            found[name] = value
    return found


def all_headers(message: Message) -> list[list[str]]:
    """Every header as `[name, decoded value]`, in file order (repeats kept); for raw payloads."""
    pairs = []
    for name, value in message.items():
        try:
            text = str(value)
        except (HeaderParseError, MessageDefect, LookupError, UnicodeError, ValueError):
            text = ""
        pairs.append([name, text])
    return pairs


def _part_text(part: Message) -> str:
    try:
        content = part.get_content()  # type: ignore[attr-defined]
        if isinstance(content, str):
            return content
    except (LookupError, UnicodeError, KeyError, AttributeError, ValueError):
        pass
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        charset = part.get_content_charset() or "utf-8"
        return payload.decode(charset if _known_charset(charset) else "utf-8", errors="replace")
    return ""


def _known_charset(name: str | None) -> bool:
    if not name:
        return True
    try:
        "".encode(name)
    except LookupError:
        return False
    return True


_TAG = re.compile(r"<(script|style)\b.*?</\1>|<[^>]*>", re.IGNORECASE | re.DOTALL)


def text_snippet(message: Message, limit: int = 200) -> str:
    """The first `limit` characters of the message's text (text/plain preferred, else html
    without tags), whitespace collapsed."""
    body = None
    if isinstance(message, EmailMessage):
        body = message.get_body(preferencelist=("plain", "html"))
    else:
        for part in message.walk():
            if part.get_content_maintype() == "text":
                body = part
                break
    if body is None:
        return ""
    text = _part_text(body)
    if body.get_content_subtype() == "html":
        text = html.unescape(_TAG.sub(" ", text))
    return _WHITESPACE.sub(" ", text).strip()[:limit]


# ---------------------------------------------------------------- delivery-status notifications


class DeliveryStatus(NamedTuple):
    """What a failed delivery-status notification (RFC 3464) tells about the email it returns."""

    original_message_id: str | None  # Message-ID of the email that bounced
    recipient: str | None  # Final-Recipient (else Original-Recipient), bare address
    reason: str | None  # Diagnostic-Code without its type, else the Status code


_DSN_REPORT_TYPES = {"delivery-status", "global-delivery-status"}
_STATUS_TYPES = {"message/delivery-status", "message/global-delivery-status"}
_HEADER_TYPES = {"text/rfc822-headers", "message/global-headers"}
_MESSAGE_TYPES = {"message/rfc822", "message/global"}
_BLANK_LINE = re.compile(r"\r?\n[ \t]*\r?\n")


def parse_delivery_status(message: Message) -> DeliveryStatus | None:
    """Read a delivery-status notification that reports a failure.

    Only a top-level multipart/report with report-type delivery-status counts (a bounce the
    user forwarded as an attachment does not). Returns None for any other message and for a
    report whose recipients were all delayed, delivered, relayed or expanded (a delay is no
    bounce). Fields the report does not carry are None.
    """
    if message.get_content_type() != "multipart/report":
        return None
    if (message.get_param("report-type") or "").lower() not in _DSN_REPORT_TYPES:
        return None
    parts = message.get_payload()
    if not isinstance(parts, list):
        return None
    status_part = next((p for p in parts if p.get_content_type() in _STATUS_TYPES), None)
    if status_part is None:
        return None
    failed = [fields for fields in _status_blocks(status_part)[1:] if _is_failure(fields)]
    if not failed:
        return None
    fields = failed[0]
    recipient = _typed_address(fields.get("final-recipient")) or _typed_address(fields.get("original-recipient"))
    diagnostic = fields.get("diagnostic-code")
    reason = _strip_type(diagnostic) if diagnostic else (fields.get("status") or None)
    returned = original_headers(message)
    original_id = first_message_id(returned, "Message-ID") if returned is not None else None
    return DeliveryStatus(original_id, recipient, reason)


def _status_blocks(part: Message) -> list[dict[str, str]]:
    """The field blocks of a delivery-status part: per-message first, then one per recipient."""
    payload = part.get_payload()
    blocks: list[list[tuple[str, str]]] = []
    if isinstance(payload, list):
        # The parser splits message/delivery-status into blocks; other message/* types (the
        # RFC 6533 global one) arrive as one "message" whose body holds the remaining blocks.
        for block in payload:
            blocks.append(list(block.items()))
            rest = block.get_payload()
            if isinstance(rest, str) and rest.strip():
                blocks.extend(_text_blocks(rest))
    else:
        raw = part.get_payload(decode=True)
        blocks = _text_blocks(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload))
    return [{name.lower(): _WHITESPACE.sub(" ", str(value)).strip() for name, value in block}
            for block in blocks]


def _text_blocks(text: str) -> list[list[tuple[str, str]]]:
    parser = Parser(policy=policy.default)
    return [list(parser.parsestr(chunk.strip("\r\n") + "\n", headersonly=True).items())
            for chunk in _BLANK_LINE.split(text) if chunk.strip()]


def _is_failure(fields: dict[str, str]) -> bool:
    action = fields.get("action", "").lower()
    if action:
        return action == "failed"
    return fields.get("status", "").startswith("5")


def _strip_type(value: str) -> str:
    """`smtp; 550 5.1.1 ...` -> `550 5.1.1 ...` (the RFC 3464 type prefix dropped)."""
    kind, sep, rest = value.partition(";")
    return rest.strip() if sep and " " not in kind.strip() else value.strip()


def _typed_address(value: str | None) -> str | None:
    if not value:
        return None
    address = _strip_type(value).strip("<> ")
    return address or None


def original_headers(message: Message) -> Message | None:
    """The returned email's headers carried by a delivery report (text/rfc822-headers,
    message/rfc822 or their RFC 6533 global forms), for its Message-ID and thread; or None."""
    parts = message.get_payload() if message.is_multipart() else []
    for part in parts:
        kind = part.get_content_type()
        if kind not in _HEADER_TYPES and kind not in _MESSAGE_TYPES:
            continue
        payload = part.get_payload()
        if isinstance(payload, list) and payload:  # parsed as an enclosed message
            return payload[0]
        if kind in _HEADER_TYPES:
            return Parser(policy=policy.default).parsestr(_part_text(part), headersonly=True)
    return None
