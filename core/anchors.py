"""The <a> start tags of an HTML document as Python's `html.parser.HTMLParser` reads them: where
each starts, its exact source text and its attributes (names lower-cased, values unquoted and
unescaped, None for an attribute without a value).

Most emails are plain markup: text without '<', and tags whose attributes hold no '<' or '>'. Such
a document is read with one regular expression (`_simple`), which finds what HTMLParser finds
(tests/core/test_anchors.py holds the two side by side). Anything else (comments, declarations,
script or style, a stray '<', an unusual attribute syntax) is read by HTMLParser itself.
"""
from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser

Attrs = list[tuple[str, "str | None"]]

_WS = "[ \t\n\r\f]"  # ASCII only: HTMLParser's \s also takes Unicode spaces, which send us to it
_NAME = "[a-zA-Z][a-zA-Z0-9]*"
_ATTR = (rf"{_WS}+([a-zA-Z_:][-a-zA-Z0-9_:.]*)"
         rf"(?:{_WS}*={_WS}*(\"[^\"<>]*\"|'[^'<>]*'|[^\s\"'=<>`]+))?")
_TOKEN = re.compile(rf"[^<]+|<({_NAME})((?:{_ATTR})*){_WS}*/?>|</{_NAME}{_WS}*>")
_ATTRS = re.compile(_ATTR)
# Elements whose content HTMLParser reads as raw text (some Python versions add the RCDATA ones).
_RAW_TEXT = frozenset({"script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes",
                       "noscript", "plaintext"})


def anchors(html: str) -> list[tuple[int, str, Attrs]]:
    """Every <a> start tag of `html`, in order: (offset of its '<', its source text, its attributes)."""
    found = _simple(html)
    return found if found is not None else _parsed(html)


def _simple(html: str) -> list[tuple[int, str, Attrs]] | None:
    """The anchors of a plain-markup document, or None when `html` is not one."""
    found = []
    position = 0
    for token in _TOKEN.finditer(html):
        if token.start() != position:
            return None
        position = token.end()
        name = token.group(1)
        if name is None:
            continue
        name = name.lower()
        if name in _RAW_TEXT:
            return None
        if name == "a":
            attrs: Attrs = []
            for attr in _ATTRS.finditer(token.group(2)):
                value = attr.group(2)
                if value is not None and value[:1] in "\"'":
                    value = value[1:-1]
                attrs.append((attr.group(1).lower(), unescape(value) if value else value))
            found.append((token.start(), token.group(0), attrs))
    return found if position == len(html) else None


class _AnchorScanner(HTMLParser):
    """Collects every <a> start tag: its position, its exact source text and its attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[tuple[tuple[int, int], str, Attrs]] = []

    def handle_starttag(self, tag: str, attrs: Attrs) -> None:
        if tag == "a":
            self.anchors.append((self.getpos(), self.get_starttag_text() or "", attrs))


def _parsed(html: str) -> list[tuple[int, str, Attrs]]:
    """The anchors as HTMLParser reads them, positions turned into offsets."""
    scanner = _AnchorScanner()
    scanner.feed(html)
    scanner.close()
    line_starts = [0] + [m.end() for m in re.finditer("\n", html)]
    return [(line_starts[line - 1] + column, source, attrs) for (line, column), source, attrs in scanner.anchors]
