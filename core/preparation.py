"""Preparing one contact for a campaign: the exclusion ("typology") rules, then every step rendered.

Pure. A per-contact exclusion is an outcome, not an error; a campaign-level problem (a template
that does not compile, no steps, bad exclusion options …) is found by `compile_campaign` before
any contact is touched. A step that renders with an error that is not the contact's data
(a sandbox refusal) comes back as cause RENDER_ERROR: the caller decides whether that fails the
whole preparation (it does for `cadence prepare`). A render limit hit with one contact's data
comes back as cause RENDER_LIMIT (that contact is excluded); `compile_campaign` renders every
step once with placeholder data first, so a template over a limit without any contact's data
fails the campaign instead.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Mapping, NamedTuple, Sequence

from email_validator import EmailNotValidError, validate_email
from jinja2 import Environment, nodes

from core.campaign import CampaignSpec
from core.headers import HeaderInjection, check_header_value
from core.render import (
    CompiledStep,
    MissingVariable,
    RenderedEmail,
    RenderLimitExceeded,
    RenderLimits,
    TemplateProblem,
    render_context,
    UnsafeSubject,
    compile_step,
    render_step,
)
from core.tracking import extract_links


class Cause(StrEnum):
    """Why a contact is excluded; each rule has its own name, used in KPIs and logs."""

    INVALID_ADDRESS = "invalid_address"
    UNSAFE_HEADER = "unsafe_header"
    DUPLICATE_ADDRESS = "duplicate_address"
    OPTED_OUT = "opted_out"
    BOUNCED = "bounced"
    DO_NOT_CONTACT_DOMAIN = "do_not_contact_domain"
    REPLIED = "replied"
    ACTIVE_ELSEWHERE = "active_elsewhere"
    MISSING_VARIABLE = "missing_variable"
    RENDER_ERROR = "render_error"
    RENDER_LIMIT = "render_limit"


@dataclass(frozen=True)
class ContactFacts:
    """What the store knows about a contact that the rules look at."""

    email: str  # as stored
    address_valid: bool
    variables: Mapping[str, Any]  # template variables: known fields with a value, custom fields
    opted_out: bool = False
    bounced: bool = False
    replied: bool = False  # replied to any campaign
    active_elsewhere: str | None = None  # name of another running campaign they are active in
    duplicate_of: int | None = None  # enrollment id holding the same address in this campaign
    display_name: str | None = None  # "First Last", the To header's display name


@dataclass(frozen=True)
class Rules:
    check_active_elsewhere: bool = True
    do_not_contact_domains: frozenset[str] = frozenset()

    @classmethod
    def for_campaign(cls, spec: CampaignSpec, global_domains: Sequence[str] = ()) -> "Rules":
        """The campaign's rules; raises ValueError naming the option when `exclusions:` is malformed."""
        problems = exclusion_problems(spec)
        if problems:
            raise ValueError(problems[0])
        listed = spec.exclusions.get("do_not_contact_domains") or []
        domains = {d.strip().lower().lstrip("@") for d in (*global_domains, *listed)}
        return cls(spec.exclusions.get("active_elsewhere", True), frozenset(d for d in domains if d))


def exclusion_problems(spec: CampaignSpec) -> list[str]:
    """One sentence per malformed `exclusions:` option of the campaign."""
    problems = []
    switch = spec.exclusions.get("active_elsewhere", True)
    if not isinstance(switch, bool):
        problems.append(f"exclusions.active_elsewhere must be true or false, not {switch!r}")
    domains = spec.exclusions.get("do_not_contact_domains", []) or []
    if not isinstance(domains, list) or not all(isinstance(d, str) for d in domains):
        problems.append("exclusions.do_not_contact_domains must be a list of domain names such as [a.example]")
    return problems


class PreparedStep(NamedTuple):
    """One step of one contact, rendered (immutable; a named tuple, as `RenderedEmail`)."""

    position: int
    subject: str
    html: str
    text: str
    links: tuple[str, ...]


@dataclass(frozen=True)
class Outcome:
    cause: Cause | None = None
    detail: str = ""
    steps: tuple[PreparedStep, ...] = field(default=())
    position: int | None = None  # the step at fault, for causes found while rendering
    variable: str | None = None  # the template variable without a value (missing_variable)

    @property
    def excluded(self) -> bool:
        return self.cause is not None


class CompiledCampaign:
    """Every step compiled once, plus the caches one preparation shares across its contacts."""

    def __init__(self, spec: CampaignSpec, steps: tuple[CompiledStep, ...]):
        self.spec, self.steps = spec, steps
        self.links = LinkCache()


_PROBE_ENV = Environment()  # parses only: lists the variables a template reads


def compile_campaign(spec: CampaignSpec, limits: RenderLimits = RenderLimits()) -> tuple[CompiledCampaign | None, list[str]]:
    """Compile every step once. Returns the compiled campaign, or None and one sentence per problem."""
    problems = exclusion_problems(spec)
    if not spec.steps:
        problems.append("the campaign has no steps")
    compiled = []
    for step in spec.steps:
        try:
            compiled.append(compile_step(step.subject, step.body, where=f"step {step.position}"))
        except TemplateProblem as problem:
            problems.append(str(problem))
            continue
        over = limit_without_data(compiled[-1], step.subject, step.body, limits)
        if over is not None:
            problems.append(f"{over} (with no contact data: the template itself is over the limit); the "
                            "preparation stops here")
    return (None, problems) if problems else (CompiledCampaign(spec, tuple(compiled)), [])


def limit_without_data(step: CompiledStep, subject: str | None, body: str,
                       limits: RenderLimits = RenderLimits()) -> RenderLimitExceeded | None:
    """Render `step` once with a one-character placeholder for every variable its template reads;
    the limit it hits then (None if none) is the template's own, not any contact's data's."""
    names: set[str] = set()
    for source in (subject, body):
        if source:
            try:
                # Names read anywhere (loop variables too: a placeholder for them is shadowed). No
                # code generation here: Jinja2's optimizer would fold constants like 'a' * 10**9.
                names |= {node.name for node in _PROBE_ENV.parse(source).find_all(nodes.Name) if node.ctx == "load"}
            except Exception:  # noqa: BLE001 - compile_step accepted it; a probe never fails a campaign
                return None
    try:
        render_step(step, {name: "x" for name in names - set(_PROBE_ENV.globals)}, limits=limits)
    except RenderLimitExceeded as hit:
        return hit
    except (TemplateProblem, RecursionError):
        return None
    return None


# -- addresses ---------------------------------------------------------------------------------

# RFC 5322 dot-atom with ASCII atext only: the common case, which email-validator accepts whenever
# the domain is valid and the lengths fit. Anything else goes through email-validator itself.
_SIMPLE_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LOCAL_MAX, _ADDRESS_MAX = 64, 254


class AddressCheck:
    """Syntax check of addresses with email-validator (no network), fast for repeated domains.

    The verdict is email-validator's: a simple ASCII local part is checked here and its domain by
    email-validator once per domain (cached, bounded); any other address goes to email-validator whole.
    """

    def __init__(self, max_domains: int = 50_000):
        self._domains: dict[str, bool] = {}
        self._max = max_domains

    def __call__(self, address: str) -> bool:
        if not isinstance(address, str) or not address.isascii() or address.count("@") != 1:
            return self._full(address)
        local, domain = address.split("@")
        if len(local) > _LOCAL_MAX or len(address) > _ADDRESS_MAX or not _SIMPLE_LOCAL.fullmatch(local):
            return self._full(address)
        verdict = self._domains.get(domain)
        if verdict is None:
            verdict = self._full(f"a@{domain}")
            if len(self._domains) >= self._max:
                self._domains.clear()
            self._domains[domain] = verdict
        return verdict

    @staticmethod
    def _full(address: Any) -> bool:
        try:
            # SMTPUTF8 local parts (josé@…) cannot be sent by Gmail's API, Graph or most servers:
            # excluded as invalid here rather than retried for ever at send time.
            validate_email(address, check_deliverability=False, allow_smtputf8=False)
            return True
        except (EmailNotValidError, TypeError, AttributeError):
            return False


# -- links -------------------------------------------------------------------------------------

_ANCHOR_TAG = re.compile(r"""<a\b(?:[^>"']|"[^"]*"|'[^']*')*>""", re.IGNORECASE)


class LinkCache:
    """`core.tracking.extract_links` of a rendered body, fast: each distinct <a> tag is parsed once.

    A quick scan finds the <a> start tags; each tag's link is looked up in a bounded cache and
    parsed alone on a miss. A tag the scan sees but a browser would not (inside a comment, say)
    only adds a link that is never clicked; the redirect serves stored links only, so nothing
    unsafe comes of it.
    """

    def __init__(self, max_entries: int = 8192):
        self._cache: dict[str, str | None] = {}
        self._max = max_entries

    def __call__(self, html: str) -> tuple[str, ...]:
        if "<a" not in html and "<A" not in html:
            return ()
        links: dict[str, None] = {}
        cache = self._cache
        for tag in _ANCHOR_TAG.findall(html):
            if tag in cache:
                url = cache[tag]
            else:
                found = extract_links(tag)
                url = found[0] if found else None
                if len(cache) >= self._max:
                    cache.clear()
                cache[tag] = url
            if url is not None:
                links[url] = None
        return tuple(links)


# -- the rules and the render ------------------------------------------------------------------

def check_rules(facts: ContactFacts, rules: Rules) -> Outcome | None:
    """The first exclusion rule the contact falls under, in a fixed order, else None."""
    if not facts.address_valid:
        return Outcome(Cause.INVALID_ADDRESS, f"{facts.email!r} is not a valid address")
    try:
        check_header_value("to address", facts.email)
        if facts.display_name:
            check_header_value("to name", facts.display_name)
    except HeaderInjection as refused:
        return Outcome(Cause.UNSAFE_HEADER, str(refused))
    if facts.duplicate_of is not None:
        return Outcome(Cause.DUPLICATE_ADDRESS, f"{facts.email} is already targeted by enrollment {facts.duplicate_of}")
    if facts.opted_out:
        return Outcome(Cause.OPTED_OUT, f"{facts.email} unsubscribed")
    if facts.bounced:
        return Outcome(Cause.BOUNCED, f"an earlier email to {facts.email} bounced")
    domain = facts.email.rsplit("@", 1)[-1].lower()
    if domain in rules.do_not_contact_domains:
        return Outcome(Cause.DO_NOT_CONTACT_DOMAIN, f"{domain} is on the do-not-contact list")
    if facts.replied:
        return Outcome(Cause.REPLIED, f"{facts.email} already replied")
    if rules.check_active_elsewhere and facts.active_elsewhere:
        return Outcome(Cause.ACTIVE_ELSEWHERE, f"{facts.email} is active in campaign {facts.active_elsewhere!r}")
    return None


def prepare_contact(campaign: CompiledCampaign, facts: ContactFacts, rules: Rules,
                    limits: RenderLimits = RenderLimits()) -> Outcome:
    """Apply the rules, then render every step; threaded steps without a subject take Re: <previous>."""
    refused = check_rules(facts, rules)
    if refused:
        return refused
    prepared: list[PreparedStep] = []
    track_clicks = campaign.spec.track_clicks
    context = render_context(facts.variables)
    for spec_step, compiled in zip(campaign.spec.steps, campaign.steps):
        position = spec_step.position
        try:
            rendered: RenderedEmail = render_step(compiled, facts.variables, limits=limits, context=context)
        except MissingVariable as missing:
            return Outcome(Cause.MISSING_VARIABLE, f"step {position}: {missing.variable} has no value and no default",
                           position=position, variable=missing.variable)
        except UnsafeSubject as unsafe:
            return Outcome(Cause.UNSAFE_HEADER, f"step {position}: {unsafe.message}", position=position)
        except RenderLimitExceeded as hit:  # the template alone is within the limits (compile_campaign)
            return Outcome(Cause.RENDER_LIMIT, str(hit), position=position)
        except TemplateProblem as problem:
            return Outcome(Cause.RENDER_ERROR, str(problem), position=position)
        subject = rendered.subject  # checked by render_step; "Re: <previous>" is built from checked ones
        if spec_step.subject is None and prepared:
            previous = prepared[-1].subject
            subject = previous if previous.lower().startswith("re:") else f"Re: {previous}"
        links = campaign.links(rendered.html) if track_clicks else ()
        prepared.append(PreparedStep(position, subject, rendered.html, rendered.text, links))
    return Outcome(None, "", tuple(prepared))
