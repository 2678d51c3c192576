"""Whitespace control that never glues words (issue 13 item 1).

Jinja's `trim_blocks` removes the line break after *every* block tag and comment, so
`…{% endif %}⏎and more` renders `CTOand more`; an explicit `{%-` or `-%}` removes every space and
line break beside it. Mail-merge authors expect neither. The rules here:

- A block tag or comment that stands alone on its line (only whitespace and other block tags or
  comments beside it) takes its line with it, as `trim_blocks` + `lstrip_blocks` do.
- A block tag or comment with anything else on its line (text, a `{{ value }}`) keeps the line
  break after it (Jinja's `+%}` / `+#}`).
- An explicit `-` removes the whitespace beside it only where no word is glued: the whitespace
  becomes a mark (`BREAK_MARK`) that `resolve_breaks` turns into one space between a word (or
  closing punctuation, or a tag's end) and a word (or opening punctuation, or a tag), and into
  nothing elsewhere: before `,` `.` `!`, after `=` or `/` (inside a URL), at either end of a
  captured value. `{% set %}` blocks and macro calls resolve their marks when they return, so a
  captured value never holds one.

`prepare_source` runs on a template's source before it is compiled; `resolve_breaks` on what it
rendered.
"""
from __future__ import annotations

import re

BREAK_MARK = "\ue002"  # private use: never in an author's text; contact data holding it loses it

# A Jinja construct with its whitespace-control modifiers.
_TAG = re.compile(r"(\{[%{#])([-+]?)(.*?)([-+]?)([%}#]\})", re.DOTALL)
_STATEMENT_OR_COMMENT = re.compile(r"\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_RAW_BODY = re.compile(r"\{%[-+]?\s*raw\s*[-+]?%\}(.*?)\{%[-+]?\s*endraw\s*[-+]?%\}", re.DOTALL)
_TRAILING_WHITESPACE = re.compile(r"\s+\Z")
_LEADING_WHITESPACE = re.compile(r"\A\s+")

_WORD_END = r"[\w.,;:!?)\]\"'”’»%>]"
_WORD_START = r"[\w(\[\"'“‘«¿¡$€£@#<]"
_BETWEEN_WORDS = re.compile(f"(?<={_WORD_END}){BREAK_MARK}+(?={_WORD_START})")


def _mark(whitespace: str) -> str:
    """The mark, then the removed line breaks inside a comment so that error line numbers hold."""
    if "\n" not in whitespace:
        return BREAK_MARK
    return BREAK_MARK + "{#" + "\n" * whitespace.count("\n") + "#}"


def _tags_only(text: str) -> bool:
    """True when `text` (part of one line) holds nothing but whitespace, block tags and comments."""
    return not _STATEMENT_OR_COMMENT.sub("", text).strip()


def prepare_source(source: str, *, keep_line_breaks: bool = False) -> str:
    """Rewrite a template's whitespace control as the module docstring says; the result compiles in
    an environment with `trim_blocks` and `lstrip_blocks` on. With `keep_line_breaks` (a text
    template derived from HTML, whose line breaks come from the HTML's structure) a `-` never
    removes a line break. What lies between `{% raw %}` and `{% endraw %}` is left as it is."""

    def mark(whitespace: str) -> str:
        return whitespace if keep_line_breaks and "\n" in whitespace else _mark(whitespace)

    if "{" not in source:
        return source
    out: list[str] = []
    position = 0
    raw_spans = [m.span(1) for m in _RAW_BODY.finditer(source)]
    for match in _TAG.finditer(source):
        start, end = match.span()
        if any(a <= start < b for a, b in raw_spans):
            continue
        opening, left, inner, right, closing = match.groups()
        before = source[position:start]
        if left == "-":
            stripped = _TRAILING_WHITESPACE.search(before)
            if stripped:
                before = before[: stripped.start()] + mark(stripped.group())
            left = ""
        out.append(before)
        position = end
        after = source[end:]
        if right == "-":
            stripped = _LEADING_WHITESPACE.search(after)
            out.append(opening + left + inner + closing + (mark(stripped.group()) if stripped else ""))
            if stripped:
                position = end + stripped.end()
            continue
        if opening in ("{%", "{#") and right == "" and after.startswith(("\n", "\r\n")):
            line_start = source.rfind("\n", 0, start) + 1
            if not _tags_only(source[line_start:start]):
                right = "+"  # something else on the tag's line: keep the line break after it
        out.append(opening + left + inner + right + closing)
    out.append(source[position:])
    return "".join(out)


def resolve_breaks(text: str) -> str:
    """Turn the marks left by `prepare_source` into one space between words, nothing elsewhere."""
    if BREAK_MARK not in text:
        return text
    return _BETWEEN_WORDS.sub(" ", text).replace(BREAK_MARK, "")
