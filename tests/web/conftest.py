"""The web app in a real browser: Debian's chromium driven by Selenium through chromium-driver,
against `cadence serve`'s HTTP app on a real socket, with a real SQLite store and Maildir.

One browser per test module (starting chromium is the slow part); each test gets its own home,
database, server and cookies.
"""
from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import uvicorn

from tests.support.web import Site

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1280,1100", "--disable-extensions", "--no-first-run", "--lang=en-US"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def site(tmp_path, monkeypatch) -> Iterator[Site]:
    from cadence.app import App
    from cadence.http import create_http_app
    from cadence.settings import Settings

    home = tmp_path / "home"
    home.mkdir()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    env = {**os.environ, "CADENCE_HOME": str(home), "CADENCE_DATABASE_URL": f"sqlite:///{home / 'cadence.db'}",
           "CADENCE_PUBLIC_URL": url, "CADENCE_TIMEZONE": "UTC"}
    env.pop("CADENCE_NOW", None)
    for name in ("CADENCE_HOME", "CADENCE_DATABASE_URL", "CADENCE_PUBLIC_URL", "CADENCE_TIMEZONE"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.delenv("CADENCE_NOW", raising=False)
    monkeypatch.chdir(home)
    app = App.from_settings(Settings())
    server = uvicorn.Server(uvicorn.Config(create_http_app(app), log_level="warning", access_log=False,
                                           lifespan="on", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60  # a start on a loaded machine; returns as soon as it is up
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the HTTP server did not start"
        time.sleep(0.01)
    try:
        built = Site(app, url, home, env)
        yield built
    finally:
        for client in built.clients:
            client.close()
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        app.db.dispose()


@pytest.fixture
def shots(tmp_path) -> Path:
    """Where screenshots go: $CADENCE_WEB_SCREENSHOTS when set (to look at them), else the test's tmp."""
    folder = Path(os.environ.get("CADENCE_WEB_SCREENSHOTS") or tmp_path / "shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def page(browser, site):
    """The module's browser, fresh for this test: no cookies; left on a blank page (ends live streams)."""
    browser.delete_all_cookies()
    yield browser
    browser.get("about:blank")
    browser.delete_all_cookies()
