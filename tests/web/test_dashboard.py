"""Seed 000 in a browser: prepare (confirmed) → KPIs → logs → send (confirmed) → delivered count
rising after a worker pass without a reload → pause → resume → stop (confirmed, final); and a
failed preparation that offers no Send."""
from __future__ import annotations

import mailbox as stdlib_mailbox

from selenium.webdriver.common.by import By

from tests.support.web import REP, buttons, campaign_id, click, new_page, seed, steady, swapped, wait_for


def state_of(driver) -> str:
    return steady(lambda: driver.find_element(By.CSS_SELECTOR, "[data-state]").text.strip())


def settled(driver, state: str) -> bool:
    """The page shows `state`, and its buttons are those of that state (a live update has landed)."""
    controls = driver.find_element(By.ID, "controls")
    return state_of(driver) == state and controls.get_attribute("data-for-state") == state


def kpi(driver, name: str) -> int:
    return int(steady(lambda: driver.find_element(By.CSS_SELECTOR, f'[data-kpi="{name}"]').text.split()[0]))


def sent_count(maildir) -> int:
    return len(stdlib_mailbox.Maildir(maildir / ".Sent", factory=None, create=False).keys()) \
        if (maildir / ".Sent").exists() else 0


def test_seed_000_flow_in_a_browser(page, site, shots):
    maildir = seed(site)
    cid = campaign_id(site)
    page.get(site.link(REP))
    assert page.current_url == site.url + "/"
    new_page(page, lambda: page.find_element(By.LINK_TEXT, "Q4 outbound").click(), at=f"/campaigns/{cid}")
    assert state_of(page) == "draft"
    assert {"Prepare", "Logs"} <= buttons(page) and not {"Send", "Schedule", "Pause", "Resume"} & buttons(page)

    # Prepare asks for an in-page confirmation.
    click(page, "Prepare")
    confirm = wait_for(page, lambda d: [b for b in d.find_elements(By.TAG_NAME, "button") if b.text == "Confirm"])
    assert "Nothing is sent" in page.find_element(By.CSS_SELECTOR, ".confirm").text
    confirm[0].click()
    wait_for(page, lambda d: settled(d, "prepared"), message="the preparation did not finish")
    assert (kpi(page, "targeted"), kpi(page, "to_deliver"), kpi(page, "to_exclude")) == (3, 2, 1)
    causes = steady(lambda: page.find_element(By.CSS_SELECTOR, '[data-cause="do_not_contact_domain"]').text)
    assert causes.endswith(": 1")
    assert {"Prepare", "Send", "Schedule", "Logs"} <= buttons(page)
    assert page.find_element(By.CSS_SELECTOR, "input[type=date]").get_attribute("id") == "schedule-date"
    assert page.find_element(By.CSS_SELECTOR, "label[for=schedule-time]")
    page.save_screenshot(str(shots / "dashboard-prepared.png"))

    # Logs: the excluded contact by address, the error count after the last entry, filters.
    new_page(page, lambda: click(page, "Logs"), at=f"/campaigns/{cid}/logs")
    rows = page.find_elements(By.CSS_SELECTOR, "table.log tbody tr")
    assert any("cy@competitor.example" in r.text and "do_not_contact_domain" in r.text for r in rows)
    summary = page.find_element(By.ID, "log-summary")
    assert summary.text.endswith("0 errors")
    assert summary.location["y"] > rows[-1].location["y"]
    page.find_element(By.CSS_SELECTOR, "#log-cause option[value=do_not_contact_domain]").click()
    new_page(page, lambda: click(page, "Filter"), at="cause=do_not_contact_domain")
    rows = page.find_elements(By.CSS_SELECTOR, "table.log tbody tr")
    assert len(rows) == 1 and "cy@competitor.example" in rows[0].text
    page.find_element(By.CSS_SELECTOR, "#log-level option[value=error]").click()
    page.find_element(By.CSS_SELECTOR, "#log-cause option[value='']").click()
    new_page(page, lambda: click(page, "Filter"), at="level=error&cause=")
    assert page.find_elements(By.CSS_SELECTOR, "table.log tbody tr") == []
    assert page.find_element(By.ID, "log-summary").text == "0 entries, 0 errors"

    # Send, confirmed; the worker's pass shows up without a reload.
    page.get(f"{site.url}/campaigns/{cid}")
    click(page, "Send")
    wait_for(page, lambda d: any(b.text == "Confirm" for b in d.find_elements(By.TAG_NAME, "button")))
    click(page, "Confirm")
    wait_for(page, lambda d: settled(d, "sending"))
    assert kpi(page, "delivered") == 0
    page.execute_script("document.body.setAttribute('data-marker', 'no-reload')")
    site.cadence("worker", "--once")
    assert sent_count(maildir) == 2
    wait_for(page, lambda d: kpi(d, "delivered") == 2, timeout=60, message="the delivered count did not rise")
    assert page.find_element(By.TAG_NAME, "body").get_attribute("data-marker") == "no-reload"
    assert steady(lambda: page.find_element(By.CSS_SELECTOR, '[data-kpi="delivered"]').text).startswith("2 (100.0%")
    for name in ("opens", "clicks", "replies", "bounces", "unsubscribes"):
        assert kpi(page, name) == 0
    page.save_screenshot(str(shots / "dashboard-sending.png"))

    # Pause and resume need no confirmation.
    click(page, "Pause")
    wait_for(page, lambda d: settled(d, "paused"))
    assert "Resume" in buttons(page) and "Pause" not in buttons(page)
    click(page, "Resume")
    wait_for(page, lambda d: settled(d, "sending"))

    # Stop, confirmed, is final: nothing that would send again is offered.
    click(page, "Stop")
    wait_for(page, lambda d: any(b.text == "Confirm" for b in d.find_elements(By.TAG_NAME, "button")))
    click(page, "Confirm")
    wait_for(page, lambda d: settled(d, "stopped"))
    assert not {"Send", "Schedule", "Pause", "Resume", "Prepare", "Stop"} & buttons(page)
    assert "Logs" in buttons(page)


def test_a_failed_preparation_shows_failed_and_no_send(page, site, shots):
    seed(site, blocked="prospect.example, competitor.example")
    cid = campaign_id(site)
    page.get(site.link(REP))
    page.get(f"{site.url}/campaigns/{cid}")
    click(page, "Prepare")
    wait_for(page, lambda d: any(b.text == "Confirm" for b in d.find_elements(By.TAG_NAME, "button")))
    click(page, "Confirm")
    wait_for(page, lambda d: settled(d, "failed"))
    assert not {"Send", "Schedule"} & buttons(page)
    assert "Prepare" in buttons(page)
    assert kpi(page, "to_deliver") == 0 and kpi(page, "to_exclude") == 3
    page.save_screenshot(str(shots / "dashboard-failed.png"))
    new_page(page, lambda: click(page, "Logs"), at=f"/campaigns/{cid}/logs")
    summary = page.find_element(By.ID, "log-summary").text
    assert summary.endswith("1 error")
    errors = [r.text for r in page.find_elements(By.CSS_SELECTOR, "tr[data-level=error]")]
    assert any("no contact to deliver" in e for e in errors)


def test_the_dashboard_follows_a_change_made_elsewhere_right_after_its_own(page, site):
    """A page swapped in by an action may be older than what the live stream already sent (a
    preparation finishing while the page was rendered), or the campaign may change again elsewhere
    before the stream looks: the stream only sends what changed since its last message, so the page
    must not keep the swapped-in figures and controls for good."""
    from cadence.services.campaigns import resume_campaign, send_campaign
    from cadence.services.preparing import prepare

    seed(site)
    cid = campaign_id(site)
    prepare(site.app, "Q4 outbound")
    send_campaign(site.app, "Q4 outbound")
    page.get(site.link(REP))
    page.get(f"{site.url}/campaigns/{cid}")
    wait_for(page, lambda d: settled(d, "sending"))
    swapped(page, lambda: click(page, "Pause"), "#dashboard")
    assert settled(page, "paused")
    resume_campaign(site.app, "Q4 outbound")  # by someone else, at once
    wait_for(page, lambda d: settled(d, "sending"), message="the page kept showing the paused campaign")
    assert "Pause" in buttons(page) and "Resume" not in buttons(page)
