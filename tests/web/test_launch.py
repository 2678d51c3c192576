"""In a browser: uploads on `/` refused with the CLI's sentence, the dashboard's launch form,
"Why is this message here" from the logs and from a task, the per-day chart; screenshots of the
dashboard and the command centre (full page) for a person to look at."""
from __future__ import annotations

import re

import httpx
from selenium.webdriver.common.by import By
from sqlalchemy import func, select

from cadence.services.directory import add_rep
from store.models import Contact, Enrollment
from tests.support.web import (REP, campaign_id, click, folder, full_screenshot, new_page, seed, steady,
                               tasks_ready, wait_for)

ADMIN = "ana@acme.example"


def alert_text(driver) -> str:
    return driver.find_element(By.CSS_SELECTOR, "[role=alert]").text.strip()


def contacts(site) -> int:
    with site.app.db.session() as session:
        return session.scalar(select(func.count()).select_from(Contact))


def test_uploads_with_an_error_then_the_launch_form_and_the_explain_link(page, site, shots, tmp_path):
    seed(site)
    add_rep(site.app, email=ADMIN, name="Ana Admin", role="admin")
    page.get(site.link(ADMIN))
    wait_for(page, lambda d: d.current_url == site.url + "/")

    bad = tmp_path / "spring.yml"
    bad.write_text("name: Spring\nsteps:\n  - day: 1\n    action: auto\n    send: at_time\n    time: '25:00'\n"
                   "    subject: Hi\n    body: Hello\n", encoding="utf-8")
    page.find_element(By.ID, "upload-campaign").send_keys(str(bad))
    new_page(page, lambda: click(page, "Upload campaign"), at="/upload/campaign")
    sentence = alert_text(page)
    assert sentence.startswith("spring.yml") and "line 6" in sentence and "time" in sentence, sentence
    assert "Spring" not in [a.text for a in page.find_elements(By.CSS_SELECTOR, "table a")]

    before = contacts(site)
    leads = tmp_path / "leads.csv"
    leads.write_text("email,company\nd1@acme-corp.example,Acme Corp\nbroken-address,Acme Corp\n", encoding="utf-8")
    page.find_element(By.ID, "upload-contacts").send_keys(str(leads))
    new_page(page, lambda: click(page, "Upload contacts"), at="/upload/contacts")
    text = alert_text(page)
    assert "leads.csv, line 3: email:" in text and "nothing was written" in text, text
    assert contacts(site) == before
    full_screenshot(page, shots / "home-upload-error.png")

    leads.write_text("email,company\nd1@acme-corp.example,Acme Corp\nd2@acme-corp.example,Acme Corp\n",
                     encoding="utf-8")
    page.find_element(By.ID, "upload-contacts").send_keys(str(leads))
    new_page(page, lambda: click(page, "Upload contacts"), at="/?imported=2")
    done = page.find_element(By.ID, "upload-done").text
    assert "imported 2" in done and contacts(site) == before + 2

    # The launch form: contacts at one company, from Rita's mailbox.
    cid = campaign_id(site)
    page.get(f"{site.url}/campaigns/{cid}")
    page.find_element(By.CSS_SELECTOR, "input[name=who][value=filter]").click()
    page.find_element(By.ID, "launch-company").send_keys("Acme Corp")
    page.find_element(By.CSS_SELECTOR, f"#launch-mailbox option[value='{REP}']").click()
    new_page(page, lambda: click(page, "Enroll"), at=f"/campaigns/{cid}?enrolled=2")
    notice = page.find_element(By.CSS_SELECTOR, "[data-enrolled]").text
    assert notice.startswith("Enrolled 2"), notice
    with site.app.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Enrollment)) == 5

    # Why is this message here: from a contact of the logs, after a preparation.
    from cadence.services.preparing import prepare

    prepare(site.app, "Q4 outbound")
    page.get(f"{site.url}/campaigns/{cid}/logs")
    new_page(page, lambda: steady(lambda: page.find_element(By.LINK_TEXT, "cy@competitor.example").click()),
             at=f"/campaigns/{cid}/explain?contact=cy%40competitor.example")
    assert page.find_element(By.TAG_NAME, "h1").text == "Why is this message here?"
    steps = page.find_elements(By.CSS_SELECTOR, "ol.explain > li")
    assert steps and "excluded" in page.find_element(By.ID, "explain-person").text + steps[0].text

    # The dashboard's own form, one click after typing the address.
    page.get(f"{site.url}/campaigns/{cid}")
    page.find_element(By.ID, "why-contact").send_keys("ada@prospect.example")
    new_page(page, lambda: click(page, "Explain"), at=f"/campaigns/{cid}/explain?contact=ada%40prospect.example")
    assert page.find_elements(By.CSS_SELECTOR, "ol.explain > li[data-step='1']")

    # Sent, and one email opened (its tracking pixel fetched): the chart draws both.
    from cadence.services.campaigns import send_campaign
    from cadence.worker.passes import run_pass

    send_campaign(site.app, "Q4 outbound")
    run_pass(site.app)
    sent = folder(site.home / "maildir" / REP, ".Sent")
    pixels = [u for m in sent for u in re.findall(r'src="(http[^"]+/t/[^"]+)"', m.get_body(("html",)).get_content())]
    assert pixels and httpx.get(pixels[0]).status_code == 200
    page.get(f"{site.url}/campaigns/{cid}")
    bars = wait_for(page, lambda d: d.find_elements(By.CSS_SELECTOR, "svg.chart rect[data-series=sent]"))
    assert sum(int(b.get_attribute("data-value")) for b in bars) == len(sent) > 0

    def opens_charted(driver) -> bool:  # the tracking endpoint stores hits in the background: look again
        driver.get(f"{site.url}/campaigns/{cid}")
        opened = driver.find_elements(By.CSS_SELECTOR, "svg.chart rect[data-series=opens]")
        return sum(int(b.get_attribute("data-value")) for b in opened) == 1

    wait_for(page, opens_charted, timeout=60, message="the open was not charted")
    full_screenshot(page, shots / "dashboard-full.png")


def test_a_task_explains_itself_and_the_screens_look_right(page, site, shots):
    tasks_ready(site)
    page.get(site.link(REP))
    wait_for(page, lambda d: d.current_url == site.url + "/")
    page.get(f"{site.url}/tasks")
    full_screenshot(page, shots / "command-centre.png")
    new_page(page, lambda: page.find_element(By.LINK_TEXT, "ada@prospect.example").click(), at="/tasks/")
    full_screenshot(page, shots / "compose.png")
    new_page(page, lambda: page.find_element(By.ID, "why-link").click(), at="/explain")
    assert page.current_url.endswith("/explain")
    assert page.find_element(By.TAG_NAME, "h1").text == "Why is this message here?"
    full_screenshot(page, shots / "explain-task.png")
    first = page.find_element(By.CSS_SELECTOR, "ol.explain > li[data-step='1']")
    assert "task" in first.text.lower() or "draft" in first.text.lower(), first.text
