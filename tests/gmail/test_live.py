"""Against a real Gmail account; skipped unless CADENCE_LIVE_TESTS=1 and the Google settings are set.

Needs CADENCE_GOOGLE_CLIENT_ID, CADENCE_GOOGLE_CLIENT_SECRET, CADENCE_LIVE_GMAIL_ADDRESS and
CADENCE_LIVE_GMAIL_REFRESH_TOKEN. It creates a draft addressed to the account itself, reads it
back, and deletes it; nothing is sent.
"""
from __future__ import annotations

import os
import uuid

import pytest

from connectors.gmail import GmailMailbox
from core.mailbox import OutgoingEmail, SendCheck

NEEDED = ("CADENCE_GOOGLE_CLIENT_ID", "CADENCE_GOOGLE_CLIENT_SECRET", "CADENCE_LIVE_GMAIL_ADDRESS",
          "CADENCE_LIVE_GMAIL_REFRESH_TOKEN")

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(os.environ.get("CADENCE_LIVE_TESTS") != "1" or not all(os.environ.get(n) for n in NEEDED),
                       reason="live Gmail test: set CADENCE_LIVE_TESTS=1 and " + ", ".join(NEEDED)),
]


def test_a_draft_round_trip_in_real_gmail():
    address = os.environ["CADENCE_LIVE_GMAIL_ADDRESS"]
    mailbox = GmailMailbox(address, refresh_token=os.environ["CADENCE_LIVE_GMAIL_REFRESH_TOKEN"],
                           client_id=os.environ["CADENCE_GOOGLE_CLIENT_ID"],
                           client_secret=os.environ["CADENCE_GOOGLE_CLIENT_SECRET"],
                           api_url=os.environ.get("CADENCE_GMAIL_API_URL", "https://gmail.googleapis.com/"),
                           token_url=os.environ.get("CADENCE_GOOGLE_TOKEN_URL", "https://oauth2.googleapis.com/token"))
    try:
        assert mailbox.poll(None).cursor.isdigit()
        email = OutgoingEmail(message_id=f"<{uuid.uuid4().hex}@cadence.test>", from_address=address,
                              to_address=address, subject="Cadence live test (draft only)",
                              html_body="<p>Safe to delete.</p>", text_body="Safe to delete.")
        draft = mailbox.create_draft(email)
        try:
            assert mailbox.check_sent(email.message_id, draft).status == SendCheck.NOT_SENT
        finally:
            mailbox.delete_draft(draft)
    finally:
        mailbox.close()
