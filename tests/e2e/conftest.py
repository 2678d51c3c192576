"""Fixtures of the end-to-end tests: the fake Gmail, or the fake Microsoft identity platform and
Graph, with the CLI's settings pointing at them (tests/support/e2e.py holds the rep they serve)."""
from __future__ import annotations

import pytest

from tests.fakes.gmail_server import FakeGmail
from tests.fakes.graph_server import FakeGraphServer
from tests.fakes.identity_server import FakeIdentityServer
from tests.fakes.tls import make_test_tls
from tests.support.e2e import REP
from tests.support.outlook import CLIENT_ID, CLIENT_SECRET


@pytest.fixture
def gmail(cli, tmp_path):
    with FakeGmail() as server:
        account = server.add_account(REP)
        for name, value in (("CADENCE_GMAIL_API_URL", server.api_url), ("CADENCE_GOOGLE_TOKEN_URL", server.token_url),
                            ("CADENCE_GOOGLE_AUTH_URL", server.auth_url),
                            ("CADENCE_GOOGLE_CLIENT_ID", server.client_id),
                            ("CADENCE_GOOGLE_CLIENT_SECRET", server.client_secret)):
            cli.setenv(name, value)
        yield server, account


@pytest.fixture
def outlook(cli, tmp_path):
    tls = make_test_tls(tmp_path / "tls")
    identity = FakeIdentityServer(tls).start()
    graph = FakeGraphServer(identity=identity).start()
    identity.register_client(CLIENT_ID, CLIENT_SECRET, ("https://cadence.test/oauth/outlook/callback",))
    graph.add_mailbox(REP, "Rita Rep")
    for name, value in (("CADENCE_MS_AUTHORITY", identity.authority()), ("CADENCE_GRAPH_API_URL", graph.graph_url),
                        ("CADENCE_MS_CLIENT_ID", CLIENT_ID), ("CADENCE_MS_CLIENT_SECRET", CLIENT_SECRET),
                        ("REQUESTS_CA_BUNDLE", str(tls.ca_path)), ("SSL_CERT_FILE", str(tls.ca_path))):
        cli.setenv(name, value)
    yield identity, graph
    graph.stop()
    identity.stop()
