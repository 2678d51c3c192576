"""Reading a received message the same way for every provider: decoded headers, addresses,
Date, Message-IDs and thread root, a text snippet, and the headers that tell automatic mail
apart. Gmail and Graph hand over headers as name/value pairs; `message_from_headers` turns those
into a message so the same readers apply.
"""
from __future__ import annotations

import html
import re
from datetime import datetime, timezone
from email import message_from_bytes, policy
from email.errors import HeaderParseError, MessageDefect
from email.message import EmailMessage, Message
from email.parser import Parser
from email.utils import getaddresses, parsedate_to_datetime
from typing import Iterable

from core.email.message_id import first_message_id, message_ids

__all__ = [
    "OBSERVED_HEADER_NAMES", "addresses", "all_headers", "header_ids", "header_text", "message_date",
    "body_text", "message_from_headers", "observed_headers", "parse_message", "part_text", "text_snippet",
    "thread_root", "utf8_headers",
]

_WHITESPACE = re.compile(r"\s+")

# Headers kept (lower-case names) on every observation: they tell automatic replies and delivery
# reports apart (RFC 3834, RFC 3464, Exchange, common practice).
OBSERVED_HEADER_NAMES = (
    "auto-submitted", "x-autoreply", "x-autorespond", "x-autoresponder", "precedence", "content-type",
    "x-auto-response-suppress", "x-failed-recipients", "list-id", "return-path",
    "x-ms-exchange-message-is-ndr", "x-original-message-id",
)


def parse_message(data: bytes) -> EmailMessage:
    """Bytes of an RFC 5322 message (LF or CRLF line ends) as an `EmailMessage`; raw 8-bit
    header bytes are read as UTF-8 (`utf8_headers`)."""
    return utf8_headers(message_from_bytes(data, policy=policy.default))  # type: ignore[return-value]


def utf8_headers(message: Message) -> Message:
    """`message` (and every part in it) with header values that hold raw 8-bit bytes decoded as
    UTF-8 (RFC 6532, SMTPUTF8 mail: `From: Bee <b@bücher.example>`); bytes that are no UTF-8
    become U+FFFD. The stdlib parser keeps such bytes as lone surrogates, which no text encoding
    (JSON, the database) accepts. Changes `message` in place and returns it."""
    for part in message.walk():
        items = list(part.raw_items())
        if not any(isinstance(value, str) and _SURROGATE.search(value) for _, value in items):
            continue
        for name in {name.lower() for name, _ in items}:
            del part[name]
        for name, value in items:
            part.set_raw(name, _utf8(value) if isinstance(value, str) else value)
    return message


_SURROGATE = re.compile("[\udc80-\udcff]")


def _clean(text: str) -> str:
    """`text` without lone surrogates (a message `utf8_headers` did not see)."""
    return _utf8(text) if _SURROGATE.search(text) else text


def _utf8(text: str) -> str:
    """Text read as ASCII with surrogateescape, re-read as UTF-8 (U+FFFD for what is no UTF-8)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def message_from_headers(pairs: Iterable[tuple[str, str]]) -> EmailMessage:
    """A body-less message holding `pairs` (a provider's header list), for the readers below.
    Values are unfolded first; a pair whose name is not a header name is left out."""
    lines = []
    for name, value in pairs:
        name = str(name).strip()
        if not name or not all(33 <= ord(c) <= 126 and c != ":" for c in name):
            continue
        lines.append(f"{name}: {_WHITESPACE.sub(' ', str(value)).strip()}")
    return Parser(policy=policy.default).parsestr("\n".join(lines) + "\n\n", headersonly=True)  # type: ignore[return-value]


def header_text(message: Message, name: str) -> str | None:
    """The decoded value of header `name` with folding whitespace collapsed; None when absent."""
    try:
        value = message.get(name)
        if value is None:
            return None
        text = str(value)
    except (HeaderParseError, MessageDefect, LookupError, UnicodeError, ValueError, IndexError):
        text = next((str(raw) for key, raw in message.raw_items() if key.lower() == name.lower()), "")
    return _WHITESPACE.sub(" ", _clean(text)).strip()


def header_ids(message: Message, name: str) -> tuple[str, ...]:
    """The Message-IDs in header `name` (Message-ID, In-Reply-To, References …), in order."""
    return message_ids(header_text(message, name))


def thread_root(message: Message) -> str | None:
    """The Message-ID a conversation starts with: first of References, else In-Reply-To, else
    the message's own Message-ID."""
    for name in ("References", "In-Reply-To", "Message-ID"):
        found = first_message_id(header_text(message, name))
        if found:
            return found
    return None


def addresses(message: Message, name: str) -> tuple[str, ...]:
    """The bare addresses of header `name` (all occurrences), in order; a null `<>` is left out."""
    found: list[str] = []
    try:
        values = message.get_all(name, [])
    except (HeaderParseError, MessageDefect, ValueError, IndexError):
        values = [raw for key, raw in message.raw_items() if key.lower() == name.lower()]
    for value in values:
        try:
            parsed = getattr(value, "addresses", None)
            if parsed is not None:
                found.extend(a.addr_spec for a in parsed if a.addr_spec and a.addr_spec != "<>")
                continue
        except (HeaderParseError, MessageDefect, ValueError, IndexError):
            pass
        found.extend(addr for _, addr in getaddresses([str(value)]) if addr)
    return tuple(_clean(address) for address in found)


def message_date(message: Message) -> datetime | None:
    """The Date header as an aware UTC datetime; None when absent or unreadable."""
    value = header_text(message, "Date")
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


def observed_headers(message: Message) -> dict[str, str]:
    """The headers of OBSERVED_HEADER_NAMES present on `message`, lower-case names, decoded and
    unfolded."""
    found: dict[str, str] = {}
    for name in OBSERVED_HEADER_NAMES:
        value = header_text(message, name)
        if value is not None:
            found[name] = value
    return found


def all_headers(message: Message) -> list[list[str]]:
    """Every header as `[name, decoded value]`, in file order (repeats kept); for raw payloads."""
    pairs = []
    for name, value in message.raw_items():
        try:
            text = str(message.policy.header_fetch_parse(name, value))
        except (HeaderParseError, MessageDefect, LookupError, UnicodeError, ValueError, IndexError):
            text = str(value)
        pairs.append([_clean(name), _clean(text)])
    return pairs


def part_text(part: Message) -> str:
    """The decoded text of a (text) part; an unknown charset is read as UTF-8 with replacements."""
    try:
        content = part.get_content()  # type: ignore[attr-defined]
        if isinstance(content, str):
            return content
    except (LookupError, UnicodeError, KeyError, AttributeError, ValueError, AssertionError):
        pass
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        charset = part.get_content_charset() or "utf-8"
        return payload.decode(charset if _known_charset(charset) else "utf-8", errors="replace")
    payload = part.get_payload()
    return payload if isinstance(payload, str) else ""


def _known_charset(name: str | None) -> bool:
    if not name:
        return True
    try:
        "".encode(name)
    except LookupError:
        return False
    return True


_TAG = re.compile(r"<(script|style)\b.*?</\1>|<[^>]*>", re.IGNORECASE | re.DOTALL)


def body_text(message: Message) -> str:
    """The message's own text: its text/plain part, else its text/html part without tags."""
    body = None
    if isinstance(message, EmailMessage):
        try:
            body = message.get_body(preferencelist=("plain", "html"))
        except (KeyError, LookupError, ValueError):
            body = None
    if body is None:
        for part in message.walk():
            if part.get_content_maintype() == "text":
                body = part
                break
    if body is None:
        return ""
    text = part_text(body)
    if body.get_content_subtype() == "html":
        text = html.unescape(_TAG.sub(" ", text))
    return text


def text_snippet(message: Message, limit: int = 200) -> str:
    """The first `limit` characters of the message's text (text/plain preferred, else html
    without tags), whitespace collapsed."""
    return _WHITESPACE.sub(" ", body_text(message)).strip()[:limit]
