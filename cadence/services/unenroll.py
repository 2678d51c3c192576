"""`cadence unenroll`: taking people out of a campaign. Nothing more is sent or drafted to them; their
open drafts are withdrawn from the reps' mailboxes."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import delete, select, update

from cadence.app import App
from cadence.services.errors import UserError
from cadence.services.reads.status import campaign_or_error
from cadence.services.stale_drafts import withdraw_stale_drafts
from core.contacts import normalize_email
from store.events import record
from store.queue.claims import end_enrollment
from core.vocabulary import EnrollmentState, EventKind, MessageState
from store.models import Contact, Enrollment, Event, Message, Task


@dataclass
class UnenrollReport:
    campaign: str
    ended: int = 0  # sequences ended (or, not yet launched, removed)
    already_ended: list[str] = field(default_factory=list)  # their sequence had ended before
    not_enrolled: list[str] = field(default_factory=list)
    drafts_withdrawn: int = 0
    drafts_left: list[str] = field(default_factory=list)  # a draft the provider would not delete now
    in_flight: int = 0  # an email being handed to the provider at this moment may still go out


def unenroll(app: App, name: str, *, emails: list[str] | None = None, contacts_file: Path | None = None
             ) -> UnenrollReport:
    """End these people's sequences in campaign `name` (by email, or every address of a contacts CSV).
    UserError for a bad address, a bad file or no such campaign."""
    if (emails is None) == (contacts_file is None):
        raise UserError("give exactly one of --emails A,B or --contacts FILE")
    if contacts_file is not None:
        from core.contacts import ContactsFileError, parse_contacts

        try:
            parsed = parse_contacts(contacts_file.read_bytes(), source=str(contacts_file))
        except OSError as exc:
            raise UserError(f"--contacts: cannot read {contacts_file} ({exc.strerror})") from None
        except ContactsFileError as exc:
            raise UserError(str(exc)) from None
        wanted = [row.email for row in parsed.rows]
    else:
        wanted = []
        for address in emails or []:
            if address.strip():
                try:
                    wanted.append(normalize_email(address))
                except ValueError as exc:
                    raise UserError(f"--emails: {address.strip()!r} is not a valid email address ({exc})") from None
    if not wanted:
        raise UserError("no email address given")
    now = app.clock.now()
    drafts: list[tuple[int, str]] = []  # (message id, address) of stale task drafts
    with app.db.session(immediate=True) as session:
        campaign = campaign_or_error(session, name)
        report = UnenrollReport(campaign.name)
        found = {c.email: (e, c) for e, c in session.execute(
            select(Enrollment, Contact).join(Contact, Contact.id == Enrollment.contact_id)
            .where(Enrollment.campaign_id == campaign.id, Contact.email.in_(wanted)))}
        for address in dict.fromkeys(wanted):
            if address not in found:
                report.not_enrolled.append(address)
                continue
            enrollment, contact = found[address]
            if enrollment.state != EnrollmentState.ACTIVE.value and enrollment.launched_at is not None:
                report.already_ended.append(f"{address} ({enrollment.state})")
                continue
            report.ended += 1
            if enrollment.launched_at is None:  # never launched: out of the campaign as if never added
                _remove(session, enrollment)
                record(session, EventKind.UNENROLLED, now, f"{address}: unenrolled before launch",
                       campaign_id=campaign.id, contact_id=contact.id)
                continue
            report.in_flight += session.query(Message).filter(
                Message.enrollment_id == enrollment.id, Message.state == MessageState.SENDING.value).count()
            for message in end_enrollment(session, enrollment, EnrollmentState.UNENROLLED, "unenrolled by the "
                                          "operator", now):
                if message.provider_draft_id:
                    drafts.append((message.id, address))
            record(session, EventKind.UNENROLLED, now, f"{address}: unenrolled; nothing more is sent to them",
                   campaign_id=campaign.id, enrollment_id=enrollment.id, contact_id=contact.id)
        if report.ended and campaign.state in ("draft", "prepared", "failed"):  # prepare again before sending
            campaign.audience_version += 1
            campaign.updated_at = now
    if drafts:  # what cannot be withdrawn now is tried again by the worker
        withdrawn = set(withdraw_stale_drafts(app, message_ids=[m for m, _ in drafts], limit=len(drafts)))
        report.drafts_withdrawn = len(withdrawn)
        report.drafts_left = [f"{address} (the provider did not answer; the worker tries again)"
                              for message_id, address in drafts if message_id not in withdrawn]
    return report


def _remove(session, enrollment: Enrollment) -> None:
    """A not yet launched enrollment goes, with its prepared messages; its log lines stay, unlinked."""
    message_ids = select(Message.id).where(Message.enrollment_id == enrollment.id)
    session.execute(update(Event).where(Event.message_id.in_(message_ids)).values(message_id=None))
    session.execute(update(Event).where(Event.enrollment_id == enrollment.id).values(enrollment_id=None))
    session.execute(delete(Task).where(Task.message_id.in_(message_ids)))
    session.execute(delete(Message).where(Message.enrollment_id == enrollment.id))
    session.delete(enrollment)
