"""The one Message-ID rule (RFC 5322 section 3.6.4): `<id-left@id-right>`, one `@`, no spaces or
angle brackets inside. Every Message-ID Cadence writes matches it, and the ids read from
Message-ID, In-Reply-To, References and delivery reports are the tokens that match it.
"""
from __future__ import annotations

import os
import re
from typing import Callable

import idna

from core.headers import HeaderInjection, check_header_value

__all__ = ["MESSAGE_ID", "check_message_id", "first_message_id", "is_message_id", "message_ids",
           "new_message_id", "random_message_ids"]

MESSAGE_ID = re.compile(r"<[^<>\s@]+@[^<>\s@]+>")


def is_message_id(value: object) -> bool:
    """True when `value` is exactly one Message-ID token."""
    return isinstance(value, str) and MESSAGE_ID.fullmatch(value) is not None


def check_message_id(field: str, value: object) -> str:
    """Return `value` when it is one Message-ID; raise HeaderInjection (a ValueError) naming
    `field` otherwise."""
    if not isinstance(value, str):
        raise HeaderInjection(field, f"it must be text, not {type(value).__name__}")
    check_header_value(field, value)
    if not is_message_id(value):
        raise HeaderInjection(field, f"it must be one <id@domain> Message-ID, got {value!r}")
    return value


def message_ids(value: str | None) -> tuple[str, ...]:
    """Every Message-ID token in a header value or a text (References, a report's body), in
    order, repeats removed."""
    return tuple(dict.fromkeys(MESSAGE_ID.findall(value or "")))


def first_message_id(value: str | None) -> str | None:
    found = MESSAGE_ID.search(value or "")
    return found.group() if found else None


def new_message_id(unique: str, domain: str) -> str:
    """`<unique@domain>`, an internationalised domain in its IDNA form (`büro.example` →
    `xn--bro-hoa.example`: a header field is ASCII); raises HeaderInjection naming Message-ID
    when that is not one id."""
    if not domain.isascii():
        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError as bad:
            raise HeaderInjection("Message-ID", f"{domain!r} is no valid domain name ({bad})") from None
    return check_message_id("Message-ID", f"<{unique}@{domain}>")


# Random id-left parts (32 hex digits, 128 bits from os.urandom), drawn 256 at a time: one
# getrandom call per 256 ids instead of one per id (plus a UUID object), which was 4 % of a
# prepare of 100k contacts. Emptied in a forked child, which must never reuse its parent's.
_RANDOM_HEX: list[str] = []
_RANDOM_BATCH = 256
os.register_at_fork(after_in_child=_RANDOM_HEX.clear)


def _random_hex() -> str:
    try:
        return _RANDOM_HEX.pop()
    except IndexError:
        block = os.urandom(16 * _RANDOM_BATCH).hex()
        fresh = [block[i:i + 32] for i in range(0, len(block), 32)]
        first = fresh.pop()
        _RANDOM_HEX.extend(fresh)  # list operations are atomic: threads never get the same one
        return first


def random_message_ids(domain: str) -> Callable[[], str]:
    """A maker of new `<32 hex digits@domain>` ids for one sender domain (128 random bits from
    `os.urandom`): the domain is checked (and IDNA-encoded) once, here, as `new_message_id` does;
    raises HeaderInjection as it does."""
    suffix = new_message_id("0", domain)[2:]  # "@domain>", valid after any run of hex digits
    return lambda: f"<{_random_hex()}{suffix}"
