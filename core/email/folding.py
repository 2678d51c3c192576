"""Folding every header we write (RFC 5322 section 2.1.1: lines of at most 78 characters where
they can be folded, never more than 998).

Python's email package folds most headers well, with two exceptions this module closes:

- A display name holding one long run of ASCII letters (no space to fold at) is written on one
  line whatever its length. Such a name is written as RFC 2047 encoded words instead, which can
  be split anywhere.
- A URI list (`List-Unsubscribe`, RFC 2369 / RFC 8058) whose URI is longer than a line is turned
  into encoded words, which no mail client reads as a URI. It is folded after its commas instead,
  each `<URI>` kept whole on its own line.

`MAIL_POLICY` is `email.policy.default` with these header classes; a message built with it keeps
them whatever policy later serialises it (SMTP's CRLF or Maildir's LF).
"""
from __future__ import annotations

import re
from email import policy as email_policy
from email.header import Header
from email.headerregistry import HeaderRegistry, UniqueAddressHeader, UnstructuredHeader
from email.policy import Policy

SOFT_LIMIT = 78  # characters a line, line break not counted (RFC 5322 section 2.1.1)

_SPECIALS = re.compile(r'[()<>\[\]:;@\\,."]')  # RFC 5322 specials: a name holding one is quoted
_URI_ITEM = re.compile(r"\s*(<[^>]*>|[^,<]+)\s*(?:,|$)")


def _longest_line(folded: str) -> int:
    return max(len(line) for line in folded.splitlines())


class _AddressHeader(UniqueAddressHeader):
    """From and To: folded by the email package, or, when that leaves a line over 78 characters
    or folds inside a quoted display name (Python 3.11 then drops the quotes, and `Smith, Ann`
    becomes two addresses), one address a line with each display name as encoded words."""

    def fold(self, *, policy: Policy) -> str:
        folded = super().fold(policy=policy)
        lines = folded.splitlines()
        quoted = any(_SPECIALS.search(address.display_name or "") for address in self.addresses)
        if _longest_line(folded) <= SOFT_LIMIT and (len(lines) == 1 or not quoted):
            return folded
        parts = []
        for address in self.addresses:
            if address.display_name:
                encoded = Header(address.display_name, "utf-8", header_name=self.name).encode(
                    maxlinelen=SOFT_LIMIT - 2, linesep=policy.linesep)
                parts.append(f"{encoded}{policy.linesep} <{address.addr_spec}>")
            else:
                parts.append(address.addr_spec)
        return f"{self.name}: " + f",{policy.linesep} ".join(parts) + policy.linesep


class _UriListHeader(UnstructuredHeader):
    """List-Unsubscribe and List-Unsubscribe-Post: never encoded words; folded after commas."""

    def fold(self, *, policy: Policy) -> str:
        value = str(self)
        if not value.isascii():
            return super().fold(policy=policy)
        items = [m.group(1).strip() for m in _URI_ITEM.finditer(value) if m.group(1).strip()]
        lines = [f"{self.name}: {items[0]}"] if items else [f"{self.name}: "]
        for item in items[1:]:
            if len(lines[-1]) + 2 + len(item) <= SOFT_LIMIT:
                lines[-1] += f", {item}"
            else:
                lines[-1] += ","
                lines.append(f" {item}")
        return policy.linesep.join(lines) + policy.linesep


def _registry() -> HeaderRegistry:
    registry = HeaderRegistry()
    for name in ("from", "to"):
        registry.map_to_type(name, _AddressHeader)
    for name in ("list-unsubscribe", "list-unsubscribe-post", "list-help"):
        registry.map_to_type(name, _UriListHeader)
    return registry


MAIL_POLICY = email_policy.default.clone(header_factory=_registry())
