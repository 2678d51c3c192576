"""Whitespace control that never glues words (issue 13 item 1).

Jinja's `trim_blocks` removes the line break after *every* block tag, so
`…{% endif %}⏎and more` renders `CTOand more`; an explicit `{%-` or `-%}` removes every line break
beside it. Mail-merge authors expect neither. The rules here:

- A block or comment tag that stands alone on its line (only whitespace and other tags beside it)
  takes its line with it, as `trim_blocks` + `lstrip_blocks` do.
- A block tag with text before it on its line keeps the line break after it (Jinja's `+%}`).
- An explicit `-` that would remove a line break removes it only where no word is glued: the
  whitespace becomes a mark (`BREAK_MARK`) that `resolve_breaks` turns into one space between two
  words and into nothing elsewhere (between tags, before punctuation, at a line's start or end).

`prepare_source` runs on a template's source before it is compiled; `resolve_breaks` on what it
rendered.
"""
from __future__ import annotations

import re

BREAK_MARK = "\ue002"  # private use: never in an author's text; contact data holding it loses it

# A Jinja construct with its whitespace-control modifiers; comments are constructs too.
_TAG = re.compile(r"(\{[%{#])([-+]?)(.*?)([-+]?)([%}#]\})", re.DOTALL)
_RAW = re.compile(r"\{%[-+]?\s*raw\s*[-+]?%\}.*?\{%[-+]?\s*endraw\s*[-+]?%\}", re.DOTALL)
_TRAILING_WHITESPACE = re.compile(r"\s+\Z")
_LEADING_WHITESPACE = re.compile(r"\A\s+")

# One space when the mark sits between the end of a word (or closing punctuation) and the start of
# one; nothing otherwise.
_BETWEEN_WORDS = re.compile(f"(?<=[\\w.,;:!?)\\]\"'”’»%]){BREAK_MARK}+(?=[\\w(\\[\"'“‘«¿¡$€£@#])")


def _mark(whitespace: str) -> str:
    """The mark, then the removed line breaks inside a comment so that error line numbers hold."""
    return BREAK_MARK + "{#" + "\n" * whitespace.count("\n") + "#}"


def _tags_only(text: str) -> bool:
    """True when `text` (part of one line) holds nothing but whitespace and Jinja tags."""
    return not _TAG.sub("", text).strip()


def prepare_source(source: str) -> str:
    """Rewrite a template's whitespace control as the module docstring says; the result compiles in
    an environment with `trim_blocks` and `lstrip_blocks` on. Raw blocks are left as they are."""
    if "{" not in source:
        return source
    out: list[str] = []
    position = 0
    raw_spans = [m.span() for m in _RAW.finditer(source)]
    for match in _TAG.finditer(source):
        start, end = match.span()
        if any(a <= start < b for a, b in raw_spans):
            continue
        opening, left, inner, right, closing = match.groups()
        before = source[position:start]
        if left == "-":
            stripped = _TRAILING_WHITESPACE.search(before)
            if stripped and "\n" in stripped.group():
                before = before[: stripped.start()] + _mark(stripped.group())
                left = ""
        out.append(before)
        position = end
        after = source[end:]
        if right == "-":
            stripped = _LEADING_WHITESPACE.search(after)
            if stripped and "\n" in stripped.group():
                position = end + stripped.end()
                out.append(opening + left + inner + closing + _mark(stripped.group()))
                continue
        elif opening == "{%" and right == "" and after.startswith(("\n", "\r\n")):
            line_start = source.rfind("\n", 0, start) + 1
            if not _tags_only(source[line_start:start]):
                right = "+"  # text before the tag on its line: keep the line break after it
        out.append(opening + left + inner + right + closing)
    out.append(source[position:])
    return "".join(out)


def resolve_breaks(text: str) -> str:
    """Turn the marks left by `prepare_source` into one space between words, nothing elsewhere."""
    if BREAK_MARK not in text:
        return text
    return _BETWEEN_WORDS.sub(" ", text).replace(BREAK_MARK, "")
