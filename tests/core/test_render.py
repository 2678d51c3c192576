"""Rendering emails: variables and fallbacks, HTML/text alternatives, threads, sandbox and limits."""
from __future__ import annotations

import threading

import pytest

from core.render import (
    CompiledStep,
    MissingVariable,
    RenderedEmail,
    RenderLimitExceeded,
    RenderLimits,
    TemplateProblem,
    UnsafeSubject,
    compile_step,
    html_to_text,
    looks_like_html,
    quote_previous,
    render_step,
)

WHERE = "campaign.yml step 2"


def one_sentence(message: str) -> bool:
    return "\n" not in message and message.endswith(".") and ". " not in message and len(message) < 400


def render(body: str, subject: str | None = None, limits: RenderLimits = RenderLimits(), **variables) -> RenderedEmail:
    return render_step(compile_step(subject, body, where=WHERE), variables, limits=limits)


def problem_of(body: str, subject: str | None = None, limits: RenderLimits = RenderLimits(), **variables) -> TemplateProblem:
    """The problem raised by compiling or rendering; fails the test when there is none."""
    with pytest.raises(TemplateProblem) as caught:
        render(body, subject, limits, **variables)
    return caught.value


# --- variables and fallbacks ---------------------------------------------------------------------

def test_default_fallback_applies_to_missing_none_and_empty_values():
    template = "Hi {{ first_name | default('there') }},"
    assert render(template).text == "Hi there,"
    assert render(template, first_name=None).text == "Hi there,"
    assert render(template, first_name="").text == "Hi there,"
    assert render(template, first_name="Ann").text == "Hi Ann,"


def test_missing_variable_without_fallback_names_it():
    problem = problem_of("Hello\nWe love {{ company }}!", first_name="Ann")
    assert type(problem) is MissingVariable
    assert problem.variable == "company"
    assert problem.field == "body"
    assert problem.line == 2
    assert str(problem) == (f"{WHERE}, body line 2: 'company' is not defined for this contact "
                            "and there is no default() fallback.")
    assert one_sentence(str(problem))


def test_missing_variable_in_subject_names_the_subject():
    problem = problem_of("Body", subject="Idea for {{ company }}")
    assert type(problem) is MissingVariable
    assert (problem.field, problem.variable, problem.line) == ("subject", "company", 1)


@pytest.mark.parametrize("template", [
    "{{ company | upper }}",
    "{% for tag in tags %}{{ tag }}{% endfor %}",
    "{{ company ~ '!' }}",
    "{{ company.name }}",
    "{% if company == 'x' %}x{% endif %}",
    "{{ company | length }}",
])
def test_every_use_of_a_missing_variable_is_an_error(template):
    problem = problem_of(template)
    assert type(problem) is MissingVariable
    assert problem.variable in ("company", "tags")


def test_is_defined_if_and_or_are_fallbacks():
    template = ("{% if title is defined %}[{{ title }}]{% endif %}"
                "{% if company %}at {{ company }}{% endif %}"
                "{{ nickname or first_name }}")
    assert render(template, first_name="Ann").text == "Ann"
    assert render(template, first_name="Ann", title="CTO", company="Acme", nickname="A").text == "[CTO]at AcmeA"


def test_custom_fields_are_variables():
    template = "{{ first_name }}, your plan {{ plan }} renews on {{ renewal_date | default('soon') }}."
    assert render(template, first_name="Ann", plan="Pro").text == "Ann, your plan Pro renews on soon."
    assert render(template, first_name="Ann", plan="Pro", renewal_date="1 May").text == "Ann, your plan Pro renews on 1 May."


def test_missing_attribute_of_a_custom_mapping_is_named():
    problem = problem_of("{{ extra.plan }}", extra={"seats": 3})
    assert type(problem) is MissingVariable
    assert problem.variable == "plan"
    assert one_sentence(str(problem))


# --- HTML and text alternatives ------------------------------------------------------------------

def test_html_body_autoescapes_contact_values_and_text_alternative_keeps_them_readable():
    email = render("<p>Hi {{ first_name }},</p><p>Thanks</p>", subject="Hello {{ first_name }}",
                   first_name="<script>alert(1)</script>")
    assert "<script>" not in email.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in email.html
    assert email.text == "Hi <script>alert(1)</script>,\n\nThanks"
    assert email.subject == "Hello <script>alert(1)</script>"  # a header is text, never HTML


def test_plain_text_body_renders_unescaped_and_gets_an_escaped_html_alternative():
    body = "Hi {{ name }},\n\nSee https://example.com/a?b=1&c=2.\nThanks\n\n\nAlex\n"
    email = render(body, name="Tom & <Jerry>")
    assert email.text == "Hi Tom & <Jerry>,\n\nSee https://example.com/a?b=1&c=2.\nThanks\n\n\nAlex"
    assert email.html == (
        "<p>Hi Tom &amp; &lt;Jerry&gt;,</p>\n"
        '<p>See <a href="https://example.com/a?b=1&amp;c=2">https://example.com/a?b=1&amp;c=2</a>.<br>\nThanks</p>\n'
        "<p>Alex</p>"
    )


def test_plain_text_bodies_drop_block_tag_lines():
    body = "Hi,\n{% if company %}\nHow is {{ company }}?\n{% endif %}\nBye\n"
    assert render(body, company="Acme").text == "Hi,\nHow is Acme?\nBye"
    assert render(body).text == "Hi,\nBye"


HTML_TEMPLATES = [
    "<p>Hi {{ first_name | default('there') }},</p>\n<p>I noticed {{ company }} &mdash; <b>congrats</b>.</p>",
    "<p>Tags:</p>{% if tags %}<ul>{% for t in tags %}<li>{{ t }}</li>{% endfor %}</ul>{% endif %}<p>End</p>",
    "{% for p in paras %}<p>{{ p }}</p>{% endfor %}<p>Bye</p>",
    '<p>Book a <a href="https://example.com/demo?x=1&amp;y=2">demo</a> or visit <a href="{{ site }}">{{ site }}</a>.</p>',
    "<html><head><title>{{ company }}</title><style>p { color: red }</style></head>"
    "<body><p>Line one<br>Line two</p><blockquote><p>quoted</p><p>more</p></blockquote><p>After</p></body></html>",
    "<div>{% if vip %}<p>VIP {{ first_name }}</p>{% else %}<p>Hello</p>{% endif %}</div><table><tr><td>a</td><td>b</td></tr></table>",
    "<p>Write to <a href='mailto:{{ rep }}'>{{ rep }}</a> or <a href=\"#top\">top</a> "
    "<a href=\"javascript:alert(1)\">x</a></p>{# a comment <p>ignored</p> #}",
    "<ul>{%- for t in tags -%}\n  <li>{{ t }}</li>\n{%- endfor -%}</ul>",
]
VARIABLE_SETS = [
    {"first_name": "Ann", "company": "Acme & Co", "tags": ["a", "b <c>"], "paras": ["one", "two"],
     "site": "https://acme.example", "vip": True, "rep": "rep@example.com"},
    {"company": "Zed", "tags": [], "paras": [], "site": "https://zed.example/x", "vip": False, "rep": "r@example.com"},
]


@pytest.mark.parametrize("template", HTML_TEMPLATES)
def test_text_alternative_derived_at_compile_time_matches_converting_the_html(template):
    step = compile_step(None, template)
    assert step.is_html and step.has_fast_text
    for variables in VARIABLE_SETS:
        email = render_step(step, variables)
        assert email.text == html_to_text(email.html)


def test_text_alternative_falls_back_to_converting_the_rendered_html():
    step = compile_step(None, "<p>{{ signature | safe }}</p><ol>{% for t in tags %}<li>{{ t }}</li>{% endfor %}</ol>")
    assert not step.has_fast_text
    email = render_step(step, {"signature": "<b>Alex</b><br>Sales", "tags": ["x", "y"]})
    assert email.text == "Alex\nSales\n\n1. x\n2. y"


def test_html_to_text_layout():
    html = """<html><head><style>.x{}</style><script>var a = 1;</script></head><body>
    <h1>Title</h1><p>First   paragraph
    continues</p><p>Second<br>line</p>
    <ul><li>one</li><li>two <a href="https://example.com/x">link</a></li></ul>
    <ol><li>alpha</li><li>beta</li></ol>
    <p><a href="https://example.com/same">https://example.com/same</a> <a href="mailto:a@example.com">mail us</a>
    <a href="/relative">relative</a> <a href="https://example.com/img"><img alt="Logo" src="x.png"></a></p>
    <blockquote><p>Earlier</p><blockquote><p>Even earlier</p></blockquote></blockquote>
    <pre>keep   this
  layout</pre><p>caf&eacute; &amp; cr&egrave;me</p></body></html>"""
    assert html_to_text(html) == (
        "Title\n\n"
        "First paragraph continues\n\n"
        "Second\nline\n\n"
        "- one\n- two link (https://example.com/x)\n\n"
        "1. alpha\n2. beta\n\n"
        "https://example.com/same mail us (a@example.com) relative Logo (https://example.com/img)\n\n"
        "> Earlier\n>\n> > Even earlier\n\n"
        "keep   this\n  layout\n\n"
        "café & crème"
    )


@pytest.mark.parametrize("body, expected", [
    ("<p>Hello</p>", True),
    ("Hi<br>there", True),
    ("<!DOCTYPE html><html></html>", True),
    ('Click <a href="https://x.example">here</a>', True),
    ("<DIV class='x'>y</DIV>", True),
    ("Hi {{ name }},\n\nI <3 your product; 2 < 3 and a > b.", False),
    ("Use the <placeholder> field", False),
])
def test_looks_like_html(body, expected):
    assert looks_like_html(body) is expected


# --- subjects ------------------------------------------------------------------------------------

def test_subject_is_stripped_and_rendered_without_escaping():
    email = render("Body", subject="  Quick question, {{ first_name | default('there') }} & co\n", first_name="Ann")
    assert email.subject == "Quick question, Ann & co"


def test_step_without_subject_renders_an_empty_subject():
    step = compile_step(None, "Just bumping this up.")
    assert not step.has_subject
    assert render_step(step, {}).subject == ""


def test_multi_line_subject_template_is_refused_at_compile_time():
    with pytest.raises(TemplateProblem) as caught:
        compile_step("Hello\nBcc: victim@example.com", "Body", where=WHERE)
    assert type(caught.value) is TemplateProblem
    assert caught.value.field == "subject"
    assert one_sentence(str(caught.value))


@pytest.mark.parametrize("value", ["Acme\r\nBcc: victim@example.com", "Acme\nX", "Acme\u2028X", "Acme\x85X",
                                   "=?UTF-8?Q?=0A?=Bcc: x", "Acme\x00"])
def test_subject_with_a_line_break_from_a_contact_value_is_refused(value):
    problem = problem_of("Body", subject="Idea for {{ company }} today", company=value)
    assert type(problem) is UnsafeSubject
    assert problem.field == "subject"
    assert problem.reason in str(problem)
    assert one_sentence(str(problem))


def test_empty_body_is_refused():
    with pytest.raises(TemplateProblem) as caught:
        compile_step("Hi", "  \n ", where=WHERE)
    assert caught.value.field == "body"
    assert str(caught.value) == f"{WHERE}, body: the body is empty."


# --- compile errors ------------------------------------------------------------------------------

@pytest.mark.parametrize("body, line", [
    ("Hello\n{% for x in items %}\nno end", 3),
    ("Hello\n\n{{ name | no_such_filter }}", 3),
    ("{{ name }\n", 1),
    ("ok\n{% frobnicate %}", 2),
])
def test_syntax_errors_are_reported_with_line_and_where(body, line):
    with pytest.raises(TemplateProblem) as caught:
        compile_step("Subject", body, where=WHERE)
    problem = caught.value
    assert type(problem) is TemplateProblem
    assert (problem.field, problem.line) == ("body", line)
    assert str(problem).startswith(f"{WHERE}, body line {line}: ")
    assert one_sentence(str(problem))


def test_subject_syntax_error_names_the_subject():
    with pytest.raises(TemplateProblem) as caught:
        compile_step("Hi {{ first_name", "Body", where=WHERE)
    assert caught.value.field == "subject"


@pytest.mark.parametrize("body", ["{% include 'other.html' %}", "{% import 'm.html' as m %}",
                                  "{% extends 'base.html' %}", "{% from 'm.html' import x %}"])
def test_loading_other_templates_is_refused(body):
    with pytest.raises(TemplateProblem) as caught:
        compile_step(None, body, where=WHERE)
    assert type(caught.value) is TemplateProblem
    assert one_sentence(str(caught.value))


# --- threads -------------------------------------------------------------------------------------

def test_quote_previous_appends_the_previous_email_below_the_new_one():
    previous = RenderedEmail(subject="Quick question", html="<html><body><p>Hi Ann,</p><p>Demo?</p></body></html>",
                             text="Hi Ann,\n\nDemo?")
    new = RenderedEmail(subject="Re: Quick question", html="<p>Just bumping this up.</p>", text="Just bumping this up.")
    threaded = quote_previous(new, previous=previous, previous_from="Alex <alex@example.com>",
                              previous_date="Mon, 23 Nov 2026 at 09:30")
    assert threaded.subject == "Re: Quick question"
    assert threaded.text == ("Just bumping this up.\n\n"
                             "On Mon, 23 Nov 2026 at 09:30, Alex <alex@example.com> wrote:\n"
                             "> Hi Ann,\n>\n> Demo?")
    assert threaded.html.startswith("<p>Just bumping this up.</p>")
    attribution = threaded.html.index("On Mon, 23 Nov 2026 at 09:30, Alex &lt;alex@example.com&gt; wrote:")
    quote = threaded.html.index("<blockquote")
    assert attribution < quote < threaded.html.index("<p>Hi Ann,</p><p>Demo?</p></blockquote>")
    assert "<body>" not in threaded.html  # only the previous body's content is quoted
    assert html_to_text(threaded.html).endswith("wrote:\n\n> Hi Ann,\n>\n> Demo?")


def test_quote_previous_goes_inside_a_full_html_document():
    new = RenderedEmail(subject="s", html="<html><body><p>New</p></body></html>", text="New")
    previous = RenderedEmail(subject="s", html="<p>Old</p>", text="Old")
    html = quote_previous(new, previous=previous, previous_from="a@example.com", previous_date="today").html
    assert html.endswith("<p>Old</p></blockquote></div></body></html>")


# --- sandbox escapes: refused as TemplateProblem ---------------------------------------------------

ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ cycler.__init__.__globals__ }}",
    '{{ "{0.__class__}".format(1) }}',
    "{{ s|attr('format') }}",
    "{{ s|attr('__class__') }}",
    "{{ fmt.format(1) }}",
    "{{ fmt.format_map({'a': 1}) }}",
    "{{ s[private] }}",
    "{{ s['__class__'] }}",
    "{{ range.__self__ }}",
    "{{ s.upper }}",
    "{{ dict }}",
    "{{ tags.append(1) }}",
    "{{ '%*d' % (5, 1) }}",
    "{{ '{:{}}'.format(1, 5) }}",
    "{{ (fmt|attr('format'))(1) }}",
]


@pytest.mark.parametrize("template", ESCAPES)
def test_sandbox_escapes_are_refused_as_template_problems(template):
    problem = problem_of(template, s="hello", fmt="{0.__class__}", private="__class__", tags=[1])
    assert type(problem) is TemplateProblem
    assert problem.field == "body"
    assert one_sentence(str(problem))
    assert str(problem).startswith(f"{WHERE}, body line 1: ")


def test_str_format_still_works_for_plain_fields():
    email = render("{{ '{} has {:>3} seats'.format(company, seats) }} {{ 'Hi %s' % name }}",
                   company="Acme", seats=5, name="Ann")
    assert email.text == "Acme has   5 seats Hi Ann"


def test_escape_via_format_string_from_a_contact_value_does_not_leak():
    problem = problem_of("{{ bio.format(s) }}", bio="{0.__class__.__init__.__globals__}", s="x")
    assert type(problem) is TemplateProblem
    assert "globals" not in problem.message.replace("__globals__", "")


# --- bombs: stopped by limits --------------------------------------------------------------------

BOMBS = [
    ("{{ range(10**9) }}", "max_iterations"),
    ("{% for i in range(10**9) %}x{% endfor %}", "max_iterations"),
    ("{{ 'a'*10**9 }}", "max_output_chars"),
    ("{{ 10**(10**10) }}", "number_size"),
    ("{{ (10**3000) * (10**3000) }}", "number_size"),
    ("{% for i in range(1000) %}{% for j in range(1000) %}x{% endfor %}{% endfor %}", "max_iterations"),
    ("{% for a in range(100) %}{% for b in range(100) %}{% for c in range(100) %}{% endfor %}{% endfor %}{% endfor %}",
     "max_iterations"),
    ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "recursion_depth"),
    ("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}", "max_iterations"),
    ("{% set ns = namespace(x='ab') %}{% for i in range(64) %}{% set ns.x = ns.x ~ ns.x %}{% endfor %}", "max_output_chars"),
    ("{% set ns = namespace(x='ab') %}{% for i in range(64) %}{% set ns.x = ns.x + ns.x %}{% endfor %}", "max_output_chars"),
    ("{% set ns = namespace(x='ab') %}{% for i in range(64) %}{% set ns.x = ns.x|replace('a', 'aa') %}{% endfor %}",
     "max_output_chars"),
    ("{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l }}",
     "max_output_chars"),
    ("{% set a %}{{ big }}{{ big }}{{ big }}{% endset %}{% set b %}{{ a }}{{ a }}{% endset %}{{ b|length }}",
     "max_output_chars"),
    ("{{ 'a'|center(1000000000) }}", "max_output_chars"),
    ("{{ 'a\\nb'|indent(1000000000, true) }}", "max_output_chars"),
    ("{{ '%0999999999d' % 1 }}", "max_output_chars"),
    ("{{ '%s|%s|%s' % (big, big, big) }}", "max_output_chars"),
    ("{{ '{:>999999999}'.format(1) }}", "max_output_chars"),
    ("{{ 'x'.ljust(10**9) }}", "max_output_chars"),
    ("{{ ''.join([big]*10) }}", "max_output_chars"),
    ("{{ [big, big]|join(big) }}", "max_output_chars"),
    ("{{ big|replace('a', big) }}", "max_output_chars"),
    ("{{ [1]|batch(10**9, 'x')|list }}", "max_output_chars"),
    ("{% for i in range(99999) %}{{ big }}{% endfor %}", "max_output_chars"),
]


@pytest.mark.parametrize("template, limit", BOMBS)
def test_bombs_are_stopped_by_the_limit_they_hit(template, limit):
    # The wall-time limit is left out of the race (an hour): on a loaded machine it would win over
    # the limit each bomb is meant to hit. That limit has its own test with an injected timer.
    problem = problem_of(template, limits=RenderLimits(max_seconds=3600), big="a" * 90_000)
    assert type(problem) is RenderLimitExceeded
    assert problem.limit == limit
    assert problem.field == "body"
    assert limit in problem.message
    assert one_sentence(str(problem))


def test_ten_to_the_ten_to_the_ten_is_left_associative_in_jinja_and_harmless():
    assert render("{{ 10**10**10 }}").text == str(10**100)


def test_wall_time_limit_uses_the_injected_timer():
    now = [0.0]

    def slow_clock() -> float:
        now[0] += 0.25  # every look at the clock costs a quarter of a second
        return now[0]

    step = compile_step(None, "{% for i in range(50) %}{{ i }}{% endfor %}", where=WHERE)
    with pytest.raises(RenderLimitExceeded) as caught:
        render_step(step, {}, limits=RenderLimits(max_seconds=2.0), timer=slow_clock)
    assert caught.value.limit == "max_seconds"
    assert one_sentence(str(caught.value))
    # The same template renders fine on a clock that does not move.
    assert render_step(step, {}, timer=lambda: 0.0).text == "".join(str(i) for i in range(50))


def test_wall_time_is_checked_between_output_chunks_without_any_loop():
    now = [0.0]

    def slow_clock() -> float:
        now[0] += 1.0
        return now[0]

    step = compile_step(None, "a {{ x }} b {{ x }} c {{ x }} d {{ x }}", where=WHERE)
    with pytest.raises(RenderLimitExceeded) as caught:
        render_step(step, {"x": 1}, limits=RenderLimits(max_seconds=3.0), timer=slow_clock)
    assert caught.value.limit == "max_seconds"


def test_output_limit_is_enforced_while_streaming():
    limits = RenderLimits(max_output_chars=1_000)
    assert len(render("{% for i in range(90) %}0123456789{% endfor %}", limits=limits).text) == 900
    problem = problem_of("{% for i in range(200) %}0123456789{% endfor %}", limits=limits)
    assert type(problem) is RenderLimitExceeded and problem.limit == "max_output_chars"


def test_iteration_limit_counts_across_the_whole_render():
    limits = RenderLimits(max_iterations=100)
    template = "{% for i in range(60) %}{% endfor %}{% for i in range(60) %}{% endfor %}"
    problem = problem_of(template, limits=limits)
    assert type(problem) is RenderLimitExceeded and problem.limit == "max_iterations"
    assert render("{% for i in range(60) %}{% endfor %}ok", limits=limits).text == "ok"


def test_runtime_errors_become_template_problems():
    problem = problem_of("a\n{{ 1 / n }}", n=0)
    assert type(problem) is TemplateProblem
    assert problem.line == 2
    assert str(problem) == f"{WHERE}, body line 2: the template failed: division by zero."


# --- reuse ---------------------------------------------------------------------------------------

def test_a_compiled_step_renders_correctly_from_many_threads_at_once():
    step: CompiledStep = compile_step("Hi {{ n }}", "<p>{% for i in range(n) %}{{ i }},{% endfor %}</p>")
    results: dict[int, RenderedEmail] = {}
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for _ in range(50):
                results[n] = render_step(step, {"n": n}, limits=RenderLimits(max_iterations=1_000))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for n, email in results.items():
        assert email.subject == f"Hi {n}"
        assert email.text == "".join(f"{i}," for i in range(n))


@pytest.mark.parametrize("body", [
    '<p {% if vip %}class="vip"{% endif %}>Hello {{ name }}</p>',  # a statement inside a tag
    "<p>Hello {{ name }}</p><style>{% if vip %}p { color: red }{% endif %}</style>",  # a statement in a style
    "<p>Hello {{ name }} \ue000</p>",  # our placeholder character in the source
])
def test_templates_that_do_not_convert_cleanly_still_get_a_correct_text_alternative(body):
    step = compile_step(None, body)
    assert not step.has_fast_text
    assert render_step(step, {"name": "Ann", "vip": True}).text.startswith("Hello Ann")


def test_template_problems_survive_pickling_with_their_fields():
    import pickle

    problem = problem_of("x\n{{ company }}")
    copy = pickle.loads(pickle.dumps(problem))
    assert type(copy) is MissingVariable
    assert (copy.variable, copy.field, copy.line, str(copy)) == ("company", "body", 2, str(problem))
