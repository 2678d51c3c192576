"""The team's Salesforce connection: connecting (refresh-token file or a signed sign-in link),
the client for the sync, health, and `cadence crm status`.

The refresh token is stored encrypted with the mailbox credentials' keys (CADENCE_SECRET_KEY,
MultiFernet); the instance URL and the connecting user come from the token response.
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, select, update

from cadence.app import App
from cadence.services.directory import find_rep
from cadence.services.errors import UserError
from crm.errors import CrmError, Disconnected
from store.models import CrmConnection, CrmOutbox, Event, Rep

if TYPE_CHECKING:  # simple-salesforce is imported when an org is first used (it takes a second)
    from crm.oauth import Tokens
    from crm.salesforce import SalesforceOrg, Usage

log = logging.getLogger("cadence.crm")

PROVIDER = "salesforce"
CONNECTED, DISCONNECTED = "connected", "disconnected"
NEEDS_SIGN_IN = "needs sign-in: `cadence crm connect salesforce --owner E --link` (or --refresh-token-file)"

_orgs: dict[tuple, "SalesforceOrg"] = {}  # per process: keeps access tokens warm between passes
_orgs_lock = threading.Lock()


def require_app_settings(app: App) -> str:
    if not app.settings.salesforce_client_id:
        raise UserError("CADENCE_SALESFORCE_CLIENT_ID is not set; see docs/crm.md")
    return app.settings.salesforce_client_id


def new_org(app: App, refresh_token: str) -> "SalesforceOrg":
    """A client for the org behind `refresh_token` (not cached)."""
    from crm.salesforce import SalesforceOrg

    s = app.settings
    return SalesforceOrg(login_url=s.salesforce_login_url, client_id=require_app_settings(app),
                         client_secret=s.salesforce_client_secret, refresh_token=refresh_token)


def org_for(app: App, connection: CrmConnection) -> "SalesforceOrg":
    """The cached client of a stored connection (one per process and refresh token)."""
    refresh_token = app.decrypt(connection.credentials).get("refresh_token")
    if not refresh_token:
        raise Disconnected("no refresh token is stored")
    s = app.settings
    key = (s.resolved_database_url, connection.id, s.salesforce_login_url, refresh_token)
    with _orgs_lock:
        org = _orgs.get(key)
        if org is None:
            if len(_orgs) > 32:
                _orgs.clear()
            org = _orgs[key] = new_org(app, refresh_token)
        return org


def find_connection(session) -> CrmConnection | None:
    return session.scalar(select(CrmConnection).where(CrmConnection.provider == PROVIDER))


def store_connection(app: App, owner: str, refresh_token: str, tokens: "Tokens") -> CrmConnection:
    """Create or replace the connection (a reconnect keeps the events still waiting)."""
    now = app.clock.now()
    with app.db.session(immediate=True) as session:
        rep = find_rep(session, owner)
        row = find_connection(session)
        if row is None:
            last_event = session.scalar(select(func.max(Event.id))) or 0
            row = CrmConnection(provider=PROVIDER, since_event_id=last_event, event_cursor=last_event,
                                connected_at=now)
            session.add(row)
        row.owner_id, row.credentials = rep.id, app.encrypt({"refresh_token": refresh_token})
        row.instance_url, row.user_id, row.org_id = tokens.instance_url, tokens.user_id, tokens.org_id
        row.health, row.health_reason, row.last_error, row.throttle_until = CONNECTED, None, None, None
        row.connected_at = row.connected_at or now
        row.updated_at = now
        session.flush()
        session.expunge(row)
    log.info("Salesforce connected by %s: %s", owner, tokens.instance_url)
    return row


def connect_with_refresh_token(app: App, owner: str, refresh_token: str) -> CrmConnection:
    """`crm connect salesforce --refresh-token-file`: check the token with Salesforce, then store it."""
    with app.db.session() as session:
        owner = find_rep(session, owner).email
    try:
        tokens = new_org(app, refresh_token).connect()
    except CrmError as problem:
        raise UserError(f"--refresh-token-file: {problem.reason}") from None
    return store_connection(app, owner, refresh_token, tokens)


def mark_disconnected(app: App, reason: str) -> None:
    """The refresh token stopped working: one log line; events keep waiting in the outbox."""
    now = app.clock.now()
    with app.db.session(immediate=True) as session:
        changed = session.execute(update(CrmConnection).where(CrmConnection.provider == PROVIDER,
                                                              CrmConnection.health == CONNECTED)
                                  .values(health=DISCONNECTED, health_reason=reason, updated_at=now)).rowcount
    if changed:
        log.warning("Salesforce disconnected: %s", reason)


def note_usage(app: App, usage: "Usage") -> None:
    with app.db.session() as session:
        session.execute(update(CrmConnection).where(CrmConnection.provider == PROVIDER)
                        .values(api_used=usage.used, api_max=usage.limit))


# -- status ------------------------------------------------------------------------------------

def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def crm_status(app: App) -> dict:
    """Connection, health, backlog and unmatched people, for `cadence crm status` (and --json).

    Shape: {"provider", "connected": bool, "health", "reason", "instance_url", "owner",
    "salesforce_user", "last_synced_at", "last_error", "throttled_until", "api_usage": {"used",
    "limit"} | None, "backlog": {"pending", "in_doubt", "total"}, "written", "failed", "unmatched":
    [{"email", "events"}]}.
    """
    with app.db.session() as session:
        row = find_connection(session)
        counts = dict(session.execute(select(CrmOutbox.state, func.count()).group_by(CrmOutbox.state)).all())
        unmatched = session.execute(select(CrmOutbox.email, func.count()).where(CrmOutbox.state == "unmatched")
                                    .group_by(CrmOutbox.email).order_by(CrmOutbox.email)).all()
        failures = session.execute(select(CrmOutbox.email, CrmOutbox.subject, CrmOutbox.error)
                                   .where(CrmOutbox.state == "failed").order_by(CrmOutbox.id.desc()).limit(10)).all()
        owner = session.scalar(select(Rep.email).where(Rep.id == row.owner_id)) if row else None
    backlog = {"pending": counts.get("pending", 0), "in_doubt": counts.get("sending", 0)}
    backlog["total"] = backlog["pending"] + backlog["in_doubt"]
    now = app.clock.now()
    return {
        "provider": PROVIDER,
        "connected": bool(row and row.health == CONNECTED),
        "health": row.health if row else "not connected",
        "reason": (row.health_reason + "; " + NEEDS_SIGN_IN) if row and row.health == DISCONNECTED
        else (None if row else NEEDS_SIGN_IN),
        "instance_url": row.instance_url if row else None,
        "owner": owner,
        "salesforce_user": row.user_id if row else None,
        "last_synced_at": _iso(row.last_synced_at) if row else None,
        "last_error": row.last_error if row else None,
        "throttled_until": _iso(row.throttle_until) if row and row.throttle_until and row.throttle_until > now
        else None,
        "api_usage": {"used": row.api_used, "limit": row.api_max} if row and row.api_max else None,
        "backlog": backlog,
        "written": counts.get("done", 0),
        "failed": [{"email": e, "subject": s, "error": err} for e, s, err in failures],
        "unmatched": [{"email": email, "events": n} for email, n in unmatched],
    }


def crm_disconnected(app: App) -> str | None:
    """One sentence when a CRM is connected but needs sign-in again (for Slack and the web app), else None."""
    with app.db.session() as session:
        row = find_connection(session)
    if row is None or row.health == CONNECTED:
        return None
    return f"Salesforce is disconnected ({row.health_reason}); {NEEDS_SIGN_IN}"
