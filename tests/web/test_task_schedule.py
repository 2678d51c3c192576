"""Scheduling a task from the compose page: the edits are saved into the draft at once, and the
worker sends that draft at the chosen time, exactly once."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from selenium.webdriver.common.by import By

from cadence.worker.passes import run_pass
from tests.support.web import REP, click, folder, new_page, tasks_ready, to_of


def test_schedule_a_task_goes_out_once_through_the_worker(page, site):
    maildir = tasks_ready(site)
    page.get(site.link(REP))
    page.get(site.url + "/tasks")
    new_page(page, lambda: page.find_element(By.LINK_TEXT, "bob@prospect.example").click(), at="/tasks/")
    subject = page.find_element(By.ID, "subject")
    subject.clear()
    subject.send_keys("Later: a note for Engines")
    at = (datetime.now(timezone.utc) + timedelta(minutes=10)).replace(second=0, microsecond=0)
    for field, value in (("task-date", at.strftime("%Y-%m-%d")), ("task-time", at.strftime("%H:%M"))):
        label = page.find_element(By.CSS_SELECTOR, f"label[for={field}]")
        assert label.text.split()[0] in ("Date", "Time")
        page.execute_script("arguments[0].value = arguments[1]", page.find_element(By.ID, field), value)
    new_page(page, lambda: click(page, "Schedule"), at="?scheduled=1")
    assert "Scheduled" in page.find_element(By.CSS_SELECTOR, "[role=status]").text

    drafts = {to_of(d): d for d in folder(maildir, ".Drafts")}
    assert str(drafts["bob@prospect.example"]["Subject"]) == "Later: a note for Engines"  # saved at once
    run_pass(site.app)  # before its time: nothing goes out
    assert folder(maildir, ".Sent") == []

    later = (at + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    site.cadence("worker", "--once", "--now", later)
    sent = folder(maildir, ".Sent")
    assert [(to_of(m), str(m["Subject"])) for m in sent] == [("bob@prospect.example", "Later: a note for Engines")]
    assert "bob@prospect.example" not in {to_of(d) for d in folder(maildir, ".Drafts")}
    site.cadence("worker", "--once", "--now", (at + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert len(folder(maildir, ".Sent")) == 1  # exactly once
    page.get(page.current_url.split("?")[0])
    assert "This task is done" in page.find_element(By.TAG_NAME, "main").text
