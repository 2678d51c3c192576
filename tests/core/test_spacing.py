"""Whitespace control never glues two words, and the HTML and text parts say the same words
(issue 13 item 1): a table of the shapes mail-merge templates take."""
from __future__ import annotations

import re

import pytest

from core.render import TemplateProblem, compile_step, render_step
from core.render.text import html_to_text, looks_like_html

DATA = {"company": "Acme", "title": "CTO", "first_name": "Ann"}
NO_TITLE = {"company": "Acme", "first_name": "Ann"}


def words(text: str) -> list[str]:
    return re.findall(r"[\w']+|[^\w\s]", text)


# (body, variables, the words both parts must say)
SHAPES = [
    pytest.param("<p>At {{ company }}{% if title %} as {{ title }}{% endif %}\nand more.</p>", DATA,
                 "At Acme as CTO and more.", id="html-if-then-line-break"),
    pytest.param("At {{ company }}{% if title %} as {{ title }}{% endif %}\nand more.", DATA,
                 "At Acme as CTO and more.", id="text-if-then-line-break"),
    pytest.param("At {{ company }}{% if title %} as {{ title }}{% endif %}\nand more.", NO_TITLE,
                 "At Acme and more.", id="text-if-false-then-line-break"),
    pytest.param("Hi {{ first_name }},\n{% if title %}\nAs {{ title }} you lead.\n{% endif %}\nThanks", DATA,
                 "Hi Ann, As CTO you lead. Thanks", id="standalone-tags-take-their-lines"),
    pytest.param("Hi {{ first_name }},\n  {% if title %}\nAs {{ title }} you lead.\n  {% endif %}\nThanks", NO_TITLE,
                 "Hi Ann, Thanks", id="indented-standalone-tags"),
    pytest.param("At {{ company }}\n{%- if title %}as {{ title }}{% endif %} today.", DATA,
                 "At Acme as CTO today.", id="explicit-minus-before-a-word"),
    pytest.param("At {{ company }}{% if title -%}\n  as {{ title }}\n{%- endif %}\nand more.", DATA,
                 "At Acme as CTO and more.", id="explicit-minus-both-sides"),
    pytest.param("Hi {{ first_name }}\n{%- if title %}, {{ title }}{% endif %}!", DATA,
                 "Hi Ann, CTO!", id="minus-before-punctuation-adds-no-space"),
    pytest.param("Hello {{ first_name }}\n{{- ' and welcome' }}.", DATA,
                 "Hello Ann and welcome.", id="expression-minus"),
    pytest.param("Dear {{ first_name }}\n{#- a note -#}\n{{ company }} team", DATA,
                 "Dear Ann Acme team", id="comment-minus"),
    pytest.param("<p>{% for w in ['one', 'two'] %}{{ w }}{% endfor %}\nthree</p>", DATA,
                 "onetwo three", id="loop-end-keeps-the-break"),
    pytest.param("<ul>\n{% for x in ['a', 'b'] -%}\n<li>{{ x }}</li>\n{%- endfor %}\n</ul>", DATA,
                 "- a - b", id="minus-between-tags"),
    pytest.param("<p>Hi {{ first_name | default('there') }},</p>\n<p>I was looking at {{ company }}"
                 "{% if title is defined %} and your work as {{ title }}{% endif %}\nand had one idea.</p>", DATA,
                 "Hi Ann, I was looking at Acme and your work as CTO and had one idea.", id="the-demo-step"),
    pytest.param("Hi {{ first_name }},\n{% if title %}{{ title }}{% endif %}\nthanks for your time.", DATA,
                 "Hi Ann, CTO thanks for your time.", id="tags-around-a-value-on-their-own-line"),
    pytest.param("{{ first_name }} {{ company }}{% if title %} {{ title }}{% endif %}\nand more.", DATA,
                 "Ann Acme CTO and more.", id="values-then-an-if-then-a-line-break"),
    pytest.param("Hi {{ first_name }}{# greeting #}\nrocks.", DATA, "Hi Ann rocks.", id="comment-at-a-line-end"),
    pytest.param("Use {% raw %}{{ first_name }}{% endraw %}\nin your templates.", DATA,
                 "Use {{ first_name }} in your templates.", id="raw-block-at-a-line-end"),
    pytest.param("<p>Hi {{ first_name }}\n{%- if title %}\n<b>{{ title }}</b>\n{%- endif %}\nrocks</p>", DATA,
                 "Hi Ann CTO rocks", id="minus-next-to-inline-tags"),
    pytest.param("<p>Dear {{ first_name }}{# x #}\nthanks</p>", DATA, "Dear Ann thanks", id="html-comment-at-a-line-end"),
    pytest.param("<p>Price {{ '5' }}\n{%- if title %}\n<span>€</span>\n{%- endif %}\nper seat</p>", DATA,
                 "Price 5 € per seat", id="minus-around-a-span"),
    pytest.param("Hi {{ first_name }}\n{%- if title -%}\n, {{ title }}{% endif %}!", DATA,
                 "Hi Ann, CTO!", id="minus-both-sides-before-a-comma"),
    pytest.param("<p>Hi {{ first_name }}\n{%- if title -%}\n, {{ title }}{% endif %}!</p>", DATA,
                 "Hi Ann, CTO!", id="html-minus-both-sides-before-a-comma"),
    pytest.param("{{ first_name }} {{- '!' }} {{ company }} {{- 'Co' }}", DATA,
                 "Ann! Acme Co", id="same-line-minus"),
]


@pytest.mark.parametrize(("body", "variables", "expected"), [
    ("{% set extra -%}\n  {% if title %}as {{ title }}{% endif %}\n{%- endset -%}\n"
     "Hi {{ first_name }}{% if extra %}, {{ extra }}{% endif %}.", NO_TITLE, "Hi Ann."),
    ("{% set extra -%}\n  {% if title %}as {{ title }}{% endif %}\n{%- endset -%}\n"
     "Hi {{ first_name }}{% if extra %}, {{ extra }}{% endif %}.", DATA, "Hi Ann, as CTO."),
    ("{% macro slug() -%}\n  {{ company|lower }}\n{%- endmacro -%}\nhttps://cal.example/?c={{ slug()|urlencode }}",
     DATA, "https://cal.example/?c=acme"),
    ("{% set g -%}\n Hello\n{%- endset %}{{ g == 'Hello' }} {{ g|length }}", DATA, "True 5"),
    ("{% macro greet(name) -%}\n  Dear {{ name }}\n{%- endmacro %}{{ greet(first_name) }}, welcome.", DATA,
     "Dear Ann, welcome."),
    ("Book: https://cal.example/?c=\n{{- company|lower }}&x=1", DATA, "Book: https://cal.example/?c=acme&x=1"),
])
def test_captured_values_hold_what_jinja_gives(body, variables, expected):
    assert render_step(compile_step("Hello", body), variables).text == expected


@pytest.mark.parametrize(("body", "variables", "expected"), SHAPES)
def test_whitespace_control_never_glues_words_and_both_parts_agree(body, variables, expected):
    email = render_step(compile_step("Hello", body), variables)
    assert words(email.text) == words(expected)
    assert words(html_to_text(email.html)) == words(email.text)


@pytest.mark.parametrize("body", [
    "{% raw %}{% if x %}\nkept{% endif %}{% endraw %}\nend",
    "A {{ '{%' }} literal\nB",
])
def test_raw_text_and_literals_are_left_alone(body):
    email = render_step(compile_step("Hello", body), DATA)
    assert "{%" in email.text and "\ue002" not in email.text


def test_an_error_keeps_the_authors_line_number():
    body = "Hi {{ first_name }}\n{%- if title %}\n, {{ title }}\n{% endif %}\n\n{{ missing_thing }}"
    with pytest.raises(TemplateProblem) as caught:
        render_step(compile_step("Hello", body), DATA)
    assert caught.value.line == 6


@pytest.mark.parametrize(("body", "is_html"), [
    ("Reply with your <Title> and we will send the right deck.", False),
    ("Sections: <Section> and <Header> as in the doc.", False),
    ("See https://x.example/a<b>c for <small > print.", False),
    ("<p>Hi there", True),
    ("Hi<br>there", True),
    ("Hi <b>there</b>", True),
    ('Click <a href="https://x.example">here</a>', True),
    ("<!DOCTYPE html><title>x</title>", True),
])
def test_a_tag_like_word_in_a_sentence_is_text_not_html(body, is_html):
    email = render_step(compile_step("Hello", body + "\nThanks, Rita"), DATA)
    assert looks_like_html(body) is is_html
    if not is_html:  # the words stay text: escaped in the HTML part, whole in both parts
        assert "&lt;" in email.html
        assert words(email.text) == words(body + "\nThanks, Rita")
        assert words(html_to_text(email.html)) == words(email.text)
