"""Seed 004's command centre in a browser: /tasks lists the rep's open tasks; the compose page is
pre-filled from the draft; edits are saved into the draft in the rep's Maildir before it is sent;
Sent then holds exactly one email with the edited subject and Drafts none; Skip; the live feed;
another rep's task answers 404."""
from __future__ import annotations

from selenium.webdriver.common.by import By

from tests.support.web import OTHER, REP, click, folder, new_page, tasks_ready, to_of


def test_compose_edit_and_send_a_task(page, site, shots):
    maildir = tasks_ready(site)
    page.get(site.link(REP))
    new_page(page, lambda: page.find_element(By.LINK_TEXT, "Tasks").click(), at="/tasks")
    assert page.current_url.endswith("/tasks")
    rows = page.find_elements(By.CSS_SELECTOR, "table.tasks tbody tr")
    assert len(rows) == 2 and "Analytical" in page.page_source and "Q4 outbound" in rows[0].text
    page.save_screenshot(str(shots / "tasks.png"))

    new_page(page, lambda: page.find_element(By.LINK_TEXT, "ada@prospect.example").click(), at="/tasks/")
    compose_url = page.current_url
    to = page.find_element(By.XPATH, "//label[normalize-space()='To']/following::input[1]")
    subject = page.find_element(By.ID, page.find_element(By.XPATH, "//label[normalize-space()='Subject']")
                                .get_attribute("for"))
    body = page.find_element(By.ID, page.find_element(By.XPATH, "//label[normalize-space()='Body']")
                             .get_attribute("for"))
    assert to.get_attribute("value") == "ada@prospect.example"
    assert subject.get_attribute("value") == "Hello Ada"
    assert "Hi Ada, a short note from Rita Rep." in body.get_attribute("value")
    assert page.find_element(By.LINK_TEXT, "Open draft").get_attribute("href").startswith("file://")
    assert {"Send now", "Skip"} <= {b.text for b in page.find_elements(By.TAG_NAME, "button")}
    subject.clear()
    subject.send_keys("Edited: an idea for Analytical")
    body.send_keys("\n\nP.S. Written in the web app.")
    page.save_screenshot(str(shots / "compose.png"))
    new_page(page, lambda: click(page, "Send now"), at="/tasks?done=sent")
    main = page.find_element(By.TAG_NAME, "main").text
    assert "Task sent." in main and "bob@prospect.example" in main and "ada@prospect.example" not in main, main

    sent = folder(maildir, ".Sent")
    assert len(sent) == 1
    assert str(sent[0]["Subject"]) == "Edited: an idea for Analytical" and to_of(sent[0]) == "ada@prospect.example"
    assert "Written in the web app." in sent[0].get_body(("plain",)).get_content()
    assert [to_of(d) for d in folder(maildir, ".Drafts")] == ["bob@prospect.example"]

    # A sent task is done: its page says so and offers nothing to send.
    page.get(compose_url)
    assert "This task is done" in page.find_element(By.TAG_NAME, "main").text
    assert "Send now" not in {b.text for b in page.find_elements(By.TAG_NAME, "button")}

    # Skip the other one: its draft leaves the mailbox.
    page.get(site.url + "/tasks")
    new_page(page, lambda: page.find_element(By.LINK_TEXT, "bob@prospect.example").click(), at="/tasks/")
    new_page(page, lambda: click(page, "Skip"), at="/tasks?done=skipped")
    assert folder(maildir, ".Drafts") == [] and len(folder(maildir, ".Sent")) == 1

    # The live feed shows the task changes.
    page.get(site.url + "/feed")
    items = [li.text for li in page.find_elements(By.CSS_SELECTOR, "#feed li")]
    assert any("task done" in i for i in items) and any("task skipped" in i for i in items)


def test_another_reps_task_answers_404(site):
    tasks_ready(site)
    rita = site.client(REP)
    rows = rita.get("/tasks").text
    task_path = rows.split('<a href="/tasks/')[1].split('"')[0]
    rob = site.client(OTHER)
    assert rob.get(f"/tasks/{task_path}").status_code == 404
    assert "prospect.example" not in rob.get("/tasks").text
    token = rob.get("/tasks").text.split('name="csrf" value="')[1].split('"')[0]
    assert rob.post(f"/tasks/{task_path}/send", data={"csrf": token}).status_code == 404
    assert rita.get(f"/tasks/{task_path}").status_code == 200
    assert "Hello" in rita.get(f"/tasks/{task_path}").text
