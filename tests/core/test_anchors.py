"""core.anchors reads plain markup with one regular expression: it must find exactly the <a> tags
(offset, source text, attributes) that HTMLParser finds, and hand every other document to it."""
from __future__ import annotations

import random

import pytest

from core import anchors as module
from core.anchors import anchors

PLAIN = [
    "",
    "just text, no tags at all & an ampersand > and a greater-than",
    '<p>Hi Ann,</p>\n<p>Here is <a href="https://x.example/a?b=1&amp;c=2">the overview</a>.</p>',
    "<A HREF='https://x.example/Q' Title=\"T &eacute;\">up</A>",
    '<a href=https://x.example/bare>bare</a><a href=x/>slash</a><a href=y />self-closed</a>',
    '<a name="top"></a><a href="">empty</a><a download href="https://x.example/f">flag</a>',
    '<a\nhref="https://x.example/multi"\n  class="c">lines</a>\n\n<br/><img src="i.png" alt="pic">',
    '<a href="https://a.example" href="https://b.example">twice</a>',
    '<a data-x="1" href=\'https://x.example/&#x41;\'>refs</a>',
    "<div><p>caf\u00e9 \u00a0 \U0001F600</p><a href='https://\u00fc.example/'>idn</a></div>",
]

ELSEWHERE = [  # not plain markup: HTMLParser reads them
    '<!-- <a href="https://hidden.example">no</a> --><a href="https://x.example">yes</a>',
    '<script>var s = "<a href=\'https://in.script\'>";</script><a href="https://x.example">after</a>',
    '<style>a{}</style><a href="https://x.example">s</a>',
    '<img alt="<a href=https://in.attr>"><a href="https://x.example">real</a>',
    'a < b <a href="https://x.example">tag</a>',
    '<a href==https://double.equals>x</a>',
    '<a/href="https://slash.sep">x</a>',
    '<a href=a\u00a0b>unicode space</a>',
    '<!DOCTYPE html><a href="https://x.example">d</a>',
    '<?xml version="1.0"?><a href="https://x.example">pi</a>',
    '<a href="https://x.example"',
    '<title><a href="https://in.title">t</a></title>',
]


@pytest.mark.parametrize("html", PLAIN + ELSEWHERE)
def test_what_htmlparser_finds(html):
    assert anchors(html) == module._parsed(html)


@pytest.mark.parametrize("html", PLAIN)
def test_plain_markup_is_read_without_the_parser(html):
    assert module._simple(html) is not None


@pytest.mark.parametrize("html", ELSEWHERE)
def test_anything_else_goes_to_the_parser(html):
    assert module._simple(html) is None


def _random_document(rng: random.Random) -> str:
    """Markup built from pieces that sit on both sides of the plain-markup line."""
    spaces = [" ", "\n", "\t", "  ", "\u00a0", "\f", "\r\n"]
    names = ["href", "HREF", "title", "data-x", "x:y", "_a", "on.click", "1bad", "a=b"]
    values = ['"https://x.example/p?q=1&amp;r=2"', "'single'", "bare", "bare/", '""', "''", '"a>b"', "'a<b'",
              "with`tick", '"&lt;&#65;&#x42;"', "https://x.example/\u00fc", ""]
    tags = ["a", "a", "a", "A", "p", "br", "img", "div", "script", "style", "title", "textarea", "b1", "x-y"]
    parts = []
    for _ in range(rng.randint(0, 12)):
        kind = rng.random()
        if kind < 0.35:
            parts.append(rng.choice(["Hello ", "caf\u00e9", " & ", "a > b", "\n", "&amp;", "x"]))
        elif kind < 0.8:
            attrs = ""
            for _ in range(rng.randint(0, 3)):
                attrs += rng.choice(spaces) + rng.choice(names)
                if rng.random() < 0.8:
                    attrs += rng.choice(["=", " = ", "==", "="]) + rng.choice(values)
            parts.append(f"<{rng.choice(tags)}{attrs}{rng.choice(['', ' ', '/', ' /'])}>")
        elif kind < 0.95:
            parts.append(f"</{rng.choice(tags)}{rng.choice(['', ' '])}>")
        else:
            parts.append(rng.choice(["<!-- c -->", "<", "<!x>", "<?p?>", "</>", "<a"]))
    return "".join(parts)


def test_random_markup_reads_as_htmlparser_reads_it():
    rng = random.Random(17)
    plain_with_anchors = 0
    for _ in range(10000):
        html = _random_document(rng)
        found = anchors(html)
        assert found == module._parsed(html), html
        plain_with_anchors += bool(found) and module._simple(html) is not None
    assert plain_with_anchors > 200  # the comparison covered the plain-markup reader, not only the fallback
