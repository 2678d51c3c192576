"""`/cadence …` over HTTP: who is who, help for malformed text, status, tasks, pause and resume."""
from __future__ import annotations

import logging

from sqlalchemy import select

from store.models import Campaign, Rep
from tests.support.slack import text_of


def ask(served, user: str, text: str) -> dict:
    response, hook = served.command(user, text)
    assert response.status_code == 200, response.text
    answer = served.hook(hook)
    assert answer["response_type"] == "ephemeral"
    return answer


def campaign_state(app, name: str) -> str:
    with app.db.session() as session:
        return session.scalar(select(Campaign.state).where(Campaign.name == name))


def test_an_unknown_user_gets_a_polite_answer_and_nothing_else(served, fake_slack):
    answer = ask(served, "USTRANGER", "tasks")
    assert "don't know your Slack account" in answer["text"]
    assert "Nora" not in text_of(answer)
    methods = {c.method for c in fake_slack.calls}
    assert methods <= {"auth.test", "users.info"}, methods


def test_malformed_text_gets_the_help(served):
    for text, reason in (("", None), ("frobnicate Flow", "I don't know \u201cfrobnicate\u201d"),
                         ("pause", "`pause` needs a campaign name"), ("tasks please", "`tasks` takes nothing"),
                         ("x" * 400, "longer than 300"), ("status \x00\x07", None)):
        answer = ask(served, "URITA", text)
        body = text_of(answer)
        if text.startswith("status"):
            assert "Flow" in body  # control characters are dropped: a plain `status`
            continue
        assert "/cadence status [campaign]" in body, text
        if reason:
            assert reason in answer["text"], (text, answer["text"])


def test_status_names_complete_case_insensitively(served):
    for text in ("status flow", "status FLOW", "status  Flow ", "status fl", "status \u201cflow\u201d"):
        answer = ask(served, "URITA", text)
        body = text_of(answer)
        assert "*Flow*" in body and "Targeted" in body, text
        assert "3 (to deliver 3 \u00b7 to exclude 0)" in body
        assert "sending" in body and "Next due" in body


def test_an_unknown_name_suggests_the_closest_visible_ones(served, caplog):
    assert "Did you mean `Flow`?" in ask(served, "URITA", "status Flw")["text"]
    # Otto's campaign exists but is not Rita's: answered like a missing one, and logged.
    with caplog.at_level(logging.WARNING, logger="cadence.slack.access"):
        answer = ask(served, "URITA", "status otto outreach")
    assert "No campaign named \u201cotto outreach\u201d" in answer["text"]
    assert "Otto Outreach`" not in answer["text"]
    assert any("refused" in r.message and "rita@acme.example" in r.message for r in caplog.records)


def test_status_without_a_name_lists_the_users_campaigns(served):
    def names(user: str) -> set[str]:
        body = text_of(ask(served, user, "status"))
        return {n for n in ("Flow", "Otto Outreach") if f"*{n}*" in body}

    assert names("URITA") == {"Flow"}
    assert names("UMIA") == {"Flow"}  # Rita's manager
    assert names("UOTTO") == {"Otto Outreach"}
    assert names("UADA") == {"Flow", "Otto Outreach"}  # admin


def test_tasks_are_the_users_own_or_their_teams(served):
    def contacts(user: str) -> set[str]:
        body = text_of(ask(served, user, "tasks"))
        return {c for c in ("Nora", "Leo", "Taro", "Ana") if f"*{c}*" in body}

    rita = ask(served, "URITA", "tasks")
    body = text_of(rita)
    assert "3 open tasks" in body and "NYCo" in body and "Idea for NYCo" in body
    assert "task_send" in body and "task_skip" in body and "task_edit" in body
    assert contacts("URITA") == {"Nora", "Leo", "Taro"}
    assert contacts("UMIA") == {"Nora", "Leo", "Taro"}
    assert contacts("UOTTO") == {"Ana"}
    assert contacts("UADA") == {"Nora", "Leo", "Taro", "Ana"}


def test_a_rep_is_recognised_by_the_email_of_their_slack_profile(served, fake_slack, app):
    answer = ask(served, "UBOB", "tasks")
    assert "No open tasks" in answer["text"]
    assert fake_slack.calls_to("users.info") == [{"user": "UBOB"}]
    with app.db.session() as session:
        assert session.scalar(select(Rep.slack_id).where(Rep.email == "bob@acme.example")) == "UBOB"
    ask(served, "UBOB", "tasks")
    assert len(fake_slack.calls_to("users.info")) == 1  # linked now: no second lookup


def test_pause_and_resume(served, app, caplog):
    assert "is now paused" in ask(served, "URITA", "pause flow")["text"]
    assert campaign_state(app, "Flow") == "paused"
    assert "cannot be paused" in ask(served, "URITA", "pause Flow")["text"]
    assert "is now sending" in ask(served, "UMIA", "resume FLOW")["text"]  # the manager of its rep
    assert campaign_state(app, "Flow") == "sending"
    with caplog.at_level(logging.WARNING, logger="cadence.slack.access"):
        assert "No campaign named" in ask(served, "UOTTO", "pause Flow")["text"]
    assert campaign_state(app, "Flow") == "sending"
    assert "is now paused" in ask(served, "UADA", "pause Otto Outreach")["text"]


def test_a_campaign_shared_with_another_team_cannot_be_paused_by_one_rep(served, app, world, caplog):
    (world.home / "shared.yml").write_text((world.home / "flow.yml").read_text().replace("name: Flow", "name: Shared"))
    world.run("campaign", "import", str(world.home / "shared.yml"))
    world.run("enroll", "Shared", "--emails", "ny@prospect.example", "--mailbox", "rita@acme.example")
    world.run("enroll", "Shared", "--emails", "ana@other.example", "--mailbox", "otto@acme.example")
    assert "*Shared*" in text_of(ask(served, "URITA", "status shared"))  # she may look
    with caplog.at_level(logging.WARNING, logger="cadence.slack.access"):
        answer = ask(served, "URITA", "pause shared")
    assert "You may not pause \u201cShared\u201d" in answer["text"]
    assert any("may not pause" in r.message for r in caplog.records)
    assert campaign_state(app, "Shared") == "draft"
    # The admin may; the campaign itself then says it is not sending.
    assert "is draft; it cannot be paused" in ask(served, "UADA", "pause shared")["text"]


def test_digest_is_for_managers(served):
    assert "Digests are for managers" in ask(served, "URITA", "digest")["text"]


def test_slash_web_sends_a_one_time_sign_in_link_in_a_direct_message(served, fake_slack, app):
    from cadence.services.signin import redeem_link

    answer = ask(served, "URITA", "web")
    assert "sign-in link to the web app in a direct message" in answer["text"]
    posted = fake_slack.calls_to("chat.postMessage")
    assert [p["channel"] for p in posted] == ["DURITA"]
    assert str(posted[0].get("unfurl_links")).lower() in ("false", "0")
    url = posted[0]["text"].rsplit(" ", 1)[1]
    assert url.startswith("https://cadence.test/signin/")
    cookie, person = redeem_link(app, url.rsplit("/", 1)[1])
    assert person.email == "rita@acme.example"
    assert redeem_link(app, url.rsplit("/", 1)[1]) is None
