"""Sign-in links and sessions as use cases, on SQLite and PostgreSQL: single use, hashed, expiring."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from cadence.app import App
from cadence.services.directory import add_rep
from cadence.services.errors import UserError
from cadence.services.signin import create_link, csrf_ok, csrf_token, end_session, person_of, redeem_link
from cadence.settings import Settings
from core.clock import FixedClock
from store.db import Database
from store.models import WebLink, WebSession

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def app(database_url, tmp_path):
    settings = Settings(CADENCE_HOME=tmp_path, CADENCE_PUBLIC_URL="https://cadence.test/")
    db = Database(database_url)
    db.upgrade()
    built = App(settings=settings, db=db, clock=FixedClock(T0))
    add_rep(built, email="mona@acme.example", role="manager")
    add_rep(built, email="rita@acme.example", manager="mona@acme.example")
    add_rep(built, email="ada@acme.example", role="admin")
    yield built
    db.dispose()


def token_of(url: str) -> str:
    assert url.startswith("https://cadence.test/signin/")
    return url.rsplit("/", 1)[1]


def test_a_link_signs_in_once_and_only_its_hash_is_stored(app):
    url = create_link(app, "Rita@Acme.example")
    token = token_of(url)
    with app.db.session() as session:
        stored = session.scalars(select(WebLink)).one()
        assert token not in stored.token_hash and len(stored.token_hash) == 64
        assert stored.expires_at == T0 + timedelta(minutes=15)
    cookie, person = redeem_link(app, token)
    assert (person.email, person.role) == ("rita@acme.example", "rep")
    assert redeem_link(app, token) is None  # a second opening does not sign in
    assert person_of(app, cookie).email == "rita@acme.example"
    with app.db.session() as session:
        assert cookie.split(".")[0] not in session.scalars(select(WebSession)).one().token_hash


def test_links_and_sessions_expire(app):
    early = token_of(create_link(app, "rita@acme.example", minutes=1))
    late = token_of(create_link(app, "rita@acme.example", minutes=30))
    app.clock.advance(timedelta(minutes=1))
    assert redeem_link(app, early) is None
    cookie, _ = redeem_link(app, late)
    assert person_of(app, cookie) is not None
    app.clock.advance(timedelta(hours=12))
    assert person_of(app, cookie) is None


def test_sign_out_ends_the_session_for_good(app):
    cookie, _ = redeem_link(app, token_of(create_link(app, "rita@acme.example")))
    end_session(app, cookie)
    assert person_of(app, cookie) is None


def test_tampered_cookies_and_csrf_tokens_are_refused(app):
    cookie, _ = redeem_link(app, token_of(create_link(app, "rita@acme.example")))
    secret, signature = cookie.split(".")
    assert person_of(app, f"{secret}.{'0' * len(signature)}") is None
    assert person_of(app, secret) is None and person_of(app, "") is None
    token = csrf_token(app, cookie)
    assert csrf_ok(app, cookie, token)
    assert not csrf_ok(app, cookie, "") and not csrf_ok(app, cookie, token[:-1] + ("1" if token[-1] == "0" else "0"))
    other, _ = redeem_link(app, token_of(create_link(app, "rita@acme.example")))
    assert not csrf_ok(app, other, token)  # one session's token is worthless with another's cookie


def test_roles_and_teams_come_from_the_store(app):
    person = lambda email: redeem_link(app, token_of(create_link(app, email)))[1]  # noqa: E731
    rita, mona, ada = person("rita@acme.example"), person("mona@acme.example"), person("ada@acme.example")
    assert rita.team_ids == frozenset({rita.rep_id})
    assert mona.team_ids == frozenset({mona.rep_id, rita.rep_id})
    assert ada.is_admin and ada.may_see_campaign(frozenset({12345}))
    assert not rita.may_see_campaign(frozenset({mona.rep_id})) and mona.may_see_campaign(frozenset({rita.rep_id}))


def test_bad_requests_for_links_say_what_is_wrong(app):
    with pytest.raises(UserError, match="no rep with email nobody@acme.example"):
        create_link(app, "nobody@acme.example")
    with pytest.raises(UserError, match="--minutes: 0 is not between 1 and 1440"):
        create_link(app, "rita@acme.example", minutes=0)
    with pytest.raises(UserError, match="--email: 'not-an-address'"):
        create_link(app, "not-an-address")


def test_cadence_web_link_prints_the_url_on_standard_output(sqlite_cli):
    sqlite_cli.ok("rep", "add", "--email", "rita@acme.example")
    result = sqlite_cli("web", "link", "--email", "rita@acme.example", "--minutes", "5")
    assert result.code == 0
    assert result.out.count("\n") == 1 and result.out.startswith("https://cadence.test/signin/")
    refused = sqlite_cli("web", "link", "--email", "nobody@acme.example")
    assert refused.code == 1 and refused.out == ""
    assert refused.err.strip() == ("error: --email: no rep with email nobody@acme.example; add one with "
                                   "`cadence rep add --email nobody@acme.example`")
