"""The Maildir connector: the embedded default mailbox (a Maildir++ tree, no credentials)."""
from connectors.maildir.mailbox import MaildirMailbox
from connectors.maildir.people import MaildirPeople

__all__ = ["MaildirMailbox", "MaildirPeople"]
