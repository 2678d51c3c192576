"""Preparing one contact for a campaign: the exclusion ("typology") rules, then every step rendered.

Pure. A per-contact exclusion is an outcome, not an error; a campaign-level problem (a template
that does not compile, no steps …) is found by `campaign_problems` before any contact is touched.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Mapping, Sequence

from core.campaign import CampaignSpec
from core.headers import HeaderInjection, check_header_value
from core.render import (
    CompiledStep,
    MissingVariable,
    RenderedEmail,
    RenderLimits,
    TemplateProblem,
    compile_step,
    render_step,
)
from core.tracking import extract_links


class Cause(StrEnum):
    """Why a contact is excluded; each rule has its own name, used in KPIs and logs."""

    INVALID_ADDRESS = "invalid_address"
    DUPLICATE_ADDRESS = "duplicate_address"
    OPTED_OUT = "opted_out"
    BOUNCED = "bounced"
    DO_NOT_CONTACT_DOMAIN = "do_not_contact_domain"
    ACTIVE_ELSEWHERE = "active_elsewhere"
    REPLIED = "replied"
    MISSING_VARIABLE = "missing_variable"
    RENDER_ERROR = "render_error"
    UNSAFE_HEADER = "unsafe_header"


@dataclass(frozen=True)
class ContactFacts:
    """What the store knows about a contact that the rules look at."""

    email: str  # as stored
    address_valid: bool
    variables: Mapping[str, Any]  # template variables: known fields with a value, custom fields
    opted_out: bool = False
    bounced: bool = False
    replied: bool = False  # replied to this campaign (or an earlier run of it)
    active_elsewhere: str | None = None  # name of another campaign they are active in
    duplicate_of: int | None = None  # enrollment id holding the same address in this campaign


@dataclass(frozen=True)
class Rules:
    check_active_elsewhere: bool = True
    do_not_contact_domains: frozenset[str] = frozenset()

    @classmethod
    def for_campaign(cls, spec: CampaignSpec, global_domains: Sequence[str] = ()) -> "Rules":
        domains = {d.lower().lstrip("@") for d in (*global_domains, *spec.exclusions.get("do_not_contact_domains", []))}
        return cls(bool(spec.exclusions.get("active_elsewhere", True)), frozenset(domains))


@dataclass(frozen=True)
class PreparedStep:
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

    @property
    def excluded(self) -> bool:
        return self.cause is not None


@dataclass(frozen=True)
class CompiledCampaign:
    spec: CampaignSpec
    steps: tuple[CompiledStep, ...]


def compile_campaign(spec: CampaignSpec) -> tuple[CompiledCampaign | None, list[str]]:
    """Compile every step once. Returns the compiled campaign, or None and one sentence per problem."""
    problems = []
    if not spec.steps:
        problems.append("the campaign has no steps")
    compiled = []
    for step in spec.steps:
        try:
            compiled.append(compile_step(step.subject, step.body, where=f"step {step.position}"))
        except TemplateProblem as problem:
            problems.append(str(problem))
    return (None, problems) if problems else (CompiledCampaign(spec, tuple(compiled)), [])


def check_rules(facts: ContactFacts, rules: Rules) -> Outcome | None:
    """The first exclusion rule the contact falls under, in a fixed order, else None."""
    if not facts.address_valid:
        return Outcome(Cause.INVALID_ADDRESS, f"{facts.email!r} is not a valid address")
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
    for spec_step, compiled in zip(campaign.spec.steps, campaign.steps):
        try:
            rendered: RenderedEmail = render_step(compiled, facts.variables, limits=limits)
        except MissingVariable as missing:
            return Outcome(Cause.MISSING_VARIABLE,
                           f"step {spec_step.position}: {missing.variable} has no value and no default")
        except TemplateProblem as problem:
            return Outcome(Cause.RENDER_ERROR, f"step {spec_step.position}: {problem}")
        subject = rendered.subject
        if spec_step.subject is None and prepared:
            previous = prepared[-1].subject
            subject = previous if previous.lower().startswith("re:") else f"Re: {previous}"
        try:
            check_header_value(f"step {spec_step.position} subject", subject)
        except HeaderInjection as refused_header:
            return Outcome(Cause.UNSAFE_HEADER, str(refused_header))
        links = tuple(extract_links(rendered.html)) if campaign.spec.track_clicks else ()
        prepared.append(PreparedStep(spec_step.position, subject, rendered.html, rendered.text, links))
    return Outcome(None, "", tuple(prepared))
