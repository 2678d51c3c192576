"""Preparing one contact (core/preparation.py): the exclusion rules in their order, every step
rendered, threaded subjects, tracked links, and the campaign-level checks made before any contact."""
from __future__ import annotations

import pytest
from email_validator import EmailNotValidError, validate_email

from core.definition import parse_campaign
from core.preparation import (
    AddressCheck,
    Cause,
    ContactFacts,
    LinkCache,
    Rules,
    compile_campaign,
    exclusion_problems,
    prepare_contact,
)
from core.render import RenderLimits

CAMPAIGN = """\
name: Spring
{extra}steps:
  - day: 1
    send: choose_at_launch
    subject: "Hello {{{{ first_name }}}}"
    body: "<p>Hi {{{{ first_name }}}}, <a href='https://example.org/x?a=1'>x</a> <A HREF=\\"https://example.org/y\\">y</A> <a href='https://example.org/x?a=1'>again</a></p>"
  - day: 2
    send: same_as_previous
    thread: true
    body: "Bump, {{{{ company | default('there') }}}}."
  - day: 4
    send: same_as_previous
    thread: true
    body: "Last one."
"""


def spec_of(extra: str = ""):
    return parse_campaign(CAMPAIGN.format(extra=extra), source="spring.yml", read_file=lambda path: "")


def compiled(extra: str = ""):
    campaign, problems = compile_campaign(spec_of(extra))
    assert problems == []
    return campaign


def facts(email: str = "ada@example.com", **changes) -> ContactFacts:
    values = dict(email=email, address_valid=True, variables={"first_name": "Ada"})
    values.update(changes)
    return ContactFacts(**values)


def test_every_step_is_rendered_with_threaded_subjects_and_the_links_to_track():
    outcome = prepare_contact(compiled(), facts(), Rules())
    assert not outcome.excluded and outcome.cause is None
    first, second, third = outcome.steps
    assert [s.position for s in outcome.steps] == [1, 2, 3]
    assert [s.subject for s in outcome.steps] == ["Hello Ada", "Re: Hello Ada", "Re: Hello Ada"]  # never "Re: Re:"
    assert first.links == ("https://example.org/x?a=1", "https://example.org/y")  # each link once, in order
    assert "Hi Ada" in first.html and "Hi Ada" in first.text
    assert "https://example.org/y" in first.text  # the text part keeps the link targets
    assert second.html == "<p>Bump, there.</p>" and second.text == "Bump, there."
    assert second.links == () and third.text == "Last one."


def test_no_links_are_collected_when_clicks_are_not_tracked():
    outcome = prepare_contact(compiled("track: {clicks: false}\n"), facts(), Rules())
    assert [s.links for s in outcome.steps] == [(), (), ()]


# (facts changes, rules, expected cause, words of the detail). The order of the table is the order
# of the rules: each row also carries every later rule's reason, to show the first one wins.
RULES = Rules(check_active_elsewhere=True, do_not_contact_domains=frozenset({"rival.example"}))
LATER = dict(opted_out=True, bounced=True, replied=True, active_elsewhere="Autumn")


@pytest.mark.parametrize(("changes", "rules", "cause", "words"), [
    (dict(address_valid=False, duplicate_of=7, **LATER), RULES, Cause.INVALID_ADDRESS, "is not a valid address"),
    (dict(email="ada@example.com\r\nBcc: x@y.example", duplicate_of=7, **LATER), RULES, Cause.UNSAFE_HEADER,
     "to address"),
    (dict(display_name="Ada\nBcc: x@y.example", duplicate_of=7, **LATER), RULES, Cause.UNSAFE_HEADER, "to name"),
    (dict(duplicate_of=7, **LATER), RULES, Cause.DUPLICATE_ADDRESS, "already targeted by enrollment 7"),
    (dict(LATER), RULES, Cause.OPTED_OUT, "unsubscribed"),
    (dict(LATER, opted_out=False), RULES, Cause.BOUNCED, "bounced"),
    (dict(email="ceo@Rival.Example", replied=True, active_elsewhere="Autumn"), RULES, Cause.DO_NOT_CONTACT_DOMAIN,
     "rival.example is on the do-not-contact list"),
    (dict(replied=True, active_elsewhere="Autumn"), RULES, Cause.REPLIED, "already replied"),
    (dict(active_elsewhere="Autumn"), RULES, Cause.ACTIVE_ELSEWHERE, "active in campaign 'Autumn'"),
    (dict(active_elsewhere="Autumn"), Rules(check_active_elsewhere=False), None, ""),
    (dict(email="ceo@rival.example"), Rules(), None, ""),
])
def test_the_first_rule_that_applies_excludes_the_contact(changes, rules, cause, words):
    outcome = prepare_contact(compiled(), facts(**changes), rules)
    assert outcome.cause == cause
    assert words in outcome.detail
    assert outcome.excluded is (cause is not None)
    assert (outcome.steps == ()) is (cause is not None)


@pytest.mark.parametrize(("variables", "cause", "position", "words"), [
    ({}, Cause.MISSING_VARIABLE, 1, "step 1: first_name has no value and no default"),
    ({"first_name": None}, Cause.MISSING_VARIABLE, 1, "first_name has no value"),
    ({"first_name": "Ada\r\nBcc: x@y.example"}, Cause.UNSAFE_HEADER, 1, "step 1:"),
])
def test_a_contact_whose_data_breaks_a_step_is_excluded_naming_the_step(variables, cause, position, words):
    outcome = prepare_contact(compiled(), facts(variables=variables), Rules())
    assert (outcome.cause, outcome.position) == (cause, position)
    assert words in outcome.detail and outcome.steps == ()


def test_one_contacts_data_over_a_render_limit_excludes_that_contact_as_render_limit():
    outcome = prepare_contact(compiled(), facts(variables={"first_name": "A" * 500}), Rules(),
                              limits=RenderLimits(max_output_chars=100))
    assert (outcome.cause, outcome.position) == (Cause.RENDER_LIMIT, 1)
    assert outcome.detail


@pytest.mark.parametrize(("extra", "global_domains", "switch", "domains"), [
    ("", (), True, frozenset()),
    ("exclusions: {active_elsewhere: false}\n", (), False, frozenset()),
    ("exclusions: {do_not_contact_domains: [Rival.example, '@other.example']}\n", ("@Global.example ", ""), True,
     frozenset({"rival.example", "other.example", "global.example"})),
])
def test_rules_for_a_campaign_merge_its_domains_with_the_global_list(extra, global_domains, switch, domains):
    rules = Rules.for_campaign(spec_of(extra), global_domains)
    assert (rules.check_active_elsewhere, rules.do_not_contact_domains) == (switch, domains)


@pytest.mark.parametrize(("exclusions", "problem"), [
    ({"active_elsewhere": "no"}, "exclusions.active_elsewhere must be true or false, not 'no'"),
    ({"do_not_contact_domains": "rival.example"}, "exclusions.do_not_contact_domains must be a list"),
    ({"do_not_contact_domains": [3]}, "exclusions.do_not_contact_domains must be a list"),
])
def test_malformed_exclusions_are_refused_before_any_contact(exclusions, problem):
    from dataclasses import replace

    spec = replace(spec_of(), exclusions=exclusions)
    [found] = exclusion_problems(spec)
    assert found.startswith(problem)
    with pytest.raises(ValueError, match=problem.split(" must")[0]):
        Rules.for_campaign(spec)
    campaign, problems = compile_campaign(spec)
    assert campaign is None and problems == [found]


def test_a_campaign_without_steps_does_not_compile():
    from dataclasses import replace

    campaign, problems = compile_campaign(replace(spec_of(), steps=()))
    assert campaign is None and problems == ["the campaign has no steps"]


def expected_verdict(address) -> bool:
    try:
        validate_email(address, check_deliverability=False, allow_smtputf8=False)
        return True
    except (EmailNotValidError, TypeError, AttributeError):
        return False


@pytest.mark.parametrize("address", [
    "ada@example.com", "first.last+tag@sub.example.co.uk", "o'neil@example.ie", "ada@b", "ada@localhost",
    "a..b@example.com", ".ada@example.com", "ada@-example.com", "ada@example.com.", "üser@example.com",
    "ada@exämple.com", '"quoted name"@example.com', "x" * 65 + "@example.com", "ada@" + "d" * 250 + ".com",
    "ada", "ada@@example.com", "", 5, None,
])
def test_the_fast_address_check_gives_email_validators_verdict(address):
    check = AddressCheck()
    assert check(address) is expected_verdict(address)
    assert check(address) is expected_verdict(address)  # and again from its per-domain cache


def test_the_address_check_keeps_a_bounded_domain_cache():
    check = AddressCheck(max_domains=2)
    verdicts = [check(f"ada@d{i}.example") for i in range(5)] + [check("ada@not_a_domain")]
    assert verdicts == [True] * 5 + [False]


@pytest.mark.parametrize(("html", "links"), [
    ("<p>no links</p>", ()),
    ("<a href='https://a.example/1'>1</a><a href=\"https://a.example/2\">2</a><a href='https://a.example/1'>1</a>",
     ("https://a.example/1", "https://a.example/2")),
    ("<A HREF='https://a.example/UP'>x</A>", ("https://a.example/UP",)),
    ("<a name='top'>no target</a><a href='https://a.example/x' title='a > b'>x</a>", ("https://a.example/x",)),
])
def test_the_link_cache_finds_each_link_once_in_order(html, links):
    cache = LinkCache(max_entries=1)
    assert cache(html) == links
    assert cache(html) == links  # the same from the cache, even one cleared when full
