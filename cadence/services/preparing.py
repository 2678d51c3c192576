"""`cadence prepare`: target, exclusion rules and every message rendered, streamed in batches.

Memory stays flat with the audience: enrollments are read by id ranges, messages written with
executemany, and only counters are kept. An interrupted preparation leaves the campaign's last
finished preparation in force (the rows it rewrote belong to no finished preparation, so `send`
refuses until a preparation completes).
"""
from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable

from sqlalchemy import bindparam, delete, func, insert, select, update

from cadence.app import App
from cadence.services.errors import UserError
from cadence.services.events import record
from core.contacts import normalize_email
from core.preparation import CompiledCampaign, ContactFacts, Outcome, Rules, compile_campaign, prepare_contact
from core.vocabulary import CampaignState, EnrollmentState, EventKind, MailboxHealth, MessageState
from store.campaigns import read_spec
from store.models import Campaign, Contact, Enrollment, MailboxRow, Message, Rep

BATCH = 1000
PREPARABLE = {CampaignState.DRAFT, CampaignState.PREPARED, CampaignState.FAILED}
RUNNING = (CampaignState.SENDING.value, CampaignState.SCHEDULED.value, CampaignState.PAUSED.value)
KNOWN_FIELDS = ("first_name", "last_name", "company", "title", "country", "timezone")


@dataclass
class PreparationResult:
    campaign: str
    state: CampaignState
    targeted: int = 0
    to_deliver: int = 0
    to_exclude: int = 0
    messages: int = 0
    exclusions: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    def kpis(self) -> dict:
        return {"targeted": self.targeted, "to_deliver": self.to_deliver, "to_exclude": self.to_exclude,
                "messages": self.messages, "exclusions": dict(self.exclusions), "errors": len(self.errors)}


class PreparationStopped(Exception):
    """The preparation was stopped (Ctrl-C or `cadence stop`); nothing was sent."""


def prepare(app: App, name: str, *, progress: Callable[[int, int], None] | None = None,
            should_stop: Callable[[], bool] = lambda: False) -> PreparationResult:
    now = app.clock.now()
    with app.db.session() as session:
        from cadence.services.audience import campaign_or_error

        campaign = campaign_or_error(session, name)
        state = CampaignState(campaign.state)
        if state not in PREPARABLE:
            raise UserError(f"campaign {campaign.name!r} is {state}; only a campaign not yet sending can be prepared"
                            + ("; people enrolled now are prepared on their own" if campaign.state in RUNNING else ""))
        campaign_id, campaign_name = campaign.id, campaign.name
        previous_state = state
        content_version, audience_version = campaign.content_version, campaign.audience_version
        spec = read_spec(session, campaign)
        campaign.state, campaign.progress = CampaignState.PREPARING.value, 0.0
        record(session, EventKind.PREPARATION_STARTED, now, "preparation started", campaign_id=campaign_id)
    result = PreparationResult(campaign_name, CampaignState.PREPARING)
    try:
        compiled, problems = compile_campaign(spec)
        result.errors += problems
        with app.db.session() as session:
            result.errors += _mailbox_problems(session, campaign_id)
            total = session.scalar(select(func.count()).select_from(Enrollment).where(
                Enrollment.campaign_id == campaign_id, Enrollment.launched_at.is_(None)))
        if compiled is not None and not result.errors:
            rules = Rules.for_campaign(spec)
            done = 0
            for batch in _batches(app, campaign_id):
                if should_stop() or _stopped_elsewhere(app, campaign_id):
                    raise PreparationStopped(f"preparation of {campaign_name!r} stopped; nothing was sent")
                _prepare_batch(app, compiled, rules, campaign_id, batch, result, launch_at=None)
                done += len(batch)
                _set_progress(app, campaign_id, done / total if total else 1.0)
                if progress:
                    progress(done, total)
            if result.to_deliver == 0:
                result.errors.append("no contact to deliver: every targeted contact was excluded or none is enrolled")
    except PreparationStopped:
        with app.db.session() as session:
            campaign = session.get(Campaign, campaign_id)
            campaign.state, campaign.progress = previous_state.value, None
            record(session, EventKind.PREPARATION_FAILED, app.clock.now(),
                   "preparation stopped before it finished; the campaign is as it was", level="warning",
                   campaign_id=campaign_id)
        raise
    except BaseException:
        with app.db.session() as session:
            campaign = session.get(Campaign, campaign_id)
            if campaign.state == CampaignState.PREPARING.value:
                campaign.state, campaign.progress = previous_state.value, None
        raise
    return _finish(app, campaign_id, result, content_version, audience_version)


def _finish(app: App, campaign_id: int, result: PreparationResult, content_version: int,
            audience_version: int) -> PreparationResult:
    now = app.clock.now()
    with app.db.session() as session:
        campaign = session.get(Campaign, campaign_id)
        for error in result.errors:
            record(session, EventKind.PREPARATION_FAILED, now, error, level="error", campaign_id=campaign_id)
        failed = bool(result.errors)
        result.state = CampaignState.FAILED if failed else CampaignState.PREPARED
        campaign.state, campaign.progress = result.state.value, 1.0
        campaign.preparation = result.kpis()
        campaign.prepared_content_version = None if failed else content_version
        campaign.prepared_audience_version = None if failed else audience_version
        record(session, EventKind.PREPARED, now,
               f"preparation {'failed' if failed else 'finished'}: targeted {result.targeted}, "
               f"to deliver {result.to_deliver}, to exclude {result.to_exclude}; {len(result.errors)} error(s)",
               level="error" if failed else "info", campaign_id=campaign_id, data=result.kpis())
    return result


def _mailbox_problems(session, campaign_id: int) -> list[str]:
    rows = session.execute(
        select(MailboxRow.address, MailboxRow.health, MailboxRow.health_reason).where(
            MailboxRow.id.in_(select(Enrollment.mailbox_id).where(Enrollment.campaign_id == campaign_id).distinct()))
    ).all()
    return [f"mailbox {address} is disconnected ({reason or 'reconnect it'}); its messages cannot be sent"
            for address, health, reason in rows if health != MailboxHealth.CONNECTED.value]


def _stopped_elsewhere(app: App, campaign_id: int) -> bool:
    with app.db.session() as session:
        return session.scalar(select(Campaign.state).where(Campaign.id == campaign_id)) != CampaignState.PREPARING.value


def _set_progress(app: App, campaign_id: int, fraction: float) -> None:
    with app.db.session() as session:
        session.execute(update(Campaign).where(Campaign.id == campaign_id).values(progress=fraction))


def _batches(app: App, campaign_id: int) -> Iterable[list[int]]:
    last = 0
    while True:
        with app.db.session() as session:
            ids = session.scalars(select(Enrollment.id).where(
                Enrollment.campaign_id == campaign_id, Enrollment.launched_at.is_(None), Enrollment.id > last)
                .order_by(Enrollment.id).limit(BATCH)).all()
        if not ids:
            return
        last = ids[-1]
        yield list(ids)


def _facts_for(session, campaign_id: int, enrollment_ids: list[int]) -> list[tuple[Enrollment, Contact, Rep, MailboxRow, ContactFacts]]:
    rows = session.execute(
        select(Enrollment, Contact, MailboxRow, Rep)
        .join(Contact, Contact.id == Enrollment.contact_id)
        .join(MailboxRow, MailboxRow.id == Enrollment.mailbox_id)
        .join(Rep, Rep.id == MailboxRow.owner_id)
        .where(Enrollment.id.in_(enrollment_ids)).order_by(Enrollment.id)).all()
    contact_ids = [c.id for _, c, _, _ in rows]
    replied = set(session.scalars(select(Enrollment.contact_id).where(
        Enrollment.contact_id.in_(contact_ids), Enrollment.state == EnrollmentState.REPLIED.value)))
    elsewhere = dict(session.execute(
        select(Enrollment.contact_id, Campaign.name).join(Campaign, Campaign.id == Enrollment.campaign_id).where(
            Enrollment.contact_id.in_(contact_ids), Enrollment.campaign_id != campaign_id,
            Enrollment.state == EnrollmentState.ACTIVE.value, Enrollment.launched_at.is_not(None),
            Campaign.state.in_(RUNNING))).all())
    out = []
    for enrollment, contact, box, rep in rows:
        try:
            normalize_email(contact.email)
            valid = True
        except ValueError:
            valid = False
        variables = {k: getattr(contact, k) for k in KNOWN_FIELDS if getattr(contact, k)}
        variables.update({k: v for k, v in (contact.custom or {}).items() if v not in (None, "")})
        variables.update(email=contact.email, sender_email=box.address, sender_name=rep.name or rep.email)
        facts = ContactFacts(email=contact.email, address_valid=valid, variables=variables,
                             opted_out=contact.opted_out_at is not None, bounced=contact.bounced_at is not None,
                             replied=contact.id in replied, active_elsewhere=elsewhere.get(contact.id))
        out.append((enrollment, contact, rep, box, facts))
    return out


def _prepare_batch(app: App, compiled: CompiledCampaign, rules: Rules, campaign_id: int,
                   enrollment_ids: list[int], result: PreparationResult, launch_at=None) -> list[tuple[int, Outcome]]:
    now = app.clock.now()
    outcomes = []
    with app.db.session() as session:
        session.execute(delete(Message).where(Message.enrollment_id.in_(enrollment_ids),
                                              Message.state == MessageState.PLANNED.value))
        rows, updates = [], []
        for enrollment, contact, rep, box, facts in _facts_for(session, campaign_id, enrollment_ids):
            outcome = prepare_contact(compiled, facts, rules)
            outcomes.append((enrollment.id, outcome))
            result.targeted += 1
            if outcome.excluded:
                result.to_exclude += 1
                result.exclusions[outcome.cause.value] += 1
                updates.append({"eid": enrollment.id, "state": EnrollmentState.EXCLUDED.value,
                                "cause": outcome.cause.value})
                record(session, EventKind.EXCLUDED, now, f"{contact.email}: {outcome.cause.value}: {outcome.detail}",
                       level="warning", campaign_id=campaign_id, enrollment_id=enrollment.id, contact_id=contact.id,
                       data={"cause": outcome.cause.value})
                continue
            result.to_deliver += 1
            updates.append({"eid": enrollment.id, "state": EnrollmentState.ACTIVE.value, "cause": None})
            domain = box.address.rsplit("@", 1)[-1]
            for step, prepared in zip(compiled.spec.steps, outcome.steps):
                result.messages += 1
                rows.append({
                    "enrollment_id": enrollment.id, "campaign_id": campaign_id, "mailbox_id": box.id,
                    "position": step.position, "action": step.action.value, "state": MessageState.PLANNED.value,
                    "message_id": f"<{uuid.uuid4().hex}@{domain}>", "to_address": contact.email,
                    "subject": prepared.subject, "html": prepared.html, "text": prepared.text,
                    "links": list(prepared.links), "attempts": 0, "updated_at": now,
                })
        if updates:
            _update_enrollments(session, updates)
        if rows:
            session.execute(insert(Message), rows)
    return outcomes


def _update_enrollments(session, updates: list[dict]) -> None:
    table = Enrollment.__table__
    stmt = (update(table).where(table.c.id == bindparam("eid"))
            .values(state=bindparam("state"), excluded_cause=bindparam("cause")))
    session.execute(stmt, updates)


def prepare_enrollments(app: App, name: str, enrollment_ids: list[int], *, launch: bool) -> PreparationResult:
    """Prepare people added to a campaign that is already running, on their own; launch them if asked."""
    with app.db.session() as session:
        from cadence.services.audience import campaign_or_error

        campaign = campaign_or_error(session, name)
        campaign_id = campaign.id
        spec = read_spec(session, campaign)
    compiled, problems = compile_campaign(spec)
    result = PreparationResult(name, CampaignState(campaign.state))
    if compiled is None:
        raise UserError(f"campaign {name!r}: {problems[0]}")
    _prepare_batch(app, compiled, Rules.for_campaign(spec), campaign_id, enrollment_ids, result)
    if launch:
        from cadence.services.delivery import launch_enrollments

        launch_enrollments(app, campaign_id, enrollment_ids)
    return result
