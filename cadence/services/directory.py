"""Reps and their mailboxes."""
from __future__ import annotations

import logging
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select

from cadence.app import PROVIDERS, App
from cadence.services.errors import UserError
from cadence.services.reads.mailboxes import list_mailboxes
from cadence.services.reads.people import Viewer, viewer_of
from core.addresses import stored_address
from core.contacts import normalize_email
from core.digest_schedule import parse_schedule
from core.headers import HeaderInjection, check_display_name
from core.vocabulary import MailboxHealth
from store.models import MailboxRow, Rep

log = logging.getLogger("cadence.access")

ROLES = ("rep", "manager", "admin")


def _email(field: str, value: str) -> str:
    try:
        return normalize_email(value)
    except ValueError as exc:
        raise UserError(f"{field}: {value!r} is not a valid email address ({exc})") from None


def _display_name(field: str, value: str) -> str:
    """A name that goes into From headers as it is: one line, no control characters
    (core.headers.check_display_name)."""
    try:
        return check_display_name("From", value)
    except HeaderInjection as exc:
        raise UserError(f"{field}: {value!r} cannot be a display name in a From header ({exc.reason})") from None


def parse_digest_schedule(value: str) -> str:
    """A manager's digest schedule ('mon 08:00', 'weekdays 09:00', 'off' …), checked by the digest's own parser."""
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


def rep_exists(app: App, email: str) -> bool:
    """True when a rep with this email is registered (UserError for an invalid address)."""
    address = _email("--email", email)
    with app.db.session() as session:
        return session.scalar(select(Rep.id).where(Rep.email == address)) is not None


def list_reps(app: App) -> list[dict]:
    """Every rep and manager: email, name, role, manager's email, Slack ID, time zone, digest schedule."""
    with app.db.session() as session:
        reps = session.scalars(select(Rep).order_by(Rep.email)).all()
        emails = {r.id: r.email for r in reps}
        return [{"email": r.email, "name": r.name, "role": r.role, "manager": emails.get(r.manager_id),
                 "slack_id": r.slack_id, "timezone": r.timezone, "digest_schedule": r.digest_schedule}
                for r in reps]


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
    if name is not None:
        name = _display_name("--name", name)
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
                path: str | None = None, check: bool = False) -> MailboxRow:
    """Register (or update) a sending mailbox; credentials are stored encrypted.

    `check=True` first tries the credentials with the provider (`mailbox_check`); UserError then
    says why they do not work, and nothing is stored.
    """
    if provider not in PROVIDERS:
        raise UserError(f"--provider: {provider!r} is not one of {', '.join(PROVIDERS)}")
    mailbox_address = _email("--address", address)
    if provider == "gmail" and not (credentials or {}).get("refresh_token"):
        raise UserError("--refresh-token-file: a Gmail mailbox needs a refresh token "
                        "(or use `cadence mailbox connect gmail`)")
    with app.db.session() as session:
        find_rep(session, owner)  # an unknown owner is refused before the provider is asked
    if provider == "maildir":
        path = str(Path(path).resolve()) if path else str((app.settings.maildir_root / mailbox_address).resolve())
    if check:
        from cadence.services.mailbox_check import checked_credentials

        credentials = checked_credentials(app, provider=provider, address=mailbox_address, credentials=credentials,
                                          path=path)
    with app.db.session() as session:
        rep = find_rep(session, owner)
        row = session.scalar(select(MailboxRow).where(MailboxRow.address == mailbox_address))
        if row is None:
            row = MailboxRow(address=mailbox_address, provider=provider, owner_id=rep.id,
                             created_at=app.clock.now())
            session.add(row)
        row.provider, row.owner_id = provider, rep.id
        if provider == "maildir":
            row.path = path
        if credentials is not None:
            row.credentials = app.encrypt(credentials)
        row.health, row.health_reason = MailboxHealth.CONNECTED.value, None
        row.health_failures, row.health_retry_at = 0, None
        session.flush()
        app.forget_mailbox(row.id)
        return row


def link_slack_account(app: App, slack_id: str, email: str) -> Viewer | None:
    """The Viewer of the rep whose email is `email` (a Slack profile's), linking `slack_id` to that
    rep when they have no Slack id yet. None when no rep has that email, or when the rep is linked
    to another Slack account (the email alone does not win over the operator's link)."""
    with app.db.session() as session:
        rep = session.scalar(select(Rep).where(Rep.email == stored_address(email)))
        if rep is None:
            return None
        if rep.slack_id and rep.slack_id != slack_id:
            log.warning("Slack user %s has the email of %s, who is linked to %s; not matched",
                        slack_id, rep.email, rep.slack_id)
            return None
        if not rep.slack_id:
            rep.slack_id = slack_id
        return viewer_of(session, rep, slack_id)


def remember_slack_id(app: App, rep_id: int, slack_id: str) -> bool:
    """Store `slack_id` on rep `rep_id` when they have none and no other rep has it; True when stored."""
    with app.db.session() as session:
        taken = session.scalar(select(Rep.id).where(Rep.slack_id == slack_id))
        rep = session.get(Rep, rep_id)
        if taken is None and rep is not None and not rep.slack_id:
            rep.slack_id = slack_id
            return True
        return False


def undecryptable_mailboxes(app: App) -> tuple[list[str], int]:
    """(addresses whose stored credentials no key in CADENCE_SECRET_KEY decrypts, how many mailboxes
    hold credentials at all). Lets `worker` and `serve` refuse to start with a wrong key."""
    from cadence.app import CredentialsError

    with app.db.session() as session:
        stored = session.execute(select(MailboxRow.address, MailboxRow.credentials)
                                 .where(MailboxRow.credentials.is_not(None))).all()
    bad = []
    for address, token in stored:
        try:
            app.decrypt(token)
        except CredentialsError:
            bad.append(address)
    return bad, len(stored)


__all__ = ["ROLES", "add_mailbox", "add_rep", "find_rep", "link_slack_account", "list_mailboxes",
           "parse_digest_schedule", "remember_slack_id", "rep_exists", "list_reps", "undecryptable_mailboxes"]
