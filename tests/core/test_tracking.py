"""Signed tracking tokens and link handling in HTML."""
from __future__ import annotations

import string

import pytest

from core.tracking import TrackingToken, add_open_pixel, extract_links, rewrite_links, sign_token, verify_token

KEY = b"2b9Wq1Hn3f8vY0kS7pLx4ZcR6tJmA5eD_uGiOoTqBns="
OLD_KEY = b"old-secret-key-material-0123456789abcdef"
OTHER_KEY = b"someone-else's key"
URL_SAFE = set(string.ascii_letters + string.digits + "-_")


@pytest.mark.parametrize("kind, message_id, link_id", [("o", 1, None), ("c", 42, 7), ("u", 2**64 - 1, None),
                                                       ("c", 0, 2**64 - 1)])
def test_round_trip(kind, message_id, link_id):
    token = sign_token(KEY, kind, message_id, link_id)
    assert set(token) <= URL_SAFE
    assert len(token) <= 44
    assert verify_token([KEY], token) == TrackingToken(kind=kind, message_id=message_id, link_id=link_id)


def test_any_listed_key_verifies_so_keys_can_rotate():
    token = sign_token(OLD_KEY, "o", 5)
    assert verify_token([KEY, OLD_KEY], token) == TrackingToken("o", 5, None)
    assert verify_token([KEY], token) is None
    assert verify_token([], token) is None


def test_a_token_signed_with_a_foreign_key_is_refused():
    assert verify_token([KEY], sign_token(OTHER_KEY, "c", 5, 1)) is None


@pytest.mark.parametrize("kind, link_id", [("o", None), ("c", 3)])
def test_changing_any_single_character_of_a_token_makes_it_invalid(kind, link_id):
    token = sign_token(KEY, kind, 123456, link_id)
    alphabet = sorted(URL_SAFE)
    tampered_count = 0
    for position, original in enumerate(token):
        for replacement in alphabet:
            if replacement == original:
                continue
            tampered = token[:position] + replacement + token[position + 1 :]
            assert verify_token([KEY], tampered) is None, (position, replacement)
            tampered_count += 1
    assert tampered_count == len(token) * (len(alphabet) - 1)


@pytest.mark.parametrize("token", ["", "x", "not a token", "=" * 34, None, 12345])
def test_malformed_tokens_are_refused(token):
    assert verify_token([KEY], token) is None  # type: ignore[arg-type]


def test_truncated_extended_and_padded_tokens_are_refused():
    token = sign_token(KEY, "c", 9, 9)
    for variant in (token[:-1], token + "A", token + "=", "A" + token, token[1:], token.upper(), token[::-1]):
        assert verify_token([KEY], variant) is None


def test_a_link_id_from_another_message_gives_a_different_token():
    first = sign_token(KEY, "c", 100, 5)
    second = sign_token(KEY, "c", 101, 5)
    assert first != second
    assert verify_token([KEY], first) == TrackingToken("c", 100, 5)
    assert verify_token([KEY], second) == TrackingToken("c", 101, 5)


def test_kinds_are_part_of_what_is_signed():
    tokens = {sign_token(KEY, "o", 8), sign_token(KEY, "u", 8), sign_token(KEY, "c", 8, 0)}
    assert len(tokens) == 3
    assert {verify_token([KEY], t).kind for t in tokens} == {"o", "u", "c"}


@pytest.mark.parametrize("args", [("x", 1, None), ("c", 1, None), ("o", 1, 2), ("u", 1, 0), ("o", -1, None),
                                  ("o", 2**64, None), ("o", True, None), ("c", 1, -3), ("o", "1", None)])
def test_signing_refuses_bad_parts(args):
    with pytest.raises(ValueError):
        sign_token(KEY, *args)


def test_signing_refuses_an_empty_key():
    with pytest.raises(ValueError):
        sign_token(b"", "o", 1)


# --- links ---------------------------------------------------------------------------------------

HTML = """<html><body>
<p>Hi, <a href="https://example.com/demo?x=1&amp;y=2" class="btn">demo</a>
<a href="mailto:rep@example.com">mail</a> <a href="tel:+15551234">call</a> <a href="#top">top</a>
<a href="javascript:alert(1)">js</a> <a href=" JavaScript:alert(2)">js2</a> <a href="java&#x0A;script:alert(3)">js3</a>
<a href="data:text/html,<b>x</b>">data</a> <a href="/relative/path">rel</a> <a href="page.html">rel2</a>
<a href="//evil.com/x">proto-relative</a> <a href="https:/evil.com">one slash</a> <a>no href</a>
<A HREF='HTTP://Example.com/Upper'>upper</A>
<a href="https://example.com/demo?x=1&y=2">same again</a>
<a
   href="http://example.org/multi-line"
   title="t">multi</a>
<a href="  https://example.net/padded  ">padded</a></p>
</body></html>"""

EXPECTED_LINKS = ["https://example.com/demo?x=1&y=2", "HTTP://Example.com/Upper", "http://example.org/multi-line",
                  "https://example.net/padded"]
UNTOUCHED = ['<a href="mailto:rep@example.com">', '<a href="tel:+15551234">', '<a href="#top">',
             '<a href="javascript:alert(1)">', '<a href=" JavaScript:alert(2)">', '<a href="java&#x0A;script:alert(3)">',
             '<a href="data:text/html,<b>x</b>">', '<a href="/relative/path">', '<a href="page.html">',
             '<a href="//evil.com/x">', '<a href="https:/evil.com">', "<a>no href</a>"]


def test_extract_links_keeps_http_links_in_order_once_each():
    assert extract_links(HTML) == EXPECTED_LINKS


def test_rewrite_links_replaces_tracked_links_and_nothing_else():
    asked: list[str] = []

    def url_for(url: str) -> str | None:
        asked.append(url)
        return f"https://t.example/c/{len(asked)}?u=\"x\"&v=1"

    rewritten = rewrite_links(HTML, url_for)
    assert asked == ["https://example.com/demo?x=1&y=2", "HTTP://Example.com/Upper",
                     "https://example.com/demo?x=1&y=2", "http://example.org/multi-line", "https://example.net/padded"]
    for tag in UNTOUCHED:
        assert tag in rewritten
    assert extract_links(rewritten) == [f'https://t.example/c/{n}?u="x"&v=1' for n in range(1, 6)]
    # Everything outside the five rewritten <a> start tags is exactly as it was.
    expected = HTML
    for original, n, rest in [('<a href="https://example.com/demo?x=1&amp;y=2" class="btn">', 1, ' class="btn"'),
                              ("<A HREF='HTTP://Example.com/Upper'>", 2, ""),
                              ('<a href="https://example.com/demo?x=1&y=2">', 3, ""),
                              ('<a\n   href="http://example.org/multi-line"\n   title="t">', 4, ' title="t"'),
                              ('<a href="  https://example.net/padded  ">', 5, "")]:
        assert expected.count(original) == 1
        expected = expected.replace(original, f'<a href="https://t.example/c/{n}?u=&quot;x&quot;&amp;v=1"{rest}>')
    assert rewritten == expected


def test_rewrite_links_never_touches_links_refused_by_url_for():
    rewritten = rewrite_links(HTML, lambda url: None if "example.com" in url.lower() else "https://t.example/x")
    assert '<a href="https://example.com/demo?x=1&amp;y=2" class="btn">' in rewritten
    assert "<A HREF='HTTP://Example.com/Upper'>" in rewritten
    assert rewritten.count("https://t.example/x") == 2


def test_dangerous_and_relative_links_are_never_offered_for_tracking():
    html = ('<a href="//evil.com">a</a><a href="javascript:location=\'//evil.com\'">b</a>'
            '<a href="\\\\evil.com">c</a><a href="https:\\\\evil.com">d</a><a href="https://good.example\\@evil.com">e</a>')
    assert extract_links(html) == []
    assert rewrite_links(html, lambda url: pytest.fail(f"url_for called with {url}")) == html


def test_rewrite_without_links_returns_the_same_text():
    html = "<p>No links here, just <b>text</b> &amp; entities.</p>"
    assert rewrite_links(html, lambda url: "https://t.example/") == html
    assert extract_links(html) == []


def test_open_pixel_goes_before_the_end_of_the_body():
    html = add_open_pixel("<html><body><p>Hi</p></body></html>", "https://t.example/o/abc?x=1&y=2")
    assert html == ('<html><body><p>Hi</p><img src="https://t.example/o/abc?x=1&amp;y=2" width="1" height="1" '
                    'alt="" style="display:block;width:1px;height:1px;border:0"></body></html>')


def test_open_pixel_is_appended_to_a_fragment():
    html = add_open_pixel("<p>Hi</p>", "https://t.example/o/abc")
    assert html.startswith("<p>Hi</p><img src=\"https://t.example/o/abc\" width=\"1\" height=\"1\"")
    assert html.endswith(">")
    assert add_open_pixel("<p>a</p></BODY ></html>", "u").index("<img") == len("<p>a</p>")


def test_the_unsubscribe_footer_goes_in_both_parts_before_the_end_of_the_body():
    from core.tracking import add_unsubscribe_footer

    html, text = add_unsubscribe_footer("<html><body><p>Hi</p></body></html>", "Hi\n",
                                        "https://c.test/u/tok?a=1&b=2")
    assert html.endswith('<a href="https://c.test/u/tok?a=1&amp;b=2">Unsubscribe</a>.</p></body></html>')
    assert text == "Hi\n\n--\nNot interested? Unsubscribe: https://c.test/u/tok?a=1&b=2\n"
    assert add_unsubscribe_footer("<p>Hi</p>", "Hi", "https://c.test/u/t")[0].startswith("<p>Hi</p><p ")
