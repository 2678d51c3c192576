"""URLs in plain-text bodies linked as mail clients link them, and URLs and addresses written as
they must travel: IDNA hosts, percent-encoded UTF-8 (issue 13 items 2 and 3)."""
from __future__ import annotations

from email import message_from_bytes, policy

import pytest

from core.email.compose import build_message, wire_address
from core.links import ascii_url, find_urls
from core.mailbox import OutgoingEmail
from core.render import compile_step, render_step
from core.tracking import extract_links, trackable_url


# (plain-text line, the URL a click opens, the text left after it)
SHAPES = [
    ("A https://quote.example/it's-here?z=1", "https://quote.example/it's-here?z=1", ""),
    ("See https://a.example/path.", "https://a.example/path", "."),
    ("Go (https://a.example/x_(y)) now.", "https://a.example/x_(y)", ") now."),
    ("Ask https://a.example/p?q=1&r=2, then", "https://a.example/p?q=1&r=2", ", then"),
    ("Quoted “https://a.example/q” here", "https://a.example/q", "” here"),
    ("Quoted 'https://a.example/q' here", "https://a.example/q", "' here"),
    ("Angle <https://a.example/b> here", "https://a.example/b", "> here"),
    ("Bang http://a.example/path!", "http://a.example/path", "!"),
    ("Colon https://a.example/a:b;c=d:", "https://a.example/a:b;c=d", ":"),
    ("Hash https://a.example/#/route?x=1", "https://a.example/#/route?x=1", ""),
    ("Tilde https://a.example/~ann/%7Ebob", "https://a.example/~ann/%7Ebob", ""),
    ("Port https://a.example:8443/x?y", "https://a.example:8443/x?y", ""),
    ("Upper HTTPS://A.EXAMPLE/X", "HTTPS://A.EXAMPLE/X", ""),
    ("Web www.acme.com/pricing.", "http://www.acme.com/pricing", "."),
    ("IDN https://münchen.example/ü?x=ä", "https://münchen.example/ü?x=ä", ""),
    ("資料（https://x.example/doc）をご覧ください。", "https://x.example/doc", "）をご覧ください。"),
    ("「https://x.example/quote」", "https://x.example/quote", "」"),
    ("'https://x.example/it's'", "https://x.example/it's", "'"),
    ("See https://x.example/a!)", "https://x.example/a", "!)"),
    ("*https://x.example/a*", "https://x.example/a", "*"),
    ("https://x.example/a—now", "https://x.example/a", "—now"),
    ("Wait https://x.example/a… ok", "https://x.example/a", "… ok"),
    ("Wiki (https://a.example/x_(y)) now", "https://a.example/x_(y)", ") now"),
]


@pytest.mark.parametrize(("line", "url", "after"), SHAPES)
def test_a_plain_text_url_is_linked_whole_and_its_punctuation_left_out(line, url, after):
    [found] = find_urls(line)
    assert found.url == url
    assert line[found.end:] == after
    html = render_step(compile_step("Hi", line), {}).html
    assert extract_links(html) == [trackable_url(url)]


@pytest.mark.parametrize("line", ["mailto:a@b.example", "ftp://files.example/a", "acme.example is a domain",
                                  "file:///etc/passwd", "javascript:alert(1)", "no link here"])
def test_what_is_not_a_web_link_stays_text(line):
    assert find_urls(line) == []
    assert "<a " not in render_step(compile_step("Hi", line), {}).html


@pytest.mark.parametrize(("url", "expected"), [
    ("https://münchen.example/ü?x=ä", "https://xn--mnchen-3ya.example/%C3%BC?x=%C3%A4"),
    ("https://ann:pw@bücher.example:8080/a", "https://ann:pw@xn--bcher-kva.example:8080/a"),
    ("https://例え.テスト/パス", "https://xn--r8jz45g.xn--zckzah/%E3%83%91%E3%82%B9"),
    ("https://MÜNCHEN.example/", "https://xn--mnchen-3ya.example/"),
    ("https://a.example/ascii?q=%20&r='x'", "https://a.example/ascii?q=%20&r='x'"),
])
def test_a_url_travels_with_an_idna_host_and_encoded_utf8(url, expected):
    assert ascii_url(url) == expected
    assert trackable_url(url) == expected  # the tracked redirect goes there


def test_a_host_that_is_no_domain_name_is_not_tracked():
    with pytest.raises(ValueError):
        ascii_url("https://a\u200b\u0000b.example/")
    assert trackable_url("https://-ü-.example/") is None


@pytest.mark.parametrize(("address", "expected"), [
    ("anna@münchen.example", "anna@xn--mnchen-3ya.example"),
    ("anna@MÜNCHEN.example", "anna@xn--mnchen-3ya.example"),
    ("li@例え.テスト", "li@xn--r8jz45g.xn--zckzah"),
    ("plain@ascii.example", "plain@ascii.example"),
])
def test_an_idn_domain_is_idna_in_the_to_header(address, expected):
    email = OutgoingEmail(message_id="<m1@cadence.example>", from_address="rita@acme.example",
                          to_address=address, subject="Hi", html_body="<p>Hi</p>", text_body="Hi", to_name="Anna Müller")
    assert wire_address(address) == expected
    raw = build_message(email).as_bytes(policy=policy.SMTP)
    assert b"@=?" not in raw and expected.encode() in raw  # the domain is never an encoded word
    read = message_from_bytes(raw, policy=policy.default)
    assert read["To"].addresses[0].addr_spec == expected
    assert read["To"].addresses[0].display_name == "Anna Müller"
