"""The Outlook tests' world: a fake Microsoft identity platform (HTTPS, test CA) and a fake Graph
(HTTP) on 127.0.0.1. `OutlookWorld` starts both servers, connects a mailbox through msal's
auth-code flow, and builds `OutlookMailbox` objects whose token cache it keeps; the contract
harness, tests/outlook and tests/e2e build on it.
"""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from connectors.outlook import OutlookMailbox, OutlookSignIn
from core.mailbox import OutgoingEmail, ThreadRef
from tests.fakes.graph_server import FakeGraphServer
from tests.fakes.identity_server import FakeIdentityServer
from tests.fakes.tls import make_test_tls

CONTACT = "ada@prospect.example"


def new_email(address: str, subject: str = "Quick question", body: str = "Hi Ada, one question.",
              reply_to: ThreadRef | None = None, headers: dict[str, str] | None = None,
              to: str = CONTACT) -> OutgoingEmail:
    return OutgoingEmail(
        message_id=f"<{uuid.uuid4().hex}@cadence.test>", from_address=address, from_name="Rita Rep",
        to_address=to, to_name="Ada Lovelace", subject=subject, html_body=f"<p>{body}</p>",
        text_body=body, reply_to=reply_to,
        headers={"List-Unsubscribe": "<https://cadence.test/u/abc>"} if headers is None else headers)


CLIENT_ID = "6731de76-14a6-49ae-97bc-6eba6914391e"
CLIENT_SECRET = "test-secret~not-a-real-one"
REDIRECT_URI = "https://cadence.test/oauth/outlook/callback"


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
