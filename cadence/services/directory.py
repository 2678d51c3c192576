"""Reps and their mailboxes."""
from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
from pathlib import Path

from sqlalchemy import func, select

from cadence.app import PROVIDERS, App
from cadence.services.errors import UserError
from core.contacts import normalize_email
from core.vocabulary import MailboxHealth, MessageState
from store.models import MailboxRow, Message, Rep

ROLES = ("rep", "manager", "admin")


def _email(field: str, value: str) -> str:
    try:
        return normalize_email(value)
    except ValueError as exc:
        raise UserError(f"{field}: {value!r} is not a valid email address ({exc})") from None


def parse_digest_schedule(value: str) -> str:
    """A manager's digest schedule ('mon 08:00', 'weekdays 09:00', 'off' …), checked by the digest's own parser."""
    from bot.digest import parse_schedule

    try:
        parse_schedule(value)
    except ValueError as exc:
        raise UserError(str(exc).replace("digest_schedule:", "--digest-schedule:", 1)) from None
    return value.strip().lower()


def find_rep(session, email: str) -> Rep:
    rep = session.scalar(select(Rep).where(Rep.email == _email("--owner", email)))
    if rep is None:
        raise UserError(f"no rep with email {email}; add one with `cadence rep add --email {email}`")
    return rep


def add_rep(app: App, *, email: str, name: str | None = None, slack_id: str | None = None,
            manager: str | None = None, role: str = "rep", timezone: str | None = None,
            digest_schedule: str | None = None) -> Rep:
    """Create or update a rep (by email)."""
    if role not in ROLES:
        raise UserError(f"--role: {role!r} is not one of {', '.join(ROLES)}")
    if timezone:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise UserError(f"--timezone: {timezone!r} is not an IANA time zone such as Europe/Paris") from None
    if digest_schedule is not None:
        digest_schedule = parse_digest_schedule(digest_schedule)
    address = _email("--email", email)
    with app.db.session() as session:
        manager_row = None
        if manager:
            manager_row = session.scalar(select(Rep).where(Rep.email == _email("--manager", manager)))
            if manager_row is None:
                raise UserError(f"--manager: no rep with email {manager}; add the manager first")
        rep = session.scalar(select(Rep).where(Rep.email == address))
        if rep is None:
            rep = Rep(email=address, created_at=app.clock.now())
            session.add(rep)
        if slack_id:
            other = session.scalar(select(Rep).where(Rep.slack_id == slack_id, Rep.email != address))
            if other is not None:
                raise UserError(f"--slack-id: {slack_id} already belongs to {other.email}")
            rep.slack_id = slack_id
        rep.name = name or rep.name
        rep.role = role
        rep.timezone = timezone or rep.timezone
        rep.digest_schedule = digest_schedule or rep.digest_schedule
        if manager_row is not None:
            rep.manager_id = manager_row.id
        return rep


def add_mailbox(app: App, *, provider: str, address: str, owner: str, credentials: dict | None = None,
                path: str | None = None) -> MailboxRow:
    """Register (or update) a sending mailbox; credentials are stored encrypted."""
    if provider not in PROVIDERS:
        raise UserError(f"--provider: {provider!r} is not one of {', '.join(PROVIDERS)}")
    mailbox_address = _email("--address", address)
    if provider == "gmail" and not (credentials or {}).get("refresh_token"):
        raise UserError("--refresh-token-file: a Gmail mailbox needs a refresh token "
                        "(or use `cadence mailbox connect gmail`)")
    with app.db.session() as session:
        rep = find_rep(session, owner)
        row = session.scalar(select(MailboxRow).where(MailboxRow.address == mailbox_address))
        if row is None:
            row = MailboxRow(address=mailbox_address, provider=provider, owner_id=rep.id,
                             created_at=app.clock.now())
            session.add(row)
        row.provider, row.owner_id = provider, rep.id
        if provider == "maildir":
            row.path = str(Path(path).resolve()) if path else str(
                (app.settings.maildir_root / mailbox_address).resolve())
        if credentials is not None:
            row.credentials = app.encrypt(credentials)
        row.health, row.health_reason = MailboxHealth.CONNECTED.value, None
        session.flush()
        app.forget_mailbox(row.id)
        return row


def list_mailboxes(app: App) -> list[dict]:
    """Every mailbox with provider, owner, health and how many emails it sent today (CADENCE_TIMEZONE)."""
    zone = ZoneInfo(app.settings.timezone)
    since = datetime.combine(app.clock.now().astimezone(zone).date(), time.min, tzinfo=zone)
    with app.db.session() as session:
        sent = dict(session.execute(
            select(Message.mailbox_id, func.count()).where(
                Message.state == MessageState.SENT.value, Message.sent_at >= since).group_by(Message.mailbox_id)).all())
        rows = session.execute(select(MailboxRow, Rep).join(Rep, Rep.id == MailboxRow.owner_id)
                               .order_by(MailboxRow.address)).all()
        return [{"address": m.address, "provider": m.provider, "owner": r.email, "health": m.health,
                 "reason": m.health_reason, "sent_today": sent.get(m.id, 0),
                 "last_synced_at": m.last_synced_at.isoformat() if m.last_synced_at else None}
                for m, r in rows]


def mark_disconnected(session, mailbox: MailboxRow, reason: str, at: datetime) -> bool:
    """Mark a mailbox disconnected; True when it was connected until now."""
    from cadence.services.events import record
    from core.vocabulary import EventKind

    if mailbox.health == MailboxHealth.DISCONNECTED.value:
        return False
    mailbox.health, mailbox.health_reason = MailboxHealth.DISCONNECTED.value, reason
    record(session, EventKind.MAILBOX_DISCONNECTED, at, f"{mailbox.address}: {reason}",
           level="error", mailbox_id=mailbox.id)
    return True
