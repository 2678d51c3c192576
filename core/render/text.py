"""Text conversion: HTML to readable plain text (`html_to_text`), plain text to HTML paragraphs
(`text_to_html`), and the text-alternative template derived from an HTML template at compile time
(`derive_text_template`), so most renders need no HTML parsing.
"""
from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any, Callable

from jinja2 import nodes
from jinja2.exceptions import TemplateSyntaxError
from markupsafe import escape

from core.links import find_urls
from core.render.problems import TemplateProblem
from core.render.sandbox import DERIVED_TEXT_ENV, HTML_ENV, compile_template


_TAG_NAMES = (r"(?:html|head|body|p|br|div|span|a|b|i|u|em|strong|table|tbody|thead|tr|td|th|ul|ol|li|h[1-6]|img"
              r"|blockquote|pre|code|hr|font|center|style|meta|title|section|header|footer|small|sup|sub)")
# HTML is told by what only markup has: a tag that opens the body, a doctype, a closing tag, a void
# tag (<br>, <hr>, <img …>, <meta …>) or a tag with attributes. A lone `<Title>` or `<b>` inside a
# sentence or a URL is text.
_HTML_HINT = re.compile(
    r"\A\s*<\s*" + _TAG_NAMES + r"\b[^<>]*>|<!doctype\b|</\s*" + _TAG_NAMES + r"\s*>|<\s*(?:br|hr)\s*/?\s*>|<\s*(?:img|meta)\b[^<>]*>"
    r"|<\s*" + _TAG_NAMES + r"\s+[a-z-]+\s*=[^<>]*>",
    re.IGNORECASE,
)


def looks_like_html(body: str) -> bool:
    """True when the body is HTML: a doctype, a closing tag such as </p>, a void tag (<br>, <hr>,
    <img …>) or a tag with attributes (<a href=…>); a lone `<Title>` in a sentence is text."""
    return _HTML_HINT.search(body) is not None


_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")


def _linked(text: str) -> str:
    """Escaped text with its URLs as links (core.links.find_urls: as mail clients link them)."""
    urls = find_urls(text)
    if not urls:
        return str(escape(text))
    out = []
    done = 0
    for found in urls:
        out.append(str(escape(text[done:found.start])))
        out.append(f'<a href="{escape(found.url)}">{escape(found.text)}</a>')
        done = found.end
    out.append(str(escape(text[done:])))
    return "".join(out)


def text_to_html(text: str) -> str:
    """Escaped text in <p> paragraphs with <br> line breaks; http(s) and www. URLs become links."""
    return "\n".join("<p>" + _linked(p.strip("\n")).replace("\n", "<br>\n") + "</p>"
                     for p in _PARAGRAPH_BREAK.split(text) if p.strip())


_PARAGRAPH_TAGS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "ul", "ol",
                             "dl", "hr", "figure"})
_LINE_TAGS = frozenset({"div", "tr", "li", "dt", "dd", "section", "article", "header", "footer", "address",
                        "center", "main", "nav", "aside", "figcaption", "form", "caption"})
_SKIPPED_TAGS = frozenset({"script", "style", "head", "title", "template"})
_TEMPLATE_MARK = re.compile("\ue000(\\d+)\ue001")


class _TextMaker(HTMLParser):
    """Turns HTML into readable plain text: paragraphs and line breaks kept, lists bulleted,
    quotes prefixed with "> ", links written as "text (url)", scripts and styles dropped.

    In template mode the input holds placeholders for Jinja constructs: statements (`markers`) are
    zero-width and never change line layout, expressions count as text."""

    def __init__(self, markers: frozenset[int] = frozenset(), restore: Callable[[str], str] | None = None):
        super().__init__(convert_charrefs=True)
        self._markers = markers
        self._restore = restore or (lambda s: s)
        self._lines: list[str] = []
        self._pieces: list[str] = []
        self._visible = False
        self._space = False
        self._quote = 0
        self._skip = 0
        self._pre = 0
        self._lists: list[list[Any]] = []
        self._links: list[list[Any]] = []  # [display url or None, collected text pieces]
        self.unconvertible = False  # set when the layout depends on how often a statement runs

    # output primitives
    def _emit(self, text: str) -> None:
        if self._visible and self._space:
            self._pieces.append(" ")
            for link in self._links:
                link[1].append(" ")
        self._pieces.append(text)
        for link in self._links:
            link[1].append(text)
        self._visible = True
        self._space = False

    def _text(self, data: str) -> None:
        words = data.split()
        if not words:
            if data and self._visible:
                self._space = True
            return
        if data[0].isspace() and self._visible:
            self._space = True
        self._emit(" ".join(words))
        if data[-1].isspace():
            self._space = True

    def _flush(self) -> None:
        content = "".join(self._pieces).rstrip()
        prefix = "> " * self._quote
        self._lines.append(prefix + content if content else prefix.rstrip())
        self._pieces = []
        self._visible = False
        self._space = False

    def _break(self, blank_lines: int = 0, force: bool = False) -> None:
        # Statements waiting on an empty line go on a line of their own before a blank line, so
        # that the blank line lands after them (after an {% endfor %}, not inside the loop).
        if self._visible or force or (blank_lines and self._pieces):
            self._flush()
        if blank_lines and self._lines and self._lines[-1].replace(">", "").strip():
            self._lines.append(("> " * self._quote).rstrip())

    def _data(self, data: str) -> None:
        if self._pre:
            lines = data.split("\n")
            for number, line in enumerate(lines):
                if number:
                    self._flush()
                if line:
                    self._pieces.append(line)
                    for link in self._links:
                        link[1].append(line)
                    self._visible = True
        else:
            self._text(data)

    # parser callbacks
    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if not self._markers:
            self._data(data)
            return
        done = 0
        for match in _TEMPLATE_MARK.finditer(data):
            if int(match.group(1)) in self._markers:
                if any(kind == "ol" for kind, _ in self._lists):
                    self.unconvertible = True  # item numbers would be fixed at compile time
                self._data(data[done : match.start()])
                self._pieces.append(match.group())
                done = match.end()
        self._data(data[done:])

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_TAGS:
            self._skip += 1
            return
        if self._skip:
            return
        if tag == "br":
            self._break(force=True)
        elif tag in _PARAGRAPH_TAGS:
            self._break(1)
            if tag == "blockquote":
                self._quote += 1
            elif tag == "pre":
                self._pre += 1
            elif tag in ("ul", "ol"):
                self._lists.append([tag, 0])
        elif tag in _LINE_TAGS:
            self._break()
            if tag == "li":
                depth = max(len(self._lists), 1)
                kind = self._lists[-1] if self._lists else ["ul", 0]
                kind[1] += 1
                self._emit("  " * (depth - 1) + (f"{kind[1]}. " if kind[0] == "ol" else "- "))
                self._space = False
        elif tag in ("td", "th"):
            if self._visible:
                self._space = True
        elif tag == "a":
            self._links.append([_display_url(dict(attrs).get("href")), []])
        elif tag == "img" and self._links:
            alt = dict(attrs).get("alt")
            if alt:
                self._text(alt)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS:
            self._skip = max(self._skip - 1, 0)
            return
        if self._skip:
            return
        if tag in _PARAGRAPH_TAGS:
            if tag == "blockquote" and self._quote:
                self._break()
                while self._lines and self._lines[-1] and not self._lines[-1].strip("> "):
                    self._lines.pop()  # the quote's own trailing blank lines
                self._quote -= 1
            self._break(1)
            if tag == "pre" and self._pre:
                self._pre -= 1
            elif tag in ("ul", "ol") and self._lists:
                self._lists.pop()
        elif tag in _LINE_TAGS:
            self._break()
        elif tag == "a" and self._links:
            url, pieces = self._links.pop()
            text = "".join(pieces).strip()
            if url and self._restore(url) != self._restore(text):
                self._space = True
                self._emit(f"({url})" if text else url)

    def result(self) -> str:
        self.close()
        if self._pieces:
            self._flush()
        return "\n".join(self._lines)


def _display_url(href: str | None) -> str | None:
    """How a link's target is shown in text: http(s) URLs as they are, mailto:/tel: without the
    scheme, nothing for fragments, scripts and relative links. Placeholders count as a URL."""
    if not href:
        return None
    url = href.strip()
    lowered = url.lower()
    if lowered.startswith(("http://", "https://")) or url.startswith("\ue000"):
        return url
    if lowered.startswith("mailto:"):
        return url[7:].split("?", 1)[0] or None
    if lowered.startswith("tel:"):
        return url[4:] or None
    return None


_BLANK_RUNS = re.compile(r"\n{3,}")
_TRAILING_SPACE = re.compile(r"[ \t]+$", re.MULTILINE)


def tidy_text(text: str) -> str:
    """Trailing spaces off every line, at most one blank line in a row, no blank lines around."""
    if " \n" in text or "\t\n" in text:
        text = _TRAILING_SPACE.sub("", text)
    if "\n\n\n" in text:
        text = _BLANK_RUNS.sub("\n\n", text)
    return text.rstrip().lstrip("\n")


def html_to_text(html: str) -> str:
    """A plain-text rendering of `html` for the text/plain alternative."""
    maker = _TextMaker()
    maker.feed(html)
    return tidy_text(maker.result())


_JINJA_CONSTRUCT = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
# Filters and constructs whose HTML output differs from what the text template would print.
_HTML_ONLY_FILTERS = frozenset({"safe", "e", "escape", "forceescape", "urlize", "xmlattr"})


def derive_text_template(body: str) -> Any:
    """Compile a text-alternative template from an HTML template's source, or return None when
    the source does not convert cleanly (then the rendered HTML is converted at every render)."""
    if "\ue000" in body or "\ue001" in body:
        return None  # our placeholder characters: cannot mask this source safely
    try:
        tree = HTML_ENV.parse(body)
    except (TemplateSyntaxError, RecursionError):
        return None
    if any(isinstance(node, nodes.Filter) and node.name in _HTML_ONLY_FILTERS for node in tree.find_all(nodes.Filter)):
        return None
    if any(True for _ in tree.find_all((nodes.EvalContextModifier, nodes.MarkSafe, nodes.MarkSafeIfAutoescape))):
        return None
    constructs: list[str] = []
    statements: set[int] = set()

    def placeholder(match: re.Match[str]) -> str:
        source = match.group()
        if source.startswith("{#"):
            return ""
        constructs.append(source)  # whitespace control as written: core.render.spacing keeps words apart
        if source.startswith("{%"):
            statements.add(len(constructs) - 1)
        return f"\ue000{len(constructs) - 1}\ue001"

    masked = _JINJA_CONSTRUCT.sub(placeholder, body)

    def restore(text: str) -> str:
        return _TEMPLATE_MARK.sub(lambda m: constructs[int(m.group(1))], text)

    maker = _TextMaker(markers=frozenset(statements), restore=restore)
    maker.feed(masked)
    derived = maker.result()
    if maker.unconvertible:
        return None
    found = [int(n) for n in _TEMPLATE_MARK.findall(derived)]
    kept_statements = [n for n in found if n in statements]
    if kept_statements != sorted(statements) or len(found) != len(set(found)):
        return None
    if re.search(r"\{[{%#]", _TEMPLATE_MARK.sub("\x00", derived)):
        return None  # literal text that Jinja would read as a construct
    try:
        return compile_template(DERIVED_TEXT_ENV, restore(derived), "body", "")
    except TemplateProblem:
        return None
