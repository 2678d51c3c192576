"""Who may see and do what, over real HTTP: single-use links, cookie flags, roles answered with 404,
CSRF on every POST, sign-out, no open redirect, the Content-Security-Policy."""
from __future__ import annotations

import re

from starlette.testclient import TestClient

from cadence.services.reporting import campaign_status
from tests.support.web import MANAGER, OTHER, REP, campaign_id, seed


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)


def test_a_link_signs_in_at_once_once_and_always_lands_on_the_root(site):
    seed(site)
    link = site.link(REP).removeprefix(site.url)
    client = site.client()
    first = client.get(link + "?next=https://evil.example/")
    assert first.status_code == 303 and first.headers["location"] == "/"
    cookie = first.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # CADENCE_PUBLIC_URL is http here
    home = client.get("/")
    assert home.status_code == 200 and "Rita Rep" in home.text
    stranger = site.client()
    second = stranger.get(link)
    assert second.status_code == 400 and "set-cookie" not in second.headers
    assert stranger.get("/").status_code == 401


def test_the_cookie_is_secure_when_the_public_url_is_https(site):
    from cadence.http import create_http_app

    seed(site)
    site.app.settings.public_url = "https://cadence.test"
    try:
        link = site.link(REP).removeprefix("https://cadence.test")
        with TestClient(create_http_app(site.app), base_url="https://cadence.test") as client:
            answer = client.get(link, follow_redirects=False)
        assert answer.status_code == 303
        assert re.search(r"; Secure", answer.headers["set-cookie"]) and "HttpOnly" in answer.headers["set-cookie"]
    finally:
        site.app.settings.public_url = site.url


def test_another_rep_gets_404_and_a_manager_sees_the_team(site):
    seed(site)
    cid = campaign_id(site)
    rob, rita, mona = site.client(OTHER), site.client(REP), site.client(MANAGER)
    assert "Q4 outbound" not in rob.get("/").text
    for path in (f"/campaigns/{cid}", f"/campaigns/{cid}/logs", f"/campaigns/{cid}/figures",
                 f"/campaigns/{cid}/live", "/campaigns/999999", "/campaigns/x"):
        assert rob.get(path).status_code == 404, path
    token = csrf_of(rob.get("/").text)
    refused = rob.post(f"/campaigns/{cid}/prepare", data={"csrf": token})
    assert refused.status_code == 404
    assert campaign_status(site.app, "Q4 outbound")["state"] == "draft"
    assert f'href="/campaigns/{cid}">Q4 outbound</a>' in rita.get("/").text
    assert f'href="/campaigns/{cid}">Q4 outbound</a>' in mona.get("/").text
    assert mona.get(f"/campaigns/{cid}").status_code == 200


def test_a_post_without_its_csrf_token_changes_nothing(site):
    seed(site)
    cid = campaign_id(site)
    rita = site.client(REP)
    page = rita.get(f"/campaigns/{cid}")
    token = csrf_of(page.text)
    for data, headers in (({}, {}), ({"csrf": "0" * 64}, {}), ({}, {"X-CSRF-Token": "nope"})):
        answer = rita.post(f"/campaigns/{cid}/prepare", data=data, headers=headers)
        assert answer.status_code == 403
        assert campaign_status(site.app, "Q4 outbound")["state"] == "draft"
    assert rita.post("/signout", data={}).status_code == 403
    assert rita.get("/").status_code == 200  # still signed in
    ok = rita.post(f"/campaigns/{cid}/prepare", data={"csrf": token})
    assert ok.status_code == 303 and ok.headers["location"] == f"/campaigns/{cid}"


def test_sign_out_ends_the_session(site):
    seed(site)
    rita = site.client(REP)
    token = csrf_of(rita.get("/").text)
    cookie = rita.cookies.get("cadence_session")
    out = rita.post("/signout", data={"csrf": token})
    assert out.status_code == 200 and 'cadence_session=""' in out.headers["set-cookie"]
    replay = site.client()
    replay.cookies.set("cadence_session", cookie)
    assert replay.get("/").status_code == 401


def test_pages_carry_a_strict_content_security_policy_and_no_inline_script(site):
    seed(site)
    rita = site.client(REP)
    for path in ("/", f"/campaigns/{campaign_id(site)}", "/tasks", "/feed"):
        page = rita.get(path)
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        assert "frame-ancestors 'none'" in policy
        assert not re.search(r"<script(?![^>]*\bsrc=)", page.text), path
        assert not re.search(r"\son[a-z]+=", page.text), path  # no inline event handlers
    assert rita.get("/static/htmx-2.0.11.min.js").status_code == 200
