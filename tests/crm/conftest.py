"""A fake Salesforce org over HTTPS, and the CLI set up to use it."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.fakes.salesforce_server import FakeSalesforce
from tests.fakes.tls import make_test_tls

CLIENT_ID, CLIENT_SECRET = "3MVG9-cadence-test", "cadence-secret"
REP, ADMIN = "rita@acme.example", "ada@acme.example"


@dataclass
class Org:
    fake: FakeSalesforce
    rep_user: str
    admin_user: str

    def refresh_token_file(self, cli, name: str = "sf-token.txt") -> str:
        path = cli.home / name
        path.write_text(self.fake.issue_refresh_token(self.admin_user, CLIENT_ID) + "\n", encoding="utf-8")
        return str(path)


@pytest.fixture
def org(cli, tmp_path):
    tls = make_test_tls(tmp_path / "tls")
    fake = FakeSalesforce(tls, page_size=2).start()
    fake.register_client(CLIENT_ID, CLIENT_SECRET, ("https://cadence.test/oauth/salesforce/callback",))
    found = Org(fake, fake.add_user(REP, "Rita Rep"), fake.add_user(ADMIN, "Ada Admin"))
    for name, value in (("CADENCE_SALESFORCE_LOGIN_URL", fake.base_url), ("CADENCE_SALESFORCE_CLIENT_ID", CLIENT_ID),
                        ("CADENCE_SALESFORCE_CLIENT_SECRET", CLIENT_SECRET), ("REQUESTS_CA_BUNDLE", str(tls.ca_path))):
        cli.setenv(name, value)
    yield found
    fake.stop()
