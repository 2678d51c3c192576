"""Gmail connector: `GmailMailbox` (the `core.mailbox.Mailbox` for Gmail) and the OAuth helpers."""
from .mailbox import GMAIL_SCOPES, GmailMailbox
from .transport import QuotaBucket

__all__ = ["GMAIL_SCOPES", "GmailMailbox", "QuotaBucket"]
