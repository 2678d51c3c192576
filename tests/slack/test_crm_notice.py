"""`/cadence status` says when the CRM connection needs sign-in again."""
from __future__ import annotations

from cadence.services.crm import mark_disconnected, store_connection
from crm.oauth import Tokens
from tests.support.slack import text_of


def test_status_says_when_salesforce_needs_sign_in(served, app):
    def status() -> str:
        response, hook = served.command("URITA", "status")
        assert response.status_code == 200
        return text_of(served.hook(hook))

    assert "Salesforce" not in status()  # no CRM connected: nothing to say
    store_connection(app, "rita@acme.example", "5Aep-refresh",
                     Tokens("00D!access", "https://acme.my.salesforce.com", "5Aep-refresh", "00Dxx", "005xx"))
    assert "Salesforce" not in status()
    mark_disconnected(app, "Salesforce refused the refresh token (invalid_grant: expired access/refresh token)")
    body = status()
    assert "*Flow*" in body  # the campaigns are still shown
    assert "Salesforce is disconnected" in body and "invalid_grant" in body and "needs sign-in" in body
