"""Checks for every value we put into an email header (subject, names, addresses).

A header value must stay on its one header line. We refuse anything a mail system could read as
the end of that line or as a control character: CR, LF, NUL and the other C0 controls except TAB,
DEL, the C1 controls (U+0080–U+009F, which holds NEL U+0085), and the Unicode line and paragraph
separators U+2028 and U+2029. RFC 2047 encoded-words (`=?charset?Q?…?=` and `=?charset?B?…?=`) are
decoded the way a mail client would, and refused when the decoded text holds any of those.
"""
from __future__ import annotations

import base64
import binascii
import codecs
import re

from email_validator import EmailNotValidError, validate_email

__all__ = ["HeaderInjection", "InvalidAddress", "check_address", "check_display_name", "check_field_name",
           "check_header_value"]


class HeaderInjection(ValueError):
    """A header value that could break out of its header line. `.field` names the header."""

    def __init__(self, field: str, reason: str):
        self.field = field
        self.reason = reason
        super().__init__(f"{field} is refused: {reason}.")

    def __reduce__(self) -> tuple:
        return type(self), (self.field, self.reason)


class InvalidAddress(HeaderInjection):
    """An address that is not valid email syntax. A subclass of HeaderInjection on purpose, so that
    a caller refusing unsafe header values refuses bad addresses as well."""


_FORBIDDEN = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
# The same check for bytes in an unknown charset: only what is unambiguous in any ASCII-based one.
_FORBIDDEN_BYTES = re.compile(b"[\x00-\x08\x0a-\x1f\x7f]")
# Deliberately as lenient as real decoders (Python's own email.header accepts spaces inside).
_ENCODED_WORD = re.compile(r"=\?([^?]*)\?([qQbB])\?(.*?)\?=", re.DOTALL)
_Q_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")
_NAMES = {
    "\r": "a carriage return (U+000D)",
    "\n": "a line feed (U+000A)",
    "\x00": "a NUL character (U+0000)",
    "\x85": "a next-line character (U+0085)",
    "\u2028": "a line separator (U+2028)",
    "\u2029": "a paragraph separator (U+2029)",
}
_MAX_NESTING = 3
_FIELD_NAME = re.compile(r"[!-9;-~]+")  # RFC 5322 ftext: printable US-ASCII except ":"


def _describe(char: str) -> str:
    return _NAMES.get(char, f"a control character (U+{ord(char):04X})")


def _q_decode(payload: str) -> bytes:
    data = payload.encode("utf-8", "surrogatepass").replace(b"_", b" ")
    return _Q_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), data)


def _b_decode(payload: str) -> bytes:
    compact = re.sub(r"\s+", "", payload)
    for candidate in (compact + "=" * (-len(compact) % 4), compact[: len(compact) - len(compact) % 4]):
        try:
            return base64.b64decode(candidate, validate=False)
        except (binascii.Error, ValueError):
            continue
    return b""  # a word no client can decode is shown as typed, and that text was checked already


def _problem(value: str, depth: int = 0) -> str | None:
    """Why `value` cannot go into a header, or None when it can."""
    bad = _FORBIDDEN.search(value)
    if bad:
        return f"it contains {_describe(bad.group())} at position {bad.start()}"
    if depth >= _MAX_NESTING or "=?" not in value:
        return None
    for word in _ENCODED_WORD.finditer(value):
        charset, encoding, payload = word.groups()
        raw = _q_decode(payload) if encoding in "qQ" else _b_decode(payload)
        charset = charset.split("*", 1)[0].strip()  # RFC 2231 language suffix
        try:
            codecs.lookup(charset)
        except LookupError:
            # Clients differ on unknown charsets; refuse what is a control byte in any ASCII-based one.
            bad_byte = _FORBIDDEN_BYTES.search(raw)
            if bad_byte:
                return f"the encoded-word {word.group()!r} decodes to a control character (byte 0x{bad_byte.group()[0]:02X})"
            continue
        decoded = raw.decode(charset, errors="replace")
        inner = _problem(decoded, depth + 1)
        if inner:
            return f"the encoded-word {word.group()!r} decodes to text where {inner}"
    return None


def check_header_value(field: str, value: str) -> str:
    """Return `value` unchanged when it is safe on one header line; raise HeaderInjection naming
    `field` otherwise (line breaks, control characters, encoded-words that decode to them)."""
    if not isinstance(value, str):
        raise HeaderInjection(field, f"it must be text, not {type(value).__name__}")
    if value.isascii() and value.isprintable() and "=?" not in value:
        return value  # printable ASCII holds no forbidden character and no encoded-word: the common case
    reason = _problem(value)
    if reason:
        raise HeaderInjection(field, reason)
    return value


def _clause(message: str) -> str:
    text = " ".join(str(message).split()).rstrip(".")
    return text.replace(". ", "; ")


def check_address(field: str, address: str) -> str:
    """Check an email address (syntax only, no DNS) and return its normalized form.
    Raises InvalidAddress (a HeaderInjection) naming `field`."""
    check_header_value(field, address)
    try:
        result = validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidAddress(field, f"{address!r} is not a valid email address ({_clause(exc)})") from None
    return result.normalized


def check_display_name(field: str, name: str) -> str:
    """Return a display name unchanged when it is safe in a From/To header (quoting is the
    message composer's job); raise HeaderInjection naming `field` otherwise."""
    return check_header_value(field, name)


def check_field_name(name: object) -> str:
    """Return a header field name unchanged when it is RFC 5322 `ftext` (printable US-ASCII
    without ':' or spaces); raise HeaderInjection naming it otherwise."""
    if not isinstance(name, str) or not _FIELD_NAME.fullmatch(name):
        shown = " ".join(str(name).split()) or repr(name)
        raise HeaderInjection(shown, "it is not a valid RFC 5322 header field name")
    return name
