"""Single-use tokens: a signed link is used at most once, across processes and restarts."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from store.db import Database
from store.models import UsedToken


def use_once(db: Database, digest: str, purpose: str, now: datetime, expires_at: datetime) -> bool:
    """Record the token `digest` (SHA-256 hex of what was signed) as used; False when it was already.

    The primary key decides between two concurrent uses, so exactly one of them gets True.
    Rows of tokens past their expiry are removed on the way (an expired link is refused anyway).
    """
    try:
        with db.session(immediate=True) as session:
            session.execute(delete(UsedToken).where(UsedToken.expires_at < now))
            session.add(UsedToken(digest=digest, purpose=purpose, used_at=now, expires_at=expires_at))
    except IntegrityError:
        return False
    return True
