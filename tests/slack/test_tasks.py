"""Task buttons, the edit modal and App Home, over HTTP, with the drafts in a real Maildir."""
from __future__ import annotations

import json
import logging
import time

from cadence.services.tasks import list_tasks
from tests.support.slack import folder, recipient, text_of


def tasks_by_contact(app, states=None) -> dict:
    from core.vocabulary import TaskState

    found = list_tasks(app, states=states or tuple(TaskState))
    return {t.contact.split("@")[0]: t for t in found}


def test_send_now_sends_the_draft_and_redraws_the_list(served, app, world, fake_slack):
    nora = tasks_by_contact(app)["ny"]
    response, hook = served.action("URITA", "task_send", str(nora.id))
    assert response.status_code == 200
    redrawn = served.hook(hook)
    assert redrawn["replace_original"] is True
    body = text_of(redrawn)
    assert "Sent to ny@prospect.example" in body and "2 open tasks" in body and "*Nora*" not in body
    sent = [m for m in folder(world.maildir("rita"), ".Sent") if m["Subject"] == "Idea for NYCo"]
    assert len(sent) == 1 and recipient(sent[0]) == "ny@prospect.example"
    assert tasks_by_contact(app)["ny"].state == "done"
    # her App Home follows
    assert fake_slack.wait_for(lambda: [c for c in fake_slack.calls_to("views.publish") if c["user_id"] == "URITA"])


def test_skip_removes_the_draft_and_moves_on(served, app, world):
    taro = tasks_by_contact(app)["tyo"]
    drafts_before = len(folder(world.maildir("rita"), ".Drafts"))
    response, hook = served.action("URITA", "task_skip", str(taro.id), surface="single")
    assert response.status_code == 200
    closed = served.hook(hook)
    assert closed["replace_original"] is True and "Skipped tyo@prospect.example" in closed["text"]
    assert tasks_by_contact(app)["tyo"].state == "skipped"
    assert len(folder(world.maildir("rita"), ".Drafts")) == drafts_before - 1


def test_acting_on_a_task_twice_says_it_is_closed(served, app):
    leo = tasks_by_contact(app)["ldn"]
    served.hook(served.action("URITA", "task_skip", str(leo.id))[1])
    _, hook = served.action("URITA", "task_send", str(leo.id), surface="single")
    answer = served.hook(hook)
    assert answer["response_type"] == "ephemeral" and "is skipped, not open" in answer["text"]


def test_a_task_of_someone_else_is_refused_and_logged(served, app, world, caplog):
    ana = tasks_by_contact(app)["ana"]  # Otto's task
    with caplog.at_level(logging.WARNING, logger="cadence.slack.access"):
        for action in ("task_send", "task_skip", "task_edit"):
            _, hook = served.action("URITA", action, str(ana.id))
            answer = served.hook(hook)
            assert "You may not act on this task" in answer["text"] and answer["replace_original"] is False
        for forged in ("abc", "-1", "999999", ""):
            _, hook = served.action("URITA", "task_send", forged)
            assert "You may not act on this task" in served.hook(hook)["text"]
    refusals = [r for r in caplog.records if "refused" in r.message and "rita@acme.example" in r.message]
    assert len(refusals) == 7
    assert tasks_by_contact(app)["ana"].state == "open"
    assert not [m for m in folder(world.maildir("otto"), ".Sent") if m["Subject"] == "Idea for AnaCorp"]
    assert served.fake.calls_to("views.open") == []


def test_a_manager_acts_on_the_teams_tasks_and_the_reps_home_refreshes(served, app, fake_slack):
    leo = tasks_by_contact(app)["ldn"]
    _, hook = served.action("UMIA", "task_skip", str(leo.id))
    assert "Skipped ldn@prospect.example" in text_of(served.hook(hook))
    assert tasks_by_contact(app)["ldn"].state == "skipped"
    homes = lambda: {c["user_id"] for c in fake_slack.calls_to("views.publish")}  # noqa: E731
    assert fake_slack.wait_for(lambda: homes() >= {"UMIA", "URITA"})


def test_edit_opens_a_modal_validates_and_saves_into_the_draft(served, app, world, fake_slack):
    nora = tasks_by_contact(app)["ny"]
    response, _ = served.action("URITA", "task_edit", str(nora.id))
    assert response.status_code == 200
    opened = fake_slack.wait_for(lambda: fake_slack.calls_to("views.open"))
    modal = opened[0]["view"]
    assert modal["callback_id"] == "task_edit_modal" and json.loads(modal["private_metadata"]) == {"task": nora.id}
    inputs = {b["block_id"]: b["element"]["initial_value"] for b in modal["blocks"] if b["type"] == "input"}
    assert inputs["subject"] == "Idea for NYCo"
    assert inputs["body"].startswith("Hi Nora, an idea for NYCo.") and "Would Tuesday work?" in inputs["body"]

    refused = served.submit_edit("URITA", nora.id, "   ", "")
    assert refused.status_code == 200
    assert refused.json() == {"response_action": "errors", "errors": {
        "subject": "The subject must not be empty.", "body": "The body must not be empty."}}
    injected = served.submit_edit("URITA", nora.id, "Hi\r\nBcc: everyone@example.org", "Body")
    assert set(injected.json()["errors"]) == {"subject"}
    too_long = served.submit_edit("URITA", nora.id, "x" * 251, "Body")
    assert "longer than 250" in too_long.json()["errors"]["subject"]

    saved = served.submit_edit("URITA", nora.id, "A better idea for NYCo", "Hi Nora,\n\nhere is a better idea.")
    assert saved.status_code == 200 and saved.text == ""  # the modal closes
    drafts = [m for m in folder(world.maildir("rita"), ".Drafts") if recipient(m) == "ny@prospect.example"]
    assert [m["Subject"] for m in drafts] == ["A better idea for NYCo"]
    assert "here is a better idea." in drafts[0].get_body(("plain",)).get_content()
    assert tasks_by_contact(app)["ny"].subject == "A better idea for NYCo"

    _, hook = served.action("URITA", "task_send", str(nora.id))
    served.hook(hook)
    sent = [m for m in folder(world.maildir("rita"), ".Sent") if recipient(m) == "ny@prospect.example"]
    assert "A better idea for NYCo" in [m["Subject"] for m in sent]


def test_editing_someone_elses_task_is_refused_inside_the_modal(served, app, world):
    ana = tasks_by_contact(app)["ana"]
    refused = served.submit_edit("URITA", ana.id, "Taken over", "Mine now")
    assert refused.json() == {"response_action": "errors", "errors": {"subject": "You may not edit this task."}}
    forged = served.submit_edit("URITA", "not-a-number", "x", "y")
    assert forged.json()["response_action"] == "errors"
    drafts = [m for m in folder(world.maildir("otto"), ".Drafts") if recipient(m) == "ana@other.example"]
    assert [m["Subject"] for m in drafts] == ["Idea for AnaCorp"]


def test_app_home_shows_the_queue_and_the_campaigns(served, fake_slack):
    event = {"type": "app_home_opened", "user": "URITA", "channel": "DURITA", "tab": "home",
             "event_ts": f"{time.time():.6f}"}
    assert served.event(event).status_code == 200
    published = fake_slack.wait_for(lambda: fake_slack.calls_to("views.publish"))
    assert published[0]["user_id"] == "URITA"
    view = published[0]["view"]
    assert view["type"] == "home"
    body = text_of(view)
    assert "Your tasks* (3 open)" in body and "*Nora*" in body and "Idea for LondonCo" in body
    assert "*Flow*" in body and "Otto Outreach" not in body and "Delivered" in body

    fake_slack.clear()
    served.event({**event, "tab": "messages"})
    time.sleep(0.2)
    assert fake_slack.calls_to("views.publish") == []

    served.event({**event, "user": "USTRANGER"})
    stranger = fake_slack.wait_for(lambda: fake_slack.calls_to("views.publish"))
    assert stranger[0]["user_id"] == "USTRANGER" and "don't know your Slack account" in text_of(stranger[0]["view"])


def test_a_button_on_app_home_republishes_it(served, app, fake_slack):
    taro = tasks_by_contact(app)["tyo"]
    response, hook = served.action("URITA", "task_skip", str(taro.id), surface="home", in_view=True)
    assert response.status_code == 200 and hook is None
    published = fake_slack.wait_for(lambda: fake_slack.calls_to("views.publish"))
    body = text_of(published[-1]["view"])
    assert "Skipped tyo@prospect.example" in body and "(2 open)" in body and "*Taro*" not in body


def test_a_stale_task_says_why_and_its_draft_has_left_drafts(served, app, world):
    from cadence.services.unenroll import unenroll

    nora = tasks_by_contact(app)["ny"]
    drafts_before = len(folder(world.maildir("rita"), ".Drafts"))
    report = unenroll(app, nora.campaign, emails=[nora.contact])
    assert report.drafts_withdrawn == 1
    assert len(folder(world.maildir("rita"), ".Drafts")) == drafts_before - 1
    stale = tasks_by_contact(app)["ny"]
    assert stale.state == "stale" and stale.reason == "unenrolled by the operator; its draft was withdrawn from Drafts"
    _, hook = served.action("URITA", "task_send", str(nora.id), surface="single")
    answer = served.hook(hook)
    assert answer["response_type"] == "ephemeral"
    assert f"task {nora.id} is stale (unenrolled by the operator; its draft is withdrawn), not open" in answer["text"]
