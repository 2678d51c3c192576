"""Connect links (`cadence mailbox connect … --link`) are single-use and bound to the browser
that opened them (issue #12 item 3).

The attack: whoever holds a link starts the sign-in and forwards the consent page to someone
else; their account must never end up connected to the link's rep. Each shape below goes through
the real `/oauth/*/start` and `/oauth/*/callback` routes, the fake Google / Microsoft servers and
one or two "browsers" (HTTP clients with their own cookie jars).
"""
from __future__ import annotations

import json

import httpx
import pytest
from starlette.testclient import TestClient

from tests.support.e2e import REP

OTHER_BROWSER = "started in another browser"


def _server(cli):
    from cadence.app import App
    from cadence.connect import oauth_routes
    from cadence.http import create_http_app

    app = App.from_settings()
    return create_http_app(app, extra_routes=oauth_routes(app))


def _browser(web) -> TestClient:
    """A browser of its own (its own cookie jar); the app's lifespan is not needed for sign-ins."""
    return TestClient(web, base_url="https://cadence.test", follow_redirects=False)


def _link(cli, provider: str) -> str:
    return cli.ok("mailbox", "connect", provider, "--owner", REP, "--link").split()[-1]


def _mailboxes(cli) -> list:
    return [(b["address"], b["provider"]) for b in json.loads(cli.ok("mailbox", "list", "--json"))]


def _consent(provider: str, location: str, world) -> str:
    """Play the person on the consent page; returns the callback URL (with its query)."""
    if provider == "gmail":
        return httpx.get(location, follow_redirects=False).headers["location"]
    identity, _graph = world
    identity.sign_in(REP)
    answer = identity.complete_sign_in(location)
    return "https://cadence.test/oauth/outlook/callback?" + httpx.QueryParams(answer).__str__()


@pytest.fixture(params=["gmail", "outlook"])
def provider_world(request, cli):
    world = request.getfixturevalue(request.param)
    cli.ok("rep", "add", "--email", REP)
    return request.param, world


@pytest.mark.parametrize("shape", ["another browser, no cookie", "another browser, forged cookie",
                                   "another browser, its own sign-in's cookie", "the right browser"])
def test_a_callback_is_accepted_only_from_the_browser_that_opened_the_link(cli, provider_world, shape):
    provider, world = provider_world
    web = _server(cli)
    holder, victim = _browser(web), _browser(web)
    start = holder.get(_link(cli, provider))
    assert start.status_code == 302
    callback = _consent(provider, start.headers["location"], world)
    if shape == "the right browser":
        done = holder.get(callback)
        assert done.status_code == 200 and REP in done.text
        assert _mailboxes(cli) == [(REP, provider)]
        return
    if shape == "another browser, forged cookie":
        for cookie in holder.cookies.jar:
            victim.cookies.set(cookie.name, "forged-" + cookie.value, domain=cookie.domain, path=cookie.path)
    elif shape == "another browser, its own sign-in's cookie":
        assert victim.get(_link(cli, provider)).status_code == 302  # a sign-in of its own, other state
    refused = victim.get(callback)
    assert refused.status_code == 400 and OTHER_BROWSER in refused.text, refused.text
    # The refused answer ends that sign-in: not even the right browser can finish it now.
    assert holder.get(callback).status_code == 400
    assert _mailboxes(cli) == []


def test_a_link_starts_one_sign_in_only(cli, provider_world):
    provider, world = provider_world
    web = _server(cli)
    link = _link(cli, provider)
    first, second = _browser(web), _browser(web)
    assert first.get(link).status_code == 302
    again = second.get(link)
    assert again.status_code == 403 and "used already" in again.text
    assert first.get(link).status_code == 403
    other = _link(cli, provider)  # a fresh link works
    assert second.get(other).status_code == 302


def test_the_browser_cookie_is_httponly_lax_secure_and_scoped_to_the_provider(cli, provider_world):
    provider, _world = provider_world
    web = _server(cli)
    start = _browser(web).get(_link(cli, provider))
    cookie = start.headers["set-cookie"]
    assert cookie.startswith("cadence_oauth_")
    attributes = {part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite", "path", "max-age"} <= set(attributes), cookie
    assert attributes["samesite"].lower() == "samesite=lax"
    assert attributes["path"] == f"Path=/oauth/{provider}/"
    assert start.headers["cache-control"] == "no-store"


def test_an_expired_link_is_refused(cli, provider_world):
    provider, _world = provider_world
    link = cli.ok("mailbox", "connect", provider, "--owner", REP, "--link", now="2026-11-01T08:00:00Z").split()[-1]
    answer = _browser(_server(cli)).get(link)
    assert answer.status_code == 403 and "expired" in answer.text
