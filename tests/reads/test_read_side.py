"""The read side on SQLite and PostgreSQL: who sees which campaigns and tasks, the task lists, the
mailbox list, and one set of KPIs for `cadence status`, Slack's status and the digest."""
from __future__ import annotations

import json

import pytest

from cadence.services.errors import UserError
from cadence.services.reads import (
    build_digest,
    campaign_for_control,
    campaign_status,
    campaign_status_by_id,
    count_open_tasks,
    event_ids_after,
    event_notice,
    find_campaign,
    list_mailboxes,
    list_tasks,
    open_tasks,
    task_detail,
    task_owner_id,
    viewer_by_email,
    viewer_by_rep_id,
    visible_campaign,
    visible_campaigns,
)
from core.vocabulary import EventKind, TaskState
from tests.support.reads import WEEK_END


def names(campaigns) -> list[str]:
    return [c.name for c in campaigns]


def test_who_sees_which_campaigns_and_tasks(world):
    app = world.app
    rita, mia, otto, bob, ada = (viewer_by_email(app, f"{n}@acme.example") for n in ("rita", "mia", "otto", "bob", "ada"))
    assert viewer_by_email(app, "nobody@acme.example") is None
    assert (rita.team_ids, rita.gets_digest, mia.gets_digest, ada.is_admin) == (frozenset({rita.rep_id}), False,
                                                                               True, True)
    assert mia.team_ids == {mia.rep_id, rita.rep_id, bob.rep_id} and viewer_by_rep_id(app, mia.rep_id) == mia

    # sending campaigns first, then by name; a campaign belongs to the owners of its mailboxes
    assert names(visible_campaigns(app, rita)) == ["Flow", "Shared"]
    assert names(visible_campaigns(app, mia)) == ["Flow", "Shared"]
    assert names(visible_campaigns(app, otto)) == ["Otto Outreach", "Shared"]
    assert names(visible_campaigns(app, ada)) == ["Flow", "Otto Outreach", "Shared"]
    assert visible_campaigns(app, bob) == []
    otto_outreach = find_campaign(app, ada, "otto")
    assert visible_campaign(app, rita, otto_outreach.id) is None  # a web page answers 404
    assert visible_campaign(app, otto, otto_outreach.id) == otto_outreach

    assert find_campaign(app, rita, "  flo ").name == "Flow"  # case-insensitive unique prefix
    with pytest.raises(UserError, match="No campaign named \u201cOtto Outreach\u201d among yours"):
        find_campaign(app, rita, "Otto Outreach")  # hidden exactly like a missing one
    with pytest.raises(UserError, match="Did you mean `Shared`"):
        find_campaign(app, rita, "Sharde")
    with pytest.raises(UserError, match="You may not pause \u201cShared\u201d"):
        campaign_for_control(app, rita, "shared", "pause")  # Sue's emails go out from Otto's mailbox
    assert campaign_for_control(app, ada, "shared", "pause").owner_ids == {rita.rep_id, otto.rep_id}

    # tasks: Rita's four open drafts (Nora, Leo's ended with the reply, Taro's with the bounce)
    ritas = open_tasks(app, rita.rep_ids)
    assert ritas.total == len(ritas.tasks) == count_open_tasks(app, [rita.rep_id]) == 2
    assert {t.contact for t in ritas.tasks} == {"ny@prospect.example", "sam@shared.example"}
    assert open_tasks(app, mia.rep_ids).tasks == ritas.tasks and open_tasks(app, bob.rep_ids).total == 0
    everyone = open_tasks(app, ada.rep_ids, limit=1)
    assert (len(everyone.tasks), everyone.total) == (1, 4)
    assert all(t.state == TaskState.OPEN for t in list_tasks(app))
    nora = next(t for t in ritas.tasks if t.contact == "ny@prospect.example")
    assert (nora.contact_name, nora.company, nora.campaign, nora.position, nora.mailbox, nora.rep) == (
        "Nora North", "NYCo", "Flow", 2, "rita@acme.example", "rita@acme.example")
    detail = task_detail(app, nora.id)
    assert detail.view == nora and detail.rep_id == rita.rep_id and detail.provider == "maildir"
    assert detail.body.startswith("Hi Nora, an idea for NYCo.") and "Would Tuesday work?" in detail.body
    assert nora.preview == " ".join(detail.body.split())[:160]
    assert task_owner_id(app, nora.id) == rita.rep_id and task_detail(app, 10**9) is None
    # `cadence tasks --json` is the same read
    listed = json.loads(world.run("tasks", "--rep", "rita@acme.example", "--json"))
    assert listed == [t.as_dict() for t in list_tasks(app, rep="rita@acme.example")]


def test_status_digest_mailboxes_and_notices_agree(world):
    app = world.app
    flow = campaign_status(app, "Flow")
    delivery = flow["delivery"]
    # 3 sent, Taro's bounced; Nora opened (twice) and clicked, Leo replied
    assert (delivery["sent"], delivery["bounces"], delivery["delivered"], delivery["delivered_contacts"]) == (3, 1, 2, 2)
    assert (delivery["opens"], delivery["opens_pct"], delivery["clicks"], delivery["clicks_pct"]) == (1, 50.0, 1, 50.0)
    assert (delivery["replies"], delivery["tasks_open"]) == (1, 1)
    flow_id = find_campaign(app, viewer_by_email(app, "ada@acme.example"), "Flow").id
    assert campaign_status_by_id(app, flow_id, held_back=True) == flow
    lean = campaign_status_by_id(app, flow_id)  # what the dashboard and Slack refresh: all but the backlog
    assert {k: v for k, v in flow.items() if k != "backlog"} == {
        **lean, "delivery": {**lean["delivery"], "deferred_by_cause": flow["delivery"]["deferred_by_cause"]}}
    assert json.loads(world.run("status", "Flow", "--json", now="2026-12-01T16:30:00Z")) == flow

    digest = build_digest(app, "mia@acme.example", end=WEEK_END)
    rows = {row.label: row.kpis for row in digest.campaigns}
    assert set(rows) == {"Flow", "Shared"}  # the team's mailboxes: Sue's email went out from Otto's
    kpis = rows["Flow"]
    for name in ("sent", "bounces", "delivered", "delivered_pct", "delivered_contacts", "opens", "opens_pct",
                 "clicks", "clicks_pct", "replies", "unsubscribes"):
        assert getattr(kpis, name) == delivery[name], name
    assert kpis.overdue_tasks == 1  # Nora's task, due on the 1st at 10:00 New York
    assert digest.total.overdue_tasks == 2  # and Sam's in Shared
    assert build_digest(app, "mia@acme.example", end=WEEK_END.replace(day=2)).total.overdue_tasks == 0  # not a day late

    boxes = list_mailboxes(app)
    assert [(b["address"], b["owner"], b["health"], b["sent_today"]) for b in boxes] == [
        ("otto@acme.example", "otto@acme.example", "connected", 0),
        ("rita@acme.example", "rita@acme.example", "connected", 0)]  # Tuesday's: every email went out Monday
    assert [b["address"] for b in list_mailboxes(app, owner_ids=[viewer_by_email(app, "rita@acme.example").rep_id])] == [
        "rita@acme.example"]
    assert json.loads(world.run("mailbox", "list", "--json", now="2026-12-01T16:30:00Z")) == boxes

    kinds = (EventKind.REPLIED, EventKind.BOUNCED, EventKind.TASK_CREATED)
    notices = [event_notice(app, i) for i in event_ids_after(app, 0, kinds, 100)]
    rita_id = viewer_by_email(app, "rita@acme.example").rep_id
    replied = next(n for n in notices if n.kind == EventKind.REPLIED)
    assert (replied.rep_id, replied.contact, replied.campaign, replied.position) == (rita_id, "Leo (LondonCo)", "Flow", 1)
    bounced = next(n for n in notices if n.kind == EventKind.BOUNCED)
    assert (bounced.rep_id, bounced.contact, bounced.campaign) == (rita_id, "tyo@prospect.example", "Flow")
    drafted = [n.task.contact for n in notices if n.kind == EventKind.TASK_CREATED and n.rep_id is not None]
    assert sorted(drafted) == ["ana@other.example", "ny@prospect.example", "sam@shared.example", "sue@shared.example"]
