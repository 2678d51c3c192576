"""Gmail's error answers translated to `core.mailbox` exceptions, through tables.

Google answers errors as `{"error": {"code", "message", "errors": [{"reason", ...}], "status"}}`.
The `reason` (or, failing that, the gRPC-style `status`) picks our exception class; the HTTP
status is the fallback. 404 is not in the tables: what a missing resource means depends on the
call (a sent draft, a deleted message, an expired historyId), so callers decide.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from googleapiclient.errors import HttpError

from core.mailbox import Disconnected, MailboxError, PermanentError, RateLimited, TransientError

ERROR_BY_REASON: dict[str, type[MailboxError]] = {
    # rate and quota limits: wait, then try again
    "rateLimitExceeded": RateLimited,
    "userRateLimitExceeded": RateLimited,
    "dailyLimitExceeded": RateLimited,
    "quotaExceeded": RateLimited,
    "concurrentLimitExceeded": RateLimited,
    "RESOURCE_EXHAUSTED": RateLimited,
    # the credentials or the account no longer allow this: a person must act
    "authError": Disconnected,
    "insufficientPermissions": Disconnected,
    "ACCESS_TOKEN_SCOPE_INSUFFICIENT": Disconnected,
    "UNAUTHENTICATED": Disconnected,
    "domainPolicy": Disconnected,
    "accessNotConfigured": Disconnected,
    "failedPrecondition": Disconnected,  # e.g. "Mail service not enabled" for the account
    # this message is refused for good
    "invalidArgument": PermanentError,
    "invalid": PermanentError,
    "badRequest": PermanentError,
    "INVALID_ARGUMENT": PermanentError,
    # Google's side is unwell
    "backendError": TransientError,
    "internalError": TransientError,
    "UNAVAILABLE": TransientError,
}

ERROR_BY_STATUS: dict[int, type[MailboxError]] = {
    400: PermanentError,
    401: Disconnected,
    403: Disconnected,
    408: TransientError,
    409: TransientError,
    413: PermanentError,
    429: RateLimited,
    500: TransientError,
    502: TransientError,
    503: TransientError,
    504: TransientError,
}

# Gmail's rate-limit messages may name the moment to retry: "User-rate limit exceeded.  Retry after 2024-05-01T10:00:00.000Z"
RETRY_AFTER_IN_MESSAGE = re.compile(r"Retry after (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z)")


@dataclass(frozen=True)
class GmailFailure:
    """One error answer from the Gmail API, read once."""

    status: int
    reason: str
    message: str
    retry_after: float | None = None

    @classmethod
    def from_http_error(cls, error: HttpError) -> "GmailFailure":
        status = int(error.resp.status)
        reason, message = "", ""
        try:
            body = json.loads(error.content or b"{}").get("error", {})
        except (ValueError, AttributeError):
            body = {}
        if isinstance(body, dict):
            details = body.get("errors") or [{}]
            reason = details[0].get("reason") or body.get("status") or ""
            message = body.get("message") or details[0].get("message") or ""
        elif isinstance(body, str):  # OAuth-style {"error": "invalid_grant"}
            reason = body
        return cls(status, reason, message or f"HTTP {status}", _retry_after(error.resp, message))

    @property
    def error_class(self) -> type[MailboxError]:
        chosen = ERROR_BY_REASON.get(self.reason) or ERROR_BY_STATUS.get(self.status)
        if chosen is None:
            chosen = TransientError if self.status >= 500 else PermanentError
        if chosen is RateLimited and self.status not in (403, 429):
            return TransientError
        return chosen

    def describe(self, action: str) -> str:
        reason = f" ({self.reason})" if self.reason else ""
        return f"Gmail refused {action}: HTTP {self.status}{reason}: {self.message}"

    def to_error(self, action: str) -> MailboxError:
        cls = self.error_class
        if issubclass(cls, TransientError):
            return cls(self.describe(action), retry_after=self.retry_after)
        return cls(self.describe(action))


def _retry_after(response, message: str) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or HTTP date) or a "Retry after" message."""
    header = (response.get("retry-after") or "").strip()
    if header:
        try:
            return max(0.0, float(header))
        except ValueError:
            return _seconds_between(response.get("date"), _parse_http_date(header))
    found = RETRY_AFTER_IN_MESSAGE.search(message or "")
    if found:
        return _seconds_between(response.get("date"), datetime.fromisoformat(found.group(1).replace("Z", "+00:00")))
    return None


def _parse_http_date(text: str) -> datetime | None:
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)  # "-0000" means UTC too


def _seconds_between(date_header: str | None, until: datetime | None) -> float | None:
    """Measured against the server's own Date header, so our clock's skew does not matter."""
    now = _parse_http_date(date_header) if date_header else None
    if now is None or until is None:
        return None
    return max(0.0, (until - now).total_seconds())
