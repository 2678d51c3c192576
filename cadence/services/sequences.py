"""Sequences: launching enrollments, moving on after a step, marking a step sent.

An enrollment's first step is given its due time at launch; each later step when the one
before it is over (sent or skipped). Ending a sequence is `store.queue.claims.end_enrollment`.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from cadence.app import App
from core.campaign import CampaignSpec
from core.clock import Clock
from core.mailbox import SentRef
from core.schedule import EnrollmentTiming, ScheduleError, due_time
from core.vocabulary import EnrollmentState, EventKind, MessageState
from store.bulk import among, update_by_id
from store.campaigns import read_spec
from store.events import add_events, event_row
from store.models import Campaign, Contact, Enrollment, Message
from store.queue.claims import record_sent, skip_locked

log = logging.getLogger("cadence.delivery")

LAUNCH_BATCH = 500


def launch_enrollments(app: App, campaign_id: int, enrollment_ids: list[int] | None = None) -> int:
    """Give prepared, not yet launched enrollments their launch time and first due time.

    Safe with several workers: rows another worker is launching are skipped, not launched twice.
    Returns how many were launched.
    """
    now = app.clock.now()
    launched = 0
    last = 0
    while True:
        with app.db.session(immediate=True) as session:
            query = select(Enrollment).where(
                Enrollment.campaign_id == campaign_id, Enrollment.launched_at.is_(None),
                Enrollment.state == EnrollmentState.ACTIVE.value, Enrollment.id > last
            ).order_by(Enrollment.id).limit(LAUNCH_BATCH)
            if enrollment_ids is not None:
                query = query.where(Enrollment.id.in_(enrollment_ids))
            batch = session.scalars(skip_locked(session, query)).all()
            if not batch:
                return launched
            last = batch[-1].id
            spec = read_spec(session, session.get(Campaign, campaign_id))
            firsts = dict(session.execute(select(Message.enrollment_id, Message.id).where(
                among(session, Message.enrollment_id, [e.id for e in batch]), Message.position == 1,
                Message.state == MessageState.PLANNED.value)).all())
            timings = enrollment_timings(session, batch, launched_at=now)
            changes, events = [], []
            for enrollment in batch:
                if enrollment.id not in firsts:
                    continue  # not prepared (excluded or prepared before a change): left for a new preparation
                enrollment.launched_at = now
                change, event = due_change(app.clock, spec, enrollment, firsts[enrollment.id], 1,
                                           timings[enrollment.id], now)
                changes.append(change)
                events.append(event)
                launched += 1
            session.flush()
            update_by_id(session, Message, changes)
            add_events(session, events)


def enrollment_timings(session: Session, enrollments: list[Enrollment],
                       launched_at: datetime | None = None) -> dict[int, EnrollmentTiming]:
    """The schedule's view of each enrollment, read in two queries for the whole list."""
    countries = dict(session.execute(select(Contact.id, Contact.country).where(
        among(session, Contact.id, {e.contact_id for e in enrollments}))).all())
    done: dict[int, dict[int, datetime]] = defaultdict(dict)
    for enrollment_id, position, sent_at, updated_at in session.execute(
            select(Message.enrollment_id, Message.position, Message.sent_at, Message.updated_at).where(
                among(session, Message.enrollment_id, [e.id for e in enrollments]),
                Message.state.in_((MessageState.SENT.value, MessageState.SKIPPED.value)))):
        done[enrollment_id][position] = sent_at or updated_at
    timings = {}
    for enrollment in enrollments:
        wall = datetime.strptime(enrollment.send_at_local, "%Y-%m-%d %H:%M") if enrollment.send_at_local else None
        timings[enrollment.id] = EnrollmentTiming(
            launched_at=enrollment.launched_at or launched_at, zone=ZoneInfo(enrollment.zone),
            country=countries[enrollment.contact_id], send_at_local=wall, sent=done.get(enrollment.id, {}))
    return timings


def follow_zone_changes(session: Session, clock: Clock, zones: dict[int, str], now: datetime) -> int:
    """Contacts whose time zone changed (`zones`: contact id → new IANA name): their active
    enrollments take the new zone, and every step scheduled but not yet due is scheduled again in
    it. Steps already claimed or sent keep their time. Returns how many messages moved."""
    if not zones:
        return 0
    enrollments = session.scalars(select(Enrollment).where(
        Enrollment.contact_id.in_(list(zones)), Enrollment.state == EnrollmentState.ACTIVE.value)).all()
    for enrollment in enrollments:
        enrollment.zone = zones[enrollment.contact_id]
    waiting = session.execute(select(Message.id, Message.enrollment_id, Message.position).where(
        Message.enrollment_id.in_([e.id for e in enrollments]),
        Message.state == MessageState.SCHEDULED.value, Message.due_at > now)).all() if enrollments else []
    if not waiting:
        return 0
    session.flush()
    by_id = {e.id: e for e in enrollments}
    timings = enrollment_timings(session, [by_id[eid] for eid in {w.enrollment_id for w in waiting}])
    specs: dict[int, CampaignSpec] = {}
    changes, events = [], []
    for message_id, enrollment_id, position in waiting:
        enrollment = by_id[enrollment_id]
        if enrollment.campaign_id not in specs:
            specs[enrollment.campaign_id] = read_spec(session, session.get(Campaign, enrollment.campaign_id))
        change, event = due_change(clock, specs[enrollment.campaign_id], enrollment, message_id, position,
                                   timings[enrollment_id], now)
        changes.append(change)
        events.append(event)
    update_by_id(session, Message, changes)
    add_events(session, events)
    return len(changes)


def due_change(clock: Clock, spec: CampaignSpec, enrollment: Enrollment, message_id: int, position: int,
               timing: EnrollmentTiming, now: datetime) -> tuple[dict, dict]:
    """The message's new due time (or its failure) and the event saying so, as rows to write."""
    ids = dict(campaign_id=enrollment.campaign_id, enrollment_id=enrollment.id, message_id=message_id)
    try:
        due = due_time(spec, position, timing, clock)
    except Exception as exc:  # ScheduleError, or data the schedule cannot read: this message fails, not the batch
        if not isinstance(exc, ScheduleError):
            log.exception("message %s: no due time", message_id)
        return ({"id": message_id, "state": MessageState.FAILED.value, "error": str(exc), "updated_at": now},
                event_row(EventKind.FAILED, now, f"step {position}: {exc}", level="error", **ids))
    return ({"id": message_id, "state": MessageState.SCHEDULED.value, "due_at": due.at,
             "due_reasons": list(due.reasons), "updated_at": now},
            event_row(EventKind.SCHEDULED, now, f"step {position} due {due.at.isoformat()}: " + "; ".join(due.reasons),
                      data={"due_at": due.at, "reasons": list(due.reasons)}, **ids))


def move_on(session: Session, clock: Clock, enrollment: Enrollment, after_position: int, now: datetime) -> None:
    """Step `after_position` is over (sent or skipped): schedule the next one, or finish."""
    move_on_many(session, clock, [(enrollment, after_position)], now)


def move_on_many(session: Session, clock: Clock, steps: list[tuple[Enrollment, int]], now: datetime) -> None:
    """`move_on` for many enrollments at once, in a fixed number of statements."""
    steps = [(e, p) for e, p in steps if e.state == EnrollmentState.ACTIVE.value]
    if not steps:
        return
    session.flush()  # the step just carried out must count in the timings read below
    enrollment_ids = [e.id for e, _ in steps]
    positions = {(eid, pos): (mid, state) for eid, pos, mid, state in session.execute(
        select(Message.enrollment_id, Message.position, Message.id, Message.state)
        .where(among(session, Message.enrollment_id, enrollment_ids)))}
    planned = [(e, p) for e, p in steps if positions.get((e.id, p + 1), (None, None))[1] == MessageState.PLANNED.value]
    timings = enrollment_timings(session, [e for e, _ in planned]) if planned else {}
    specs: dict[int, CampaignSpec] = {}
    changes, events = [], []
    for enrollment, position in steps:
        following = positions.get((enrollment.id, position + 1))
        if following is None:
            enrollment.state, enrollment.ended_at = EnrollmentState.FINISHED.value, now
            enrollment.end_reason = "every step carried out"
            events.append(event_row(EventKind.FINISHED, now, "sequence finished", campaign_id=enrollment.campaign_id,
                                    enrollment_id=enrollment.id, contact_id=enrollment.contact_id))
        elif following[1] == MessageState.PLANNED.value:
            if enrollment.campaign_id not in specs:
                specs[enrollment.campaign_id] = read_spec(session, session.get(Campaign, enrollment.campaign_id))
            change, event = due_change(clock, specs[enrollment.campaign_id], enrollment, following[0], position + 1,
                                       timings[enrollment.id], now)
            changes.append(change)
            events.append(event)
        # otherwise the next step is already scheduled, sent or cancelled
    update_by_id(session, Message, changes)
    add_events(session, events)


def mark_sent(session: Session, clock: Clock, message: Message, sent: SentRef, now: datetime,
              detail: str = "") -> None:
    """One message is known to have gone out (from a send, a check or a sync): record it, move on."""
    record_sent(session, message, sent, now, detail)
    move_on(session, clock, message.enrollment, message.position, message.sent_at)
