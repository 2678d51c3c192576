"""The web app in a real browser: Debian's chromium driven by Selenium through chromium-driver,
against `cadence serve`'s HTTP app on a real socket, with a real SQLite store and Maildir.

One browser per test module (starting chromium is the slow part); each test gets its own home,
database, server and cookies.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import httpx
import pytest
import uvicorn

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
REP, OTHER, MANAGER = "rita@acme.example", "rob@acme.example", "mona@acme.example"


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


@dataclass
class Site:
    """A running server and the store behind it."""

    app: object
    url: str
    home: Path
    env: dict
    clients: list = field(default_factory=list)

    def cadence(self, *args: str) -> str:
        """Run the real `cadence` command line in a subprocess against this site's store."""
        exe = Path(sys.executable).parent / "cadence"
        done = subprocess.run([str(exe), *args], env=self.env, cwd=self.home, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, f"cadence {' '.join(args)} failed: {done.stderr}{done.stdout}"
        return done.stdout

    def link(self, email: str) -> str:
        from cadence.services.signin import create_link

        return create_link(self.app, email)

    def client(self, email: str | None = None) -> httpx.Client:
        """An HTTP client, signed in as `email` when given (through a one-time link)."""
        client = httpx.Client(base_url=self.url, follow_redirects=False, timeout=30)
        self.clients.append(client)
        if email:
            answer = client.get(self.link(email).removeprefix(self.url))
            assert answer.status_code == 303 and answer.headers["location"] == "/"
        return client


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
    deadline = time.monotonic() + 10
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


CAMPAIGN = """\
name: {name}
timezone: UTC
exclusions:
  do_not_contact_domains: [{blocked}]
steps:
  - day: 1
    action: {action}
    send: at_time
    time: "00:00"
    subject: "Hello {{{{ first_name }}}}"
    body: "<p>Hi {{{{ first_name }}}}, a short note from {{{{ sender_name }}}}.</p>"
  - day: 3
    action: auto
    send: same_as_previous
    thread: true
    body: "<p>Bumping this, {{{{ first_name }}}}.</p>"
"""
CONTACTS = """\
email,first_name,last_name,company
ada@prospect.example,Ada,Lovelace,Analytical
bob@prospect.example,Bob,Babbage,Engines
cy@competitor.example,Cy,Rival,Competitor
"""


def seed(site: Site, *, name: str = "Q4 outbound", action: str = "auto", blocked: str = "competitor.example",
         rep: str = REP) -> Path:
    """Reps Rita (rep), Rob (another rep), Mona (Rita's manager); Rita's Maildir mailbox; a campaign
    with everyone enrolled from Rita's mailbox. Returns the Maildir."""
    from cadence.services.audience import enroll
    from cadence.services.directory import add_mailbox, add_rep
    from cadence.services.imports import import_campaign, import_contacts

    app = site.app
    add_rep(app, email=MANAGER, name="Mona Manager", role="manager")
    add_rep(app, email=REP, name="Rita Rep", manager=MANAGER)
    add_rep(app, email=OTHER, name="Rob Other")
    for address in (REP, OTHER):
        add_mailbox(app, provider="maildir", address=address, owner=address, path=str(site.home / "maildir" / address))
    maildir = site.home / "maildir" / rep
    (site.home / "campaign.yml").write_text(CAMPAIGN.format(name=name, action=action, blocked=blocked),
                                            encoding="utf-8")
    (site.home / "contacts.csv").write_text(CONTACTS, encoding="utf-8")
    import_campaign(app, site.home / "campaign.yml")
    import_contacts(app, site.home / "contacts.csv")
    enroll(app, name, mailbox=rep, everyone=True)
    return maildir


def campaign_id(site: Site, name: str = "Q4 outbound") -> int:
    from sqlalchemy import select

    from store.models import Campaign

    with site.app.db.session() as session:
        return session.scalar(select(Campaign.id).where(Campaign.name == name))
