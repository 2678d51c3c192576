"""`cadence explain CAMPAIGN --contact E`: the stored facts of one person's sequence, explained by
`core.explain`."""
from __future__ import annotations

from sqlalchemy import func, select

from cadence.app import App
from cadence.services.errors import UserError
from cadence.services.reads.status import campaign_or_error
from core.addresses import stored_address
from core.explain import PersonFacts, StepExplanation, StepFacts, explain
from core.vocabulary import EventKind
from store.campaigns import read_spec
from store.models import Contact, Enrollment, Event, MailboxRow, Message, Task


def explain_contact(app: App, name: str, email: str) -> tuple[str, PersonFacts, list[StepExplanation]]:
    """(the campaign's name, the person's facts, one explanation per step). UserError when there is no
    such campaign or the person is not enrolled in it."""
    address = stored_address(email)
    with app.db.session(readonly=True) as session:
        campaign = campaign_or_error(session, name)
        spec = read_spec(session, campaign)
        found = session.execute(
            select(Enrollment, Contact, MailboxRow).join(Contact, Contact.id == Enrollment.contact_id)
            .join(MailboxRow, MailboxRow.id == Enrollment.mailbox_id)
            .where(Enrollment.campaign_id == campaign.id, func.lower(Contact.email) == address)).first()
        if found is None:
            raise UserError(f"--contact: {email.strip()} is not enrolled in {campaign.name!r}")
        enrollment, contact, box = found
        excluded = session.scalar(select(Event.detail).where(
            Event.enrollment_id == enrollment.id, Event.kind == EventKind.EXCLUDED.value)
            .order_by(Event.id.desc()).limit(1))
        rows = session.execute(select(Message, Task.state).outerjoin(Task, Task.message_id == Message.id)
                               .where(Message.enrollment_id == enrollment.id).order_by(Message.position)).all()
        steps = [StepFacts(m.position, m.state, m.due_at, m.sent_at, tuple(m.due_reasons or ()), task_state)
                 for m, task_state in rows]
        person = PersonFacts(email=contact.email, zone=enrollment.zone, country=contact.country,
                             enrollment_state=enrollment.state, mailbox=box.address,
                             launched_at=enrollment.launched_at, excluded_cause=enrollment.excluded_cause,
                             excluded_detail=excluded, end_reason=enrollment.end_reason,
                             mailbox_health=box.health, mailbox_reason=box.health_reason)
        return campaign.name, person, explain(spec, person, steps)
