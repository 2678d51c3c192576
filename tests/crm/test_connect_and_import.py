"""Connecting through `cadence serve`'s signed link, and importing people from a SOQL query."""
from __future__ import annotations

from urllib.parse import urlsplit

from sqlalchemy import select
from starlette.testclient import TestClient

from cadence.app import App
from cadence.crm_http import COOKIE
from cadence.http import build_routes, create_http_app
from cadence.settings import Settings
from store.models import Contact, CrmConnection

from tests.support.crm import ADMIN, REP


def _server(cli):
    app = App.from_settings(Settings())
    slack, extra, _starts, _stops = build_routes(app)
    return create_http_app(app, slack_routes=slack, extra_routes=extra)


def _browser(server) -> TestClient:
    return TestClient(server, base_url="https://cadence.test")


def _link(cli) -> str:
    out = cli.ok("crm", "connect", "salesforce", "--owner", ADMIN, "--link")
    url = out.strip().splitlines()[-1]
    assert url.startswith("https://cadence.test/oauth/salesforce/start?t=")
    return url


def test_a_signed_link_connects_once_in_the_browser_that_opened_it(cli, org):
    cli.ok("init")
    cli.ok("rep", "add", "--email", ADMIN, "--role", "admin")
    fake = org.fake
    fake.sign_in(org.admin_user)
    url = _link(cli)
    server = _server(cli)
    with _browser(server) as browser:
        started = browser.get(url.replace("https://cadence.test", ""), follow_redirects=False)
        assert started.status_code == 302 and started.headers["location"].startswith(fake.base_url)
        cookie = started.headers["set-cookie"]
        assert COOKIE in cookie and "HttpOnly" in cookie and "samesite=lax" in cookie.lower() and "Secure" in cookie
        consent = dict(part.split("=", 1) for part in urlsplit(started.headers["location"]).query.split("&"))
        assert consent["code_challenge_method"] == "S256" and consent["scope"] == "api+refresh_token"
        back = fake.complete_sign_in(started.headers["location"])
        assert back.startswith("https://cadence.test/oauth/salesforce/callback?")

        # Another browser (no cookie) cannot finish it …
        refused = _browser(server).get(back.replace("https://cadence.test", ""))
        assert refused.status_code == 400 and "another browser" in refused.text
        # … and the link cannot start a second sign-in.
        assert browser.get(url.replace("https://cadence.test", ""), follow_redirects=False).status_code == 403

    # The link is used up, so a fresh one, opened and finished in the same browser, connects.
    url = _link(cli)
    with _browser(_server(cli)) as browser:
        started = browser.get(url.replace("https://cadence.test", ""), follow_redirects=False)
        back = fake.complete_sign_in(started.headers["location"])
        done = browser.get(back.replace("https://cadence.test", ""))
        assert done.status_code == 200 and "Salesforce connected" in done.text
        assert "Traceback" not in done.text
        tampered = browser.get(url.replace("https://cadence.test", "")[:-3] + "AAA", follow_redirects=False)
        assert tampered.status_code == 403
    report = cli.ok("crm", "status")
    assert f"salesforce: connected ({fake.base_url})" in report and ADMIN in report
    app = App.from_settings(Settings())
    with app.db.session() as session:
        row = session.scalar(select(CrmConnection))
        assert row.instance_url == fake.base_url and row.user_id == org.admin_user
        assert b"5Aep" not in row.credentials  # stored encrypted
        assert app.decrypt(row.credentials)["refresh_token"].startswith("5Aep")


def test_a_refresh_token_file_that_salesforce_refuses_is_reported_in_one_sentence(cli, org):
    cli.ok("init")
    cli.ok("rep", "add", "--email", ADMIN)
    bad = cli.home / "bad.txt"
    bad.write_text("not-a-token\n", encoding="utf-8")
    result = cli("crm", "connect", "salesforce", "--owner", ADMIN, "--refresh-token-file", str(bad))
    assert result.code == 1 and "invalid_grant" in result.err and "Traceback" not in result.err
    assert "not connected" in cli.ok("crm", "status")
    result = cli("crm", "connect", "hubspot", "--owner", ADMIN, "--link")
    assert result.code == 1 and "only salesforce" in result.err


def test_contacts_and_leads_come_from_soql_queries_over_several_pages(cli, org):
    fake = org.fake  # pages of two records: five contacts take three pages (queryMore)
    ids = [fake.add_contact(f"p{i}@prospect.example", f"P{i}", f"Person{i}", account=f"Co{i}",
                            Title="CTO", MailingCountry="United States") for i in range(4)]
    fake.add_contact("bad-address", "Bad", "Row", MailingCountry="United States")
    fake.add_contact("de@prospect.example", "Dora", "Deutsch", MailingCountry="Germany")
    lead = fake.add_lead("lena@lead.example", "Lena", "Lead", company="LeadCo", Country="FR")
    cli.ok("init")
    cli.ok("rep", "add", "--email", ADMIN)
    cli.ok("crm", "connect", "salesforce", "--owner", ADMIN, "--refresh-token-file", org.refresh_token_file(cli))

    soql = ("SELECT Id, Email, FirstName, LastName, Title, Account.Name, MailingCountry FROM Contact "
            "WHERE MailingCountry = 'United States'")
    result = cli("contacts", "import", "--salesforce", soql)
    assert result.code == 1  # one rejected record, like a file with a bad row
    assert "imported 4, updated 0, unchanged 0, rejected 1" in result.out
    assert "salesforce Contact record 5 (" in result.err and "email" in result.err
    assert sum(1 for method, path in fake.calls if path.startswith("query/")) == 2  # two queryMore pages
    again = cli("contacts", "import", "--salesforce", soql)
    assert "imported 0, updated 0, unchanged 4, rejected 1" in again.out

    out = cli.ok("contacts", "import", "--salesforce",
                 "SELECT Id, Email, FirstName, LastName, Title, Company, Country FROM Lead")
    assert "imported 1, updated 0, unchanged 0, rejected 0" in out
    app = App.from_settings(Settings())
    with app.db.session() as session:
        people = {c.email: c for c in session.scalars(select(Contact))}
    assert set(people) == {f"p{i}@prospect.example" for i in range(4)} | {"lena@lead.example"}
    p0 = people["p0@prospect.example"]
    assert (p0.first_name, p0.last_name, p0.company, p0.title, p0.country, p0.salesforce_id) == (
        "P0", "Person0", "Co0", "CTO", "US", ids[0])
    assert (people["lena@lead.example"].company, people["lena@lead.example"].country,
            people["lena@lead.example"].salesforce_id) == ("LeadCo", "FR", lead)

    refused = cli("contacts", "import", "--salesforce", "SELECT Id, Name FROM Account")
    assert refused.code == 1 and "only Contact and Lead" in refused.err
    malformed = cli("contacts", "import", "--salesforce", "SELECT Id, Email FROM Contact WHERE Email ~ 1")
    assert malformed.code == 1 and "MALFORMED_QUERY" in malformed.err and "Traceback" not in malformed.err
    assert REP not in malformed.err
