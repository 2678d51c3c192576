"""A fake Salesforce org over HTTPS, and the CLI set up to use it."""
from __future__ import annotations

import pytest

from tests.fakes.salesforce_server import FakeSalesforce
from tests.fakes.tls import make_test_tls
from tests.support.crm import ADMIN, CLIENT_ID, CLIENT_SECRET, REP, Org


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
