"""A mailbox's sending limits: the provider's and the operator's own (`cadence mailbox limits`)."""
from __future__ import annotations

from sqlalchemy import select

from cadence.app import App
from cadence.services.errors import UserError
from core.addresses import stored_address
from core.quota import Limits, combine_limits
from store.models import MailboxRow


def mailbox_limits(app: App, row: MailboxRow) -> Limits:
    """The limits that apply to the mailbox of `row`: the lower of the provider's and the operator's.

    Builds the mailbox's connector (raises what its factory raises, e.g. missing client settings).
    """
    return combine_limits(app.mailbox(row).limits, daily=row.daily_cap, per_minute=row.per_minute_cap,
                          concurrency=row.concurrency_cap)


def set_mailbox_limits(app: App, address: str, *, daily: int | None = None, per_minute: int | None = None,
                       concurrency: int | None = None) -> MailboxRow:
    """Set the operator's own limits of a mailbox (None: only the provider's apply)."""
    for name, value in (("daily", daily), ("per_minute", per_minute), ("concurrency", concurrency)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise UserError(f"{name}: expected a whole number of at least 1, got {value!r}")
    with app.db.session() as session:
        row = session.scalar(select(MailboxRow).where(MailboxRow.address == stored_address(address)))
        if row is None:
            raise UserError(f"no mailbox {address}; add it with `cadence mailbox add`")
        row.daily_cap, row.per_minute_cap, row.concurrency_cap = daily, per_minute, concurrency
        return row
