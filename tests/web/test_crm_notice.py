"""The web app's campaign list says when the CRM connection needs sign-in again."""
from __future__ import annotations

from cadence.services.crm import mark_disconnected, store_connection
from crm.oauth import Tokens
from tests.support.web import REP, seed


def test_the_home_page_says_when_salesforce_needs_sign_in(site):
    seed(site)
    client = site.client(REP)
    assert 'data-crm="disconnected"' not in client.get("/").text
    store_connection(site.app, REP, "5Aep-refresh",
                     Tokens("00D!access", "https://acme.my.salesforce.com", "5Aep-refresh", "00Dxx", "005xx"))
    mark_disconnected(site.app, "Salesforce refused the refresh token (invalid_grant: expired access/refresh token)")
    home = client.get("/")
    assert home.status_code == 200 and 'data-crm="disconnected"' in home.text
    assert "Salesforce is disconnected" in home.text and "needs sign-in" in home.text
