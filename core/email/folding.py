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

import base64
import re
from email import policy as email_policy
from email.headerregistry import HeaderRegistry, UniqueAddressHeader, UnstructuredHeader
from email.policy import Policy

SOFT_LIMIT = 78  # characters a line, line break not counted (RFC 5322 section 2.1.1)

_URI_ITEM = re.compile(r"\s*(<[^>]*>|[^,<]+)\s*(?:,|$)")


def _longest_line(folded: str) -> int:
    return max(len(line) for line in folded.splitlines())


_EW_PAYLOAD = 42  # UTF-8 bytes an encoded word carries: "=?utf-8?b?" + 56 base64 + "?=" is 68 characters
_LONGEST_QUOTED_WORD = 60


def _encoded_words(text: str) -> list[str]:
    """`text` as RFC 2047 "B" encoded words that each end after a space where the text has one,
    so readers that (wrongly) put a space between encoded words never split a word shorter than
    a line; a longer word is split where it must be."""
    chunks: list[str] = []
    current = ""
    for token in re.findall(r"\S+\s*|\s+", text):
        while len(token.encode()) > _EW_PAYLOAD:
            if current:
                chunks.append(current)
                current = ""
            cut = len(token)
            while len(token[:cut].encode()) > _EW_PAYLOAD:
                cut -= 1
            chunks.append(token[:cut])
            token = token[cut:]
        if len((current + token).encode()) > _EW_PAYLOAD:
            chunks.append(current)
            current = ""
        current += token
    if current:
        chunks.append(current)
    return [f"=?utf-8?b?{base64.b64encode(chunk.encode()).decode('ascii')}?=" for chunk in chunks if chunk]


def _quoted_words(name: str) -> list[str] | None:
    """An ASCII display name as the words of one quoted-string (RFC 5322 section 3.2.4), folded at
    its spaces; None when it is not ASCII, holds a word too long for a line or reads as an encoded word."""
    if not name.isascii() or "=?" in name:
        return None
    words = name.replace("\\", "\\\\").replace('"', '\\"').split()  # runs of spaces read as one
    if any(len(word) > _LONGEST_QUOTED_WORD for word in words):
        return None
    words[0] = '"' + words[0]
    words[-1] += '"'
    return words


def _fold_words(start: str, words: list[str], linesep: str) -> str:
    """`start` then `words`, each after a space, a new line (starting with the space) wherever the
    next word would pass the line's 78 characters; a line never starts empty."""
    lines = start.split(linesep)
    fresh = True  # the current line holds no word yet: the next goes on it whatever its length
    for word in words:
        if fresh or len(lines[-1]) + 1 + len(word) <= SOFT_LIMIT:
            lines[-1] += " " + word
        else:
            lines.append(" " + word)
        fresh = False
    return linesep.join(lines)


class _AddressHeader(UniqueAddressHeader):
    """From and To: folded by the email package when that is safe; otherwise each address on its
    own with its display name as one quoted-string folded at its spaces (ASCII), or as encoded
    words (non-ASCII, a word too long for a line, or a name that would read as an encoded word).

    The email package of Python 3.11 is not safe when it folds inside a quoted display name (it
    drops the quotes, and `Smith, Ann` becomes two addresses), leaves a long word on one line
    whatever its length, and writes `=?…?=` in a name as it is, which every reader then decodes."""

    def fold(self, *, policy: Policy) -> str:
        folded = super().fold(policy=policy)
        lines = folded.splitlines()
        names = [address.display_name or "" for address in self.addresses]
        if not any(names) or (len(lines) == 1 and _longest_line(folded) <= SOFT_LIMIT
                                and not any("=?" in name for name in names)):
            return folded
        parts = []
        for address in self.addresses:
            name = address.display_name
            if not name:
                parts.append([address.addr_spec])
                continue
            words = _quoted_words(name) or _encoded_words(name)
            parts.append([*words, f"<{address.addr_spec}>"])
        out = f"{self.name}:"
        for index, words in enumerate(parts):
            if index:
                out += ","
            out = _fold_words(out, words, policy.linesep)
        return out + policy.linesep


def literal_text(text: str) -> str:
    """An unstructured header value (Subject) to assign to a message built with MAIL_POLICY: text
    holding `=?` as encoded words, so that the email package does not decode what only looks like
    one and a reader shows it as written; other text as it is."""
    if "=?" not in text:
        return text
    return " ".join(_encoded_words(text))


class _SubjectHeader(UnstructuredHeader):
    """Subject: as the email package folds it, but written as encoded words when it holds `=?`
    (see `literal_text`)."""

    def fold(self, *, policy: Policy) -> str:
        value = str(self)
        if "=?" not in value:
            return super().fold(policy=policy)
        return _fold_words(f"{self.name}:", _encoded_words(value), policy.linesep) + policy.linesep


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
    registry.map_to_type("subject", _SubjectHeader)
    for name in ("list-unsubscribe", "list-unsubscribe-post", "list-help"):
        registry.map_to_type(name, _UriListHeader)
    return registry


MAIL_POLICY = email_policy.default.clone(header_factory=_registry())
