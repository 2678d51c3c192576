"""Static files over real HTTP: pages name them by the version of their current bytes, so a deploy
that changes cadence.js or the CSS is fetched anew, and those versioned URLs may be cached for good."""
from __future__ import annotations

import re
import shutil

from tests.support.web import REP, campaign_id, seed
from web.assets import FOREVER, StaticAssets, version_of
from web.site import HERE

STATIC = HERE / "static"


def test_every_script_and_stylesheet_of_a_page_carries_the_version_of_its_current_bytes(site):
    seed(site)
    rita = site.client(REP)
    pages = {path: rita.get(path) for path in ("/", f"/campaigns/{campaign_id(site)}", "/tasks", "/feed")}
    pages["signed out"] = site.client().get("/tasks")
    for where, page in pages.items():
        urls = (re.findall(r'<script\b[^>]*\bsrc="([^"]*)"', page.text)
                + re.findall(r'<link\b[^>]*\bhref="([^"]*)"', page.text))
        assert len(urls) == 4, (where, urls)  # pico, cadence.css, htmx, cadence.js
        for url in urls:
            name, version = re.fullmatch(r"/static/([^?]+)\?v=([0-9a-f]+)", url).groups()
            assert version == version_of((STATIC / name).read_bytes()), (where, url)
            answer = rita.get(url)
            assert answer.status_code == 200 and answer.content == (STATIC / name).read_bytes(), url
            assert answer.headers["cache-control"] == FOREVER == "public, max-age=31536000, immutable", url


def test_a_file_asked_without_its_current_version_is_revalidated_and_an_unknown_one_is_404(site):
    client = site.client()
    current = version_of((STATIC / "cadence.js").read_bytes())
    for url in ("/static/cadence.js", "/static/cadence.js?v=0123456789ab", f"/static/cadence.css?v={current}"):
        answer = client.get(url)
        assert answer.status_code == 200 and answer.headers["cache-control"] == "no-cache", url
        assert "etag" in answer.headers, url  # so revalidating costs a 304, not the file
        again = client.get(url, headers={"If-None-Match": answer.headers["etag"]})
        assert again.status_code == 304, url
    for url in ("/static/nope.js", f"/static/nope.js?v={current}", "/static/", "/static/%2e%2e/site.py"):
        answer = client.get(url)
        assert answer.status_code == 404, url
        assert "Traceback" not in answer.text and len(answer.content) < 100, url
        assert "immutable" not in answer.headers.get("cache-control", ""), url


def test_changing_a_files_bytes_changes_its_url(tmp_path):
    copy = tmp_path / "static"
    shutil.copytree(STATIC, copy)
    before = StaticAssets(copy).url("cadence.js")
    assert before == StaticAssets(STATIC).url("cadence.js")  # the same bytes, the same URL
    (copy / "cadence.js").write_bytes((STATIC / "cadence.js").read_bytes() + b"\n// next release\n")
    after = StaticAssets(copy)
    assert after.url("cadence.js") != before
    assert after.url("cadence.js") == f"/static/cadence.js?v={version_of((copy / 'cadence.js').read_bytes())}"
    assert after.url("cadence.css") == StaticAssets(STATIC).url("cadence.css")  # the others keep theirs
    assert version_of(b"a") != version_of(b"b")
