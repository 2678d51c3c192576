"""`cadence enroll`: adding people to a campaign (launching it for them)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo
from pathlib import Path
from typing import Callable, NamedTuple

from sqlalchemy import String, func, insert, literal, select

from cadence.app import App
from cadence.services.errors import UserError, date_problem
from cadence.services.imports import import_contacts, import_contacts_data
from cadence.services.preparing import prepare_enrollments
from cadence.services.reads.status import campaign_or_error
from core.contacts import normalize_email
from core.vocabulary import CampaignState, EventKind
from store.bulk import IN_LIST, among
from store.campaigns import read_spec
from store.events import add_enrollment_events
from store.models import Contact, Enrollment, MailboxRow, Rep, UTCDateTime

SEND_AT_FORMAT = "%Y-%m-%d %H:%M"
RUNNING = {CampaignState.SENDING, CampaignState.SCHEDULED, CampaignState.PAUSED}


class Person(NamedTuple):
    """What an enrollment needs of a contact."""

    id: int
    timezone: str | None
    email: str


@dataclass
class EnrollReport:
    campaign: str
    enrolled: int = 0
    already: int = 0
    new_enrollment_ids: list[int] | None = None
    already_emails: list[str] = field(default_factory=list)
    exclusions: dict[str, int] = field(default_factory=dict)  # people excluded at once (a running campaign)
    to_deliver: int | None = None  # of the people just enrolled into a running campaign
    late: int = 0  # people for whom the --send-at time has already passed where they are


def parse_send_at(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return datetime.strptime(value.strip(), SEND_AT_FORMAT).strftime(SEND_AT_FORMAT)
    except ValueError:
        raise UserError(date_problem("--send-at", value, "a time as 'YYYY-MM-DD HH:MM'")) from None


def enroll(app: App, campaign_name: str, *, mailbox: str, emails: list[str] | None = None,
           contacts_file: Path | None = None, everyone: bool = False, send_at: str | None = None,
           progress: Callable[[int, int], None] | None = None, contacts_data: tuple[str, bytes] | None = None,
           owner: str | None = None, company: str | None = None,
           owners_allowed: Callable[[int], bool] | None = None) -> EnrollReport:
    """Enroll contacts; in a campaign already sending they are prepared and launched at once.

    Exactly one selection: `emails`, `contacts_file` (a CSV, imported first), `contacts_data`
    ((file name, bytes) of an uploaded CSV, imported strictly: one bad row and nothing is written),
    `everyone`, or a filter by `owner` (a rep's email) and/or `company` (exact, case-insensitive).
    `owners_allowed(rep_id)` restricts the owners a CSV may name (the web app's teams).
    The campaign, the mailbox and the send time are checked before any contact is imported.
    `progress(done, total)` is called every few hundred people. UserError for every refusal."""
    filtered = bool((owner or "").strip() or (company or "").strip())
    chosen_ways = (emails is not None, contacts_file is not None, contacts_data is not None, bool(everyone), filtered)
    if sum(chosen_ways) != 1:
        raise UserError("give exactly one of --contacts FILE, --emails A,B or --all")
    chosen = parse_send_at(send_at)
    _check_launch(app, campaign_name, mailbox, chosen)
    imported: dict[str, tuple[int, str | None]] = {}
    if contacts_file is not None:
        report = import_contacts(app, contacts_file, want_ids=True)
        if report.rejected:
            raise UserError(f"{contacts_file}: {len(report.rejected)} bad row(s), first: {report.rejected[0]}; "
                            "fix them or import the contacts first")
        emails, imported = report.emails, report.contacts
    if contacts_data is not None:
        source, data = contacts_data
        report = import_contacts_data(app, data, source=source, strict=True, owners_allowed=owners_allowed,
                                      want_ids=True)
        if report.rejected:
            raise UserError(f"{source}, {report.rejected[0]}"
                            + (f" (and {len(report.rejected) - 1} more bad row(s))" if len(report.rejected) > 1 else "")
                            + "; nothing was imported or enrolled")
        emails, imported = report.emails, report.contacts
    now = app.clock.now()
    with app.db.session() as session:
        campaign = campaign_or_error(session, campaign_name)
        state = CampaignState(campaign.state)
        if state in (CampaignState.STOPPED, CampaignState.PREPARING):
            raise UserError(f"campaign {campaign.name!r} is {state}; people cannot be added now")
        spec = read_spec(session, campaign)
        if spec.asks_for_send_time and chosen is None:
            raise UserError(f"campaign {campaign.name!r} asks for the first email's send time at launch: "
                            "give --send-at 'YYYY-MM-DD HH:MM'")
        box = session.scalar(select(MailboxRow).where(MailboxRow.address == _normalized("--mailbox", mailbox)))
        if box is None:
            raise UserError(f"--mailbox: no mailbox {mailbox}; add it with `cadence mailbox add`")
        # Only what an enrollment needs of each contact (id, address, time zone), not whole rows.
        columns = (Contact.id, Contact.email, Contact.timezone)
        if everyone:
            contacts = session.execute(select(*columns).order_by(Contact.id)).all()
        elif filtered:
            contacts = session.execute(_matching(session, owner, company).with_only_columns(*columns)).all()
            if not contacts:
                raise UserError("no contact matches " + " and ".join(
                    f"{k} {v.strip()}" for k, v in (("owner", owner or ""), ("company", company or "")) if v.strip()))
        elif contacts_file is not None or contacts_data is not None:
            # the file's people as its import found or wrote them (addresses normalized there)
            wanted = emails or []
            contacts = sorted((Person(*imported[e], email=e) for e in dict.fromkeys(wanted) if e in imported),
                              key=lambda person: person.id)
        else:
            wanted = [_normalized("--emails", e) for e in emails or [] if e.strip()]
            contacts = [row for start in range(0, len(wanted), IN_LIST) for row in session.execute(
                select(*columns).where(Contact.email.in_(wanted[start:start + IN_LIST])).order_by(Contact.id))]
            missing = sorted(set(wanted) - {c.email for c in contacts})
            if missing:
                raise UserError(f"not known contacts: {', '.join(missing[:5])}"
                                f"{' …' if len(missing) > 5 else ''}; import them first or use --contacts FILE")
        already = set(session.scalars(select(Enrollment.contact_id).where(Enrollment.campaign_id == campaign.id)))
        report = EnrollReport(campaign.name, new_enrollment_ids=[])
        fresh: list[int] = []  # contact ids
        fallback_zone = spec.timezone or app.settings.timezone
        for done, contact in enumerate(contacts):
            if progress is not None and done % 250 == 0:
                progress(done, len(contacts))
            if contact.id in already:
                report.already += 1
                report.already_emails.append(contact.email)
                continue
            if chosen is not None and _past(chosen, contact.timezone or fallback_zone, now):
                report.late += 1
            fresh.append(contact.id)
        if chosen is not None and fresh and report.late == len(fresh):
            raise UserError(f"--send-at: {chosen} has already passed for everyone being enrolled (in their own "
                            "time zones); choose a later time")
        ids = _insert_enrollments(session, fresh, campaign_id=campaign.id, mailbox_id=box.id,
                                  fallback_zone=fallback_zone, send_at_local=chosen, now=now)
        add_enrollment_events(session, EventKind.ENROLLED, now, f"enrolled with mailbox {box.address}", ids)
        report.enrolled = len(fresh)
        report.new_enrollment_ids = ids
        if fresh:
            campaign.audience_version += 1
            campaign.updated_at = now
    if fresh and state in RUNNING:
        result = prepare_enrollments(app, campaign_name, report.new_enrollment_ids,
                                     launch=state is not CampaignState.SCHEDULED)
        report.exclusions = dict(result.exclusions)
        report.to_deliver = result.to_deliver
    return report


def _insert_enrollments(session, contact_ids: list[int], *, campaign_id: int, mailbox_id: int, fallback_zone: str,
                        send_at_local: str | None, now: datetime) -> list[int]:
    """Active enrollments of `contact_ids` (none enrolled yet), each in its contact's time zone, else
    `fallback_zone`; returns their ids in the order of `contact_ids`. Written by the database with
    INSERT … SELECT from the contacts, one statement per IN_LIST people (no Python round per row),
    and the ids read back by (campaign, contact), which is unique."""
    enrollments, people = Enrollment.__table__, Contact.__table__
    columns = ["campaign_id", "contact_id", "mailbox_id", "state", "zone", "send_at_local", "enrolled_at"]
    for start in range(0, len(contact_ids), IN_LIST):
        rows = (select(literal(campaign_id), people.c.id, literal(mailbox_id), literal("active"),
                       func.coalesce(func.nullif(people.c.timezone, ""), literal(fallback_zone)),
                       literal(send_at_local, String()), literal(now, UTCDateTime()))
                .where(among(session, people.c.id, contact_ids[start:start + IN_LIST])).order_by(people.c.id))
        session.execute(insert(enrollments).from_select(columns, rows))
    if not contact_ids:
        return []
    id_of = dict(session.execute(select(enrollments.c.contact_id, enrollments.c.id).where(
        enrollments.c.campaign_id == campaign_id)).all())
    return [id_of[contact_id] for contact_id in contact_ids]


def _check_launch(app: App, campaign_name: str, mailbox: str, chosen: str | None) -> None:
    """The refusals of `enroll` that need no contact: campaign state, send time, mailbox."""
    with app.db.session(readonly=True) as session:
        campaign = campaign_or_error(session, campaign_name)
        state = CampaignState(campaign.state)
        if state in (CampaignState.STOPPED, CampaignState.PREPARING):
            raise UserError(f"campaign {campaign.name!r} is {state}; people cannot be added now")
        if read_spec(session, campaign).asks_for_send_time and chosen is None:
            raise UserError(f"campaign {campaign.name!r} asks for the first email's send time at launch: "
                            "give --send-at 'YYYY-MM-DD HH:MM'")
        if session.scalar(select(MailboxRow.id).where(MailboxRow.address == _normalized("--mailbox", mailbox))) is None:
            raise UserError(f"--mailbox: no mailbox {mailbox}; add it with `cadence mailbox add`")


def _matching(session, owner: str | None, company: str | None):
    """The query of the contacts owned by rep `owner` (email) and/or at `company` (case-insensitive)."""
    query = select(Contact).order_by(Contact.id)
    if owner and owner.strip():
        rep_id = session.scalar(select(Rep.id).where(Rep.email == _normalized("owner", owner)))
        if rep_id is None:
            raise UserError(f"owner: no rep with email {owner.strip()}")
        query = query.where(Contact.owner_id == rep_id)
    if company and company.strip():
        query = query.where(func.lower(Contact.company) == company.strip().lower())
    return query


def _past(chosen: str, zone: str, now: datetime) -> bool:
    """True when the wall time `chosen` ('YYYY-MM-DD HH:MM') in `zone` is before `now`."""
    try:
        return datetime.strptime(chosen, SEND_AT_FORMAT).replace(tzinfo=ZoneInfo(zone)) < now
    except (ValueError, KeyError):
        return False


def _normalized(field: str, address: str) -> str:
    try:
        return normalize_email(address)
    except ValueError as exc:
        raise UserError(f"{field}: {address!r} is not a valid email address ({exc})") from None
