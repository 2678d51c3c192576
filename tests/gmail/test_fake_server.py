"""The fake Gmail itself: the real client's upload paths, and running it as its own process."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build
from googleapiclient.http import MediaInMemoryUpload

from connectors.gmail import GmailMailbox
from core.email.compose import build_message
from tests.support.gmail import outgoing

ROOT = Path(__file__).resolve().parents[2]


def test_the_real_client_can_create_drafts_through_the_upload_paths(server, account):
    credentials = Credentials(token=None, refresh_token=account.refresh_token, token_uri=server.token_url,
                              client_id=server.client_id, client_secret=server.client_secret)
    service = build("gmail", "v1", credentials=credentials, static_discovery=True,
                    client_options={"api_endpoint": server.api_url})
    raw = build_message(outgoing(account.address)).as_bytes()

    def upload(**options):
        request = service.users().drafts().create(userId="me", media_body=MediaInMemoryUpload(
            raw, mimetype="message/rfc822"), **options)
        # googleapiclient moves upload URLs to the api_endpoint's host but keeps https
        # (_fix_up_media_path_base_url); the fake speaks plain http.
        assert request.uri.startswith("https://127.0.0.1:")
        request.uri = "http://" + request.uri[len("https://"):]
        return request.execute()

    multipart = upload(body={"message": {}})
    simple = upload()
    assert {multipart["id"], simple["id"]} <= set(account.drafts)
    assert [m.subject for m in account.folder("drafts")] == ["Quick question", "Quick question"]
    service.close()


def test_the_fake_runs_as_its_own_process(tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "tests.fakes.gmail_server", "--port", "0",
                                "--account", "rep@example.com=1//fixed-token"],
                               cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(process.stdout.readline())
        assert info["refresh_tokens"] == {"rep@example.com": "1//fixed-token"}
        mailbox = GmailMailbox("rep@example.com", refresh_token="1//fixed-token", client_id=info["client_id"],
                               client_secret=info["client_secret"], api_url=info["api_url"],
                               token_url=info["token_url"])
        try:
            draft = mailbox.create_draft(outgoing("rep@example.com"))
            assert mailbox.send_draft(draft).message_id == draft.message_id
        finally:
            mailbox.close()
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
        process.stdout.close()
