"""One comparable form of an email address, whatever shape a mail server wrote it in.

Contacts are stored as email-validator normalises them (`core.contacts.normalize_email`): lower
case, an internationalised domain in Unicode (`anna@münchen.example`). Mail comes back with that
domain in IDNA (`anna@xn--mnchen-3ya.example`, RFC 5890), in any case, sometimes inside angle
brackets. `comparable_address` turns each of those into the stored form, so a reply, a bounce or
an opt-out from an IDN domain finds its contact.
"""
from __future__ import annotations

import idna


def comparable_address(address: str | None) -> str | None:
    """`address` stripped of spaces and angle brackets, lower-cased, its domain's IDNA labels in
    Unicode; None stays None, and a domain that is no valid IDNA is only lower-cased."""
    if address is None:
        return None
    text = address.strip().strip("<>").strip().lower()
    local, at, domain = text.rpartition("@")
    if not at or "xn--" not in domain:
        return text
    try:
        return f"{local}@{idna.decode(domain)}"
    except (idna.IDNAError, UnicodeError):
        return text


def stored_address(address: str) -> str:
    """The form an address someone typed (an option, a Slack profile, a sign-in) is stored in:
    `core.contacts.normalize_email` (lower case, the domain in Unicode, so `F@XN--MNCHEN-3YA.example`
    finds `f@münchen.example`); text that is no valid address gets `comparable_address`, so a
    lookup simply finds nothing."""
    from core.contacts import normalize_email  # core.contacts loads email-validator; only lookups need it

    try:
        return normalize_email(address)
    except ValueError:
        return comparable_address(address) or ""
