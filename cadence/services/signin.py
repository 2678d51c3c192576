"""Signing in to the web app: one-time links, sessions and CSRF tokens.

- A link (`cadence web link --email E`, or `/cadence web` in Slack) is `<CADENCE_PUBLIC_URL>/signin/<token>`
  with 32 random bytes; only its SHA-256 is stored. It is valid `minutes` (default 15) and is used
  at most once: redeeming it is one conditional UPDATE, so two browsers racing on it get one session.
- A session is another 32 random bytes held by the browser in a cookie signed with HMAC-SHA256
  under a key derived from CADENCE_SECRET_KEY (every configured key is accepted, the newest signs);
  the table keeps its SHA-256, expiry (default 12 hours) and sign-out time. Nothing in the cookie
  is trusted beyond "which session": the person, role and team (a `reads.people.Viewer`, the
  rules Slack uses) are read from the store on every request.
- The CSRF token of a session is HMAC(key, "csrf" + session token): it needs no storage and is
  worthless without the cookie (the synchronizer-token pattern of the OWASP CSRF cheat sheet).
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from sqlalchemy import select, update

from cadence.app import App
from cadence.services.errors import UserError
from cadence.services.reads.people import Viewer, viewer_by_rep_id, viewer_of
from core.contacts import normalize_email
from store.models import Rep, WebLink, WebSession

LINK_MINUTES = 15
MAX_LINK_MINUTES = 24 * 60
SESSION_LIFETIME = timedelta(hours=12)
COOKIE = "cadence_session"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _keys(app: App) -> list[bytes]:
    """HMAC keys derived from the Fernet keys (newest first), never the Fernet keys themselves."""
    return [hmac.new(key, b"cadence web session v1", hashlib.sha256).digest() for key in app.settings.secret_keys]


def _mac(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def create_link(app: App, email: str, minutes: int = LINK_MINUTES) -> str:
    """A one-time sign-in URL for the rep with this email, valid `minutes` (1 … 1440).

    Raises UserError for an unknown email or minutes out of range.
    """
    if not 1 <= minutes <= MAX_LINK_MINUTES:
        raise UserError(f"--minutes: {minutes} is not between 1 and {MAX_LINK_MINUTES}")
    try:
        address = normalize_email(email)
    except ValueError as exc:
        raise UserError(f"--email: {email!r} is not a valid email address ({exc})") from None
    token = secrets.token_urlsafe(32)
    now = app.clock.now()
    with app.db.session() as session:
        rep = session.scalar(select(Rep).where(Rep.email == address))
        if rep is None:
            raise UserError(f"--email: no rep with email {address}; add one with `cadence rep add --email {address}`")
        session.add(WebLink(token_hash=_hash(token), rep_id=rep.id, created_at=now,
                            expires_at=now + timedelta(minutes=minutes)))
    return f"{app.settings.public_url.rstrip('/')}/signin/{token}"


def redeem_link(app: App, token: str) -> tuple[str, Viewer] | None:
    """Use a sign-in link: a new session's cookie value and its person, or None when the link is
    unknown, expired or used already (the caller cannot tell which, on purpose)."""
    if not token or len(token) > 100:
        return None
    now = app.clock.now()
    with app.db.session(immediate=True) as session:
        link = session.scalar(select(WebLink).where(WebLink.token_hash == _hash(token)))
        if link is None or link.used_at is not None or link.expires_at <= now:
            return None
        used = session.execute(update(WebLink).where(WebLink.id == link.id, WebLink.used_at.is_(None))
                               .values(used_at=now).execution_options(synchronize_session=False)).rowcount
        if used != 1:
            return None
        secret = secrets.token_urlsafe(32)
        session.add(WebSession(token_hash=_hash(secret), rep_id=link.rep_id, created_at=now,
                               expires_at=now + SESSION_LIFETIME))
        rep_id = link.rep_id
    return f"{secret}.{_mac(_keys(app)[0], secret)}", viewer_by_rep_id(app, rep_id)


def session_for_email(app: App, email: str) -> tuple[str, Viewer] | None:
    """A new session for the rep with this address (an identity provider vouched for it): its
    cookie value and person, or None when no rep has that email."""
    try:
        address = normalize_email(email)
    except ValueError:
        return None
    now = app.clock.now()
    with app.db.session() as session:
        rep_id = session.scalar(select(Rep.id).where(Rep.email == address))
        if rep_id is None:
            return None
        secret = secrets.token_urlsafe(32)
        session.add(WebSession(token_hash=_hash(secret), rep_id=rep_id, created_at=now,
                               expires_at=now + SESSION_LIFETIME))
    return f"{secret}.{_mac(_keys(app)[0], secret)}", viewer_by_rep_id(app, rep_id)


def _secret_of(app: App, cookie: str | None) -> str | None:
    """The session token inside a cookie value whose signature checks out under any key."""
    if not cookie or len(cookie) > 200 or "." not in cookie:
        return None
    secret, _, signature = cookie.rpartition(".")
    if any(hmac.compare_digest(_mac(key, secret), signature) for key in _keys(app)):
        return secret
    return None


def person_of(app: App, cookie: str | None) -> Viewer | None:
    """The person signed in with this cookie value, or None (unsigned, unknown, ended or expired)."""
    secret = _secret_of(app, cookie)
    if secret is None:
        return None
    now = app.clock.now()
    # A read, in one snapshot: every page asks it, and a writer's session would queue them all on
    # SQLite's write lock.
    with app.db.session(readonly=True) as session:
        found = session.scalar(select(WebSession).where(WebSession.token_hash == _hash(secret)))
        if found is None or found.ended_at is not None or found.expires_at <= now:
            return None
        rep = session.get(Rep, found.rep_id)
        # role and team as they are now, never as they were at sign-in
        return viewer_of(session, rep) if rep is not None else None


def end_session(app: App, cookie: str | None) -> None:
    """Sign out: the session can never be used again (whatever the browser keeps)."""
    secret = _secret_of(app, cookie)
    if secret is None:
        return
    with app.db.session() as session:
        session.execute(update(WebSession).where(WebSession.token_hash == _hash(secret),
                                                 WebSession.ended_at.is_(None))
                        .values(ended_at=app.clock.now()).execution_options(synchronize_session=False))


def csrf_token(app: App, cookie: str | None) -> str:
    """The CSRF token of this session ("" without a valid cookie)."""
    secret = _secret_of(app, cookie)
    return _mac(_keys(app)[0], "csrf" + secret) if secret else ""


def csrf_ok(app: App, cookie: str | None, token: str | None) -> bool:
    """Whether `token` is this session's CSRF token (under any configured key)."""
    secret = _secret_of(app, cookie)
    if not secret or not token:
        return False
    return any(hmac.compare_digest(_mac(key, "csrf" + secret), token) for key in _keys(app))
