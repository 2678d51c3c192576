"""The web app's test site and browser helpers (tests/web builds its fixtures on them): a running
server and its store (`Site`), the seeded reps and campaign, and Selenium steps that survive live
updates replacing the page's elements and that read a page only once it is the new one (`new_page`,
`swapped`)."""
from __future__ import annotations

import mailbox as stdlib_mailbox
import subprocess
import sys
import time
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from pathlib import Path

import httpx
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.ui import WebDriverWait

REP, OTHER, MANAGER = "rita@acme.example", "rob@acme.example", "mona@acme.example"


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


def steady(read):
    """Call `read()` again when a live update replaced the elements it was reading."""
    for _ in range(50):
        try:
            return read()
        except StaleElementReferenceException:
            time.sleep(0.05)
    return read()


def button(driver, name: str):
    """The one visible button with this accessible name (its text)."""
    found = steady(lambda: [b for b in driver.find_elements(By.TAG_NAME, "button")
                            if b.text.strip() == name and b.is_displayed()])
    assert len(found) == 1, f"expected one button {name!r}, found {len(found)}"
    return found[0]


def click(driver, name: str) -> None:
    """Click the button with this name, again if a live update replaced it just then."""
    steady(lambda: button(driver, name).click())


def buttons(driver) -> set[str]:
    return steady(lambda: {b.text.strip() for b in driver.find_elements(By.TAG_NAME, "button")
                           if b.is_displayed() and b.is_enabled()})


def wait_for(driver, condition, timeout: float = 60, message: str = ""):
    """Wait until `condition(driver)` is truthy (returns as soon as it is; the bound is for a loaded
    machine); elements replaced meanwhile (a live update) are retried."""
    return WebDriverWait(driver, timeout, poll_frequency=0.1,
                         ignored_exceptions=(StaleElementReferenceException, NoSuchElementException, ValueError)
                         ).until(lambda d: condition(d), message)


def new_page(driver, act, *, at: str, timeout: float = 60) -> None:
    """Do `act` (a click that submits a form or follows a link), and return once another document has
    replaced this one and is fully loaded, at an address containing `at`.

    A click returns before the browser has even started the request: until the old <html> goes stale,
    WebDriver reads the old page, whose alert, rows or <main> have the same selectors as the new one's.
    The address alone proves too little: it changes when the new document is committed, before that
    document is parsed, and an absence read from a half-parsed page proves nothing."""
    old = driver.find_element(By.TAG_NAME, "html")
    act()
    wait_for(driver, lambda d: staleness_of(old)(d) and d.execute_script("return document.readyState") == "complete",
             timeout, message=f"no new page was loaded (waiting for one at {at!r})")
    assert at in driver.current_url, f"the new page is at {driver.current_url}, not at {at!r}"


IN_FLIGHT = ".htmx-request, .htmx-swapping, .htmx-settling"


def swapped(driver, act, selector: str, timeout: float = 60) -> None:
    """Do `act`, and return once htmx (or the history restore of the browser's Back) has replaced the
    element at `selector` and has nothing left in flight: no request, swap or settle (hx-push-url's
    address and the focus are set by then, whichever of them htmx does first)."""
    old = driver.find_element(By.CSS_SELECTOR, selector)
    act()
    wait_for(driver, lambda d: staleness_of(old)(d) and d.find_elements(By.CSS_SELECTOR, selector)
             and not d.find_elements(By.CSS_SELECTOR, IN_FLIGHT), timeout,
             message=f"{selector} was not replaced")


def folder(maildir, name: str) -> list:
    path = maildir / name
    if not path.exists():
        return []
    box = stdlib_mailbox.Maildir(path, factory=None, create=False)
    parser = BytesParser(policy=policy.default)
    return [parser.parsebytes(box.get_bytes(key)) for key in box.keys()]


def to_of(message) -> str:
    return message["To"].addresses[0].addr_spec


def tasks_ready(site):
    maildir = seed(site, action="task")
    from cadence.services.campaigns import send_campaign
    from cadence.services.preparing import prepare
    from cadence.worker.passes import run_pass

    prepare(site.app, "Q4 outbound")
    send_campaign(site.app, "Q4 outbound")
    run_pass(site.app)  # the task step's drafts go into Rita's mailbox
    drafts = folder(maildir, ".Drafts")
    assert sorted(to_of(d) for d in drafts) == ["ada@prospect.example", "bob@prospect.example"]
    return maildir


def full_screenshot(driver, path: Path) -> Path:
    """A PNG of the whole page, below the fold too (Chrome DevTools' captureBeyondViewport)."""
    import base64

    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    path.write_bytes(base64.b64decode(shot["data"]))
    return path
