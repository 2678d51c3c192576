"""Outlook / Microsoft 365 mailboxes through msal and Microsoft Graph."""
from .mailbox import OutlookMailbox
from .oauth import OutlookConnection, OutlookSignIn, OutlookSignInError

__all__ = ["OutlookMailbox", "OutlookConnection", "OutlookSignIn", "OutlookSignInError"]
