"""What can go wrong talking to Salesforce, in words the sync can act on."""
from __future__ import annotations


class CrmError(Exception):
    """Base class; `reason` is one sentence for logs and `cadence crm status`."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Disconnected(CrmError):
    """The refresh token no longer works (`invalid_grant`): a person must sign in again."""


class ApiLimit(CrmError):
    """Salesforce refused the call with REQUEST_LIMIT_EXCEEDED: nothing was done; wait."""


class Transient(CrmError):
    """A 5xx, a timeout or a dropped connection: the call may or may not have taken effect."""


class Refused(CrmError):
    """Salesforce refused the request for good (malformed, no access, unknown object …)."""


class SignInError(CrmError):
    """The OAuth sign-in (authorization code exchange) failed."""
