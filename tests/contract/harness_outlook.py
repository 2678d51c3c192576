"""Contract harness for Outlook: the real msal and our Graph client against a fake Microsoft
identity platform (HTTPS, test CA) and a fake Graph (HTTP), both on 127.0.0.1.

`OutlookWorld` is also what tests/outlook builds on: it starts both servers, connects a mailbox
through msal's auth-code flow, and builds `OutlookMailbox` objects whose token cache it keeps.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from connectors.outlook import OutlookMailbox, OutlookSignIn
from core.mailbox import DraftRef, SentRef
from tests.fakes.graph_server import FakeGraphServer
from tests.fakes.identity_server import FakeIdentityServer
from tests.fakes.tls import make_test_tls

from .harness import ProviderRecord

CLIENT_ID = "6731de76-14a6-49ae-97bc-6eba6914391e"
CLIENT_SECRET = "test-secret~not-a-real-one"
REDIRECT_URI = "https://cadence.test/oauth/outlook/callback"
RECORD_FOLDERS = {"drafts": "drafts", "sent": "sentitems", "inbox": "inbox"}


class OutlookWorld:
    """The servers around one rep's Outlook mailbox, and the rep's stored token cache."""

    def __init__(self, tmp_path: Path, address: str = "rep@example.com", *, page_size: int = 2,
                 access_token_lifetime: int = 3600):
        self.address = address
        self.tls = make_test_tls(Path(tmp_path) / "tls")
        self.identity = FakeIdentityServer(self.tls, access_token_lifetime=access_token_lifetime).start()
        self.graph = FakeGraphServer(identity=self.identity, page_size=page_size).start()
        self.identity.register_client(CLIENT_ID, CLIENT_SECRET, (REDIRECT_URI,))
        self.graph.add_mailbox(address, "Rita Rep")
        self.token_cache: str | None = None
        self.cache_writes: list[str] = []
        self.sleeps: list[float] = []

    def sign_in(self) -> OutlookSignIn:
        return OutlookSignIn(client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                             authority=self.identity.authority(), http_client=self.tls.session())

    def connect(self) -> str:
        """The rep connects the mailbox in a browser; returns the stored token cache."""
        sign_in = self.sign_in()
        flow = sign_in.start_auth_code_flow(REDIRECT_URI)
        self.identity.sign_in(self.address)
        connection = sign_in.finish_auth_code_flow(flow, self.identity.complete_sign_in(flow["auth_uri"]))
        assert connection.username == self.address
        self.token_cache = connection.token_cache
        return connection.token_cache

    def store_token_cache(self, serialized: str) -> None:
        self.cache_writes.append(serialized)
        self.token_cache = serialized

    def mailbox(self, **overrides: Any) -> OutlookMailbox:
        options: dict[str, Any] = dict(
            client_id=CLIENT_ID, client_secret=CLIENT_SECRET, authority=self.identity.authority(),
            graph_url=self.graph.graph_url, token_cache=self.token_cache,
            on_token_cache_change=self.store_token_cache, sleep=self.sleeps.append, http_timeout=5,
            identity_http_client=self.tls.session())
        options.update(overrides)
        return OutlookMailbox(self.address, **options)

    def close(self) -> None:
        self.graph.stop()
        self.identity.stop()


class OutlookHarness:
    def __init__(self, world: OutlookWorld):
        self.world = world
        self.address = world.address
        self.graph = world.graph
        world.connect()
        self.mailbox = world.mailbox()

    def records(self, folder: str) -> list[ProviderRecord]:
        return [
            ProviderRecord(folder, m.internet_message_id, tuple(a for _, a in m.to), m.subject, m.text,
                           m.in_reply_to, tuple(m.references), m.conversation_id, dict(m.headers))
            for m in self.graph.messages(self.address, RECORD_FOLDERS[folder])
        ]

    def user_sends_draft(self, draft: DraftRef, *, new_subject: str | None = None) -> None:
        self.graph.user_sends_draft(self.address, draft.draft_id, new_subject=new_subject)

    def contact_replies(self, to: DraftRef | SentRef, *, from_address: str, body: str,
                        headers: dict[str, str] | None = None, subject: str | None = None) -> None:
        parent = self.graph.message(self.address, to.provider_message_id)
        self.graph.deliver(self.address, from_address=from_address, subject=subject or f"RE: {parent.subject}",
                           body_text=body, in_reply_to_id=parent.id, headers=headers)

    def bounce(self, sent: SentRef, *, recipient: str) -> None:
        self.graph.bounce(self.address, sent.provider_message_id, recipient=recipient)

    def lose_next_send_response(self) -> None:
        self.graph.lose_next_send_response()


@contextlib.contextmanager
def make_harness(tmp_path):
    world = OutlookWorld(tmp_path)
    try:
        yield OutlookHarness(world)
    finally:
        world.close()
