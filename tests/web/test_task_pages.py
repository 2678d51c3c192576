"""/tasks in pages: a rep with more open tasks than one page holds reaches every one of them, overdue
first, with Next and Previous (htmx swaps the list in place; the same links work as plain links
without JavaScript), and the page says which rows of how many it shows."""
from __future__ import annotations

import re

from selenium.webdriver.common.by import By

from tests.support.web import REP, full_screenshot, seed, swapped

PEOPLE = 120  # two full pages of 50 and a third of 20


def many_tasks(site) -> list[str]:
    """Rita's task campaign sent to PEOPLE more contacts; returns their addresses once every task is
    open (with seed's two, PEOPLE + 2)."""
    from cadence.services.campaigns import send_campaign
    from cadence.services.preparing import prepare
    from cadence.services.reads import open_tasks, viewer_by_email
    from cadence.services.imports import import_contacts
    from cadence.services.audience import enroll
    from cadence.worker.passes import run_pass

    seed(site, action="task", name="Q4 outbound")
    people = [f"p{i:03d}@prospect.example" for i in range(PEOPLE)]
    rows = "".join(f"{email},P{i:03d},Person,Firm {i % 7}\n" for i, email in enumerate(people))
    (site.home / "many.csv").write_text("email,first_name,last_name,company\n" + rows, encoding="utf-8")
    import_contacts(site.app, site.home / "many.csv")
    enroll(site.app, "Q4 outbound", mailbox=REP, emails=people)
    prepare(site.app, "Q4 outbound")
    send_campaign(site.app, "Q4 outbound")
    rita = viewer_by_email(site.app, REP)
    for _ in range(20):  # a pass drafts a batch; a few passes draft them all
        run_pass(site.app)
        if open_tasks(site.app, rita.rep_ids, limit=1).total >= PEOPLE + 2:
            break
    assert open_tasks(site.app, rita.rep_ids, limit=1).total == PEOPLE + 2  # and seed's ada and bob
    return people


def shown(page) -> tuple[list[str], list[str]]:
    """(contacts, due times as ISO strings) of the rows on the page, in order."""
    rows = page.find_elements(By.CSS_SELECTOR, "#task-list table.tasks tbody tr")
    contacts = [r.find_element(By.CSS_SELECTOR, "th a").text for r in rows]
    due = [r.find_element(By.TAG_NAME, "time").get_attribute("datetime") for r in rows]
    return contacts, due


def range_text(page) -> str:
    return page.find_element(By.ID, "task-range").text


def test_a_rep_pages_through_every_open_task_overdue_first(page, site, shots):
    people = many_tasks(site)
    total = PEOPLE + 2
    page.get(site.link(REP))
    page.get(site.url + "/tasks")
    assert range_text(page).startswith(f"Showing 1–50 of {total} open tasks")
    assert "Page 1 of 3" in page.find_element(By.CSS_SELECTOR, "nav.pager").text
    assert not page.find_elements(By.LINK_TEXT, "← Previous")  # no page before the first
    full_screenshot(page, shots / "tasks-paged.png")
    seen, due = shown(page)
    assert len(seen) == 50
    page.execute_script("window.cadencePagingMarker = 1;")  # survives only if htmx swaps in place

    for number, first, last, count in ((2, 51, 100, 50), (3, 101, total, total - 100)):
        swapped(page, lambda: page.find_element(By.LINK_TEXT, "Next →").click(), "#task-list")
        assert range_text(page).startswith(f"Showing {first}–{last} of {total}"), range_text(page)
        assert page.current_url.endswith(f"/tasks?page={number}")  # the address names the page (back, reload, share)
        contacts, times = shown(page)
        assert len(contacts) == count and not set(contacts) & set(seen)
        seen += contacts
        due += times
    # Keyboard and screen reader users land on the new range, not back at the top of the document.
    assert page.switch_to.active_element.get_attribute("id") == "task-range"
    assert page.execute_script("return window.cadencePagingMarker;") == 1
    assert not page.find_elements(By.LINK_TEXT, "Next →")  # no page after the last
    full_screenshot(page, shots / "tasks-last-page.png")

    # Every open task was reached once, overdue first: due times never go back across the pages.
    assert sorted(seen) == sorted(people + ["ada@prospect.example", "bob@prospect.example"])
    assert due == sorted(due) and len(set(due)) > 1

    swapped(page, lambda: page.find_element(By.LINK_TEXT, "← Previous").click(), "#task-list")
    assert range_text(page).startswith(f"Showing 51–100 of {total}") and page.current_url.endswith("/tasks?page=2")
    assert shown(page)[0] == seen[50:100]
    swapped(page, page.back, "#task-list")  # the browser's Back follows the pages too
    assert range_text(page).startswith(f"Showing 101–{total} of {total}") and page.current_url.endswith("/tasks?page=3")
    assert shown(page)[0] == seen[100:]


def test_the_pages_work_without_javascript(site):
    many_tasks(site)
    total = PEOPLE + 2
    rita = site.client(REP)
    answer = rita.get("/tasks?page=2")
    second = answer.text
    # The server's own time, as browsers' developer tools and bench.web read it.
    assert re.fullmatch(r"app;dur=\d+\.\d", answer.headers["server-timing"])
    assert f"Showing 51–100 of {total} open tasks" in second
    assert 'href="/tasks?page=1"' in second and 'href="/tasks?page=3"' in second
    assert len(re.findall(r'<a href="/tasks/\d+">', second)) == 50
    # A page past the end shows the last one; a page that is not a number the first.
    assert f"Showing 101–{total} of {total}" in rita.get("/tasks?page=99").text
    assert "Showing 1–50 of" in rita.get("/tasks?page=abc").text
    assert "Showing 1–50 of" in rita.get("/tasks?page=0").text


def test_digits_int_refuses_are_not_a_page_or_an_id(site):
    # str.isdigit() holds for superscripts and other digit characters int() refuses ('²'): such an
    # address must show the first page like any other page that is not a number, not answer 500.
    seed(site)
    rita = site.client(REP)
    for asked in ("%C2%B2", "%E2%91%A0", "-1", "1e3", "%20"):
        answer = rita.get(f"/tasks?page={asked}")
        assert answer.status_code == 200, asked
        assert "No open task." in answer.text, asked
    # The same digits as a task's or a campaign's id: no such page (404), not a 500.
    for path in ("/tasks/%C2%B2", "/tasks/%E2%91%A0", "/campaigns/%C2%B2"):
        assert rita.get(path).status_code == 404, path


def test_pages_past_the_end_are_the_last_page_not_one_more_copy_each(site):
    """Every number past the end shows the last page: the server keeps that one page, not a copy
    of it per number asked (a signed-in person asking ?page=2 … ?page=999999 would otherwise fill
    the shared cache with up to 10,000 copies of 50 tasks each)."""
    from cadence.services.reads import viewer_by_email
    from web.reading import Reading

    seed(site)
    rita = viewer_by_email(site.app, REP)
    reading = Reading(site.app)
    past = reading.tasks(rita, 7)  # nothing cached yet: computed, kept as the page it is (the first)
    assert (past.offset, past.total, past.tasks) == (0, 0, [])
    assert reading.tasks(rita, 1) is past
    assert all(reading.tasks(rita, n) is past for n in (2, 3, 99, 999_999))
