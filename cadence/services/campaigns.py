"""Campaign transitions: send, pause, resume, stop; scheduled sends that start; campaigns that finish."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import exists, or_, select, update

from cadence.app import App
from cadence.services.errors import UserError
from cadence.services.reads.status import campaign_or_error
from cadence.services.sequences import launch_enrollments
from cadence.services.stale_drafts import withdraw_stale_drafts
from core.vocabulary import CampaignState, EnrollmentState, EventKind, MessageState, TaskState
from store.events import record
from store.models import Campaign, Enrollment, Message, Task
from store.queue.claims import PENDING


def send_campaign(app: App, name: str, at: datetime | None = None) -> Campaign:
    """Start sending now or at `at`; refused unless the latest preparation is clean and current."""
    now = app.clock.now()
    with app.db.session(immediate=True) as session:
        campaign = campaign_or_error(session, name)
        state = CampaignState(campaign.state)
        if state in (CampaignState.SENDING, CampaignState.SCHEDULED, CampaignState.PAUSED):
            raise UserError(f"campaign {campaign.name!r} is already {state}")
        if state is CampaignState.STOPPED:
            raise UserError(f"campaign {campaign.name!r} was stopped; a stopped campaign can never be sent again")
        if state is CampaignState.FAILED:
            raise UserError(f"campaign {campaign.name!r}: the latest preparation failed; see `cadence logs "
                            f"{campaign.name!r} --errors`, fix it and prepare again")
        if state is not CampaignState.PREPARED and state is not CampaignState.FINISHED:
            raise UserError(f"campaign {campaign.name!r} is {state}; prepare it first (`cadence prepare`)")
        if (campaign.prepared_content_version != campaign.content_version
                or campaign.prepared_audience_version != campaign.audience_version):
            raise UserError(f"campaign {campaign.name!r} changed after it was prepared; prepare it again "
                            "before sending")
        campaign.send_at = at if at and at > now else now
        campaign.state = (CampaignState.SCHEDULED if at and at > now else CampaignState.SENDING).value
        record(session, EventKind.CAMPAIGN_STATE, now,
               f"send {'scheduled for ' + campaign.send_at.isoformat() if campaign.state == 'scheduled' else 'started'}",
               campaign_id=campaign.id)
        campaign_id = campaign.id
    if at is None or at <= now:
        start_due_campaigns(app, only=campaign_id)
    with app.db.session() as session:
        return session.get(Campaign, campaign_id)


def pause_campaign(app: App, name: str) -> Campaign:
    return _transition(app, name, {CampaignState.SENDING, CampaignState.SCHEDULED}, CampaignState.PAUSED, "paused")


def resume_campaign(app: App, name: str) -> Campaign:
    now = app.clock.now()
    with app.db.session() as session:
        campaign = campaign_or_error(session, name)
        target = CampaignState.SCHEDULED if campaign.send_at and campaign.send_at > now and not campaign.started_at \
            else CampaignState.SENDING
    campaign = _transition(app, name, {CampaignState.PAUSED}, target, "resumed")
    start_due_campaigns(app, only=campaign.id)
    return campaign


def stop_campaign(app: App, name: str) -> Campaign:
    """Stop for good; a preparation in progress is stopped instead (the campaign stays editable)."""
    now = app.clock.now()
    with app.db.session(immediate=True) as session:
        campaign = campaign_or_error(session, name)
        state = CampaignState(campaign.state)
        if state is CampaignState.PREPARING:
            campaign.state = CampaignState.DRAFT.value
            record(session, EventKind.CAMPAIGN_STATE, now, "preparation stopped by `cadence stop`",
                   level="warning", campaign_id=campaign.id)
            return campaign
        if state is CampaignState.STOPPED:
            raise UserError(f"campaign {campaign.name!r} is already stopped")
        campaign.state, campaign.stopped_at = CampaignState.STOPPED.value, now
        session.execute(update(Message).where(Message.campaign_id == campaign.id, Message.state.in_(PENDING))
                        .values(state=MessageState.CANCELLED.value, updated_at=now))
        session.execute(update(Enrollment).where(Enrollment.campaign_id == campaign.id,
                                                 Enrollment.state == EnrollmentState.ACTIVE.value)
                        .values(state=EnrollmentState.STOPPED.value, ended_at=now, end_reason="campaign stopped"))
        open_tasks = session.execute(
            select(Task, Message).join(Message, Message.id == Task.message_id)
            .where(Message.campaign_id == campaign.id, Task.state == TaskState.OPEN.value)).all()
        for task, message in open_tasks:
            task.state, task.closed_at = TaskState.STALE.value, now
            message.state = MessageState.CANCELLED.value
            record(session, EventKind.DRAFT_STALE, now, f"draft for {message.to_address} is stale: campaign stopped",
                   level="warning", campaign_id=campaign.id, enrollment_id=message.enrollment_id,
                   message_id=message.id)
        record(session, EventKind.CAMPAIGN_STATE, now, "stopped for good; no email of it will be sent",
               campaign_id=campaign.id)
        stale = [m.id for _, m in open_tasks if m.provider_draft_id]
        campaign_id = campaign.id
    if stale:  # the drafts leave the reps' mailboxes now; what fails is tried again by the worker
        withdraw_stale_drafts(app, message_ids=stale, limit=len(stale))
    with app.db.session() as session:
        return session.get(Campaign, campaign_id)


def _transition(app: App, name: str, allowed: set[CampaignState], target: CampaignState, verb: str) -> Campaign:
    with app.db.session(immediate=True) as session:
        campaign = campaign_or_error(session, name)
        state = CampaignState(campaign.state)
        if state not in allowed:
            raise UserError(f"campaign {campaign.name!r} is {state}; it cannot be {verb}")
        campaign.state = target.value
        record(session, EventKind.CAMPAIGN_STATE, app.clock.now(), verb, campaign_id=campaign.id)
        return campaign


def start_due_campaigns(app: App, only: int | None = None) -> int:
    """Scheduled campaigns whose time came start sending; sending campaigns launch new people.

    Returns how many enrollments were launched.
    """
    now = app.clock.now()
    with app.db.session(immediate=True) as session:
        query = select(Campaign.id, Campaign.state).where(or_(
            Campaign.state == CampaignState.SENDING.value,
            (Campaign.state == CampaignState.SCHEDULED.value) & (Campaign.send_at <= now)))
        if only is not None:
            query = query.where(Campaign.id == only)
        ids = []
        for campaign_id, state in session.execute(query).all():
            if state == CampaignState.SCHEDULED.value:
                started = session.execute(update(Campaign).where(
                    Campaign.id == campaign_id, Campaign.state == CampaignState.SCHEDULED.value)
                    .values(state=CampaignState.SENDING.value))
                if started.rowcount != 1:
                    continue  # another worker started it a moment ago
                record(session, EventKind.CAMPAIGN_STATE, now, "scheduled send started", campaign_id=campaign_id)
            ids.append(campaign_id)
        if ids:
            session.execute(update(Campaign).where(Campaign.id.in_(ids), Campaign.started_at.is_(None))
                            .values(started_at=now))
    return sum(launch_enrollments(app, cid) for cid in ids)


def finish_campaigns(app: App) -> list[str]:
    """Sending campaigns whose every launched enrollment has ended are finished (once, by one worker)."""
    now = app.clock.now()
    finished = []
    with app.db.session(immediate=True) as session:
        for campaign_id, name in session.execute(select(Campaign.id, Campaign.name).where(
                Campaign.state == CampaignState.SENDING.value)).all():
            active = exists().where(Enrollment.campaign_id == campaign_id,
                                    Enrollment.state == EnrollmentState.ACTIVE.value)
            done = session.execute(update(Campaign).where(
                Campaign.id == campaign_id, Campaign.state == CampaignState.SENDING.value, ~active)
                .values(state=CampaignState.FINISHED.value))
            if done.rowcount == 1:
                record(session, EventKind.CAMPAIGN_STATE, now, "finished: every sequence has ended",
                       campaign_id=campaign_id)
                finished.append(name)
    return finished
