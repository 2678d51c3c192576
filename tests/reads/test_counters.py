"""The campaign counters `status` reads (kept by the database in the transaction of every change
they count) equal a full recount of the campaign after every step of a scripted walk: sends,
opens, clicks, a reply, a bounce, tasks, an unsubscribe, pause and resume, a stop; and the
migration that adds them counts the data already stored (SQLite and PostgreSQL)."""
from __future__ import annotations

import json

from alembic import command
from sqlalchemy import select

from cadence.services import engagement
from cadence.services.tasks import skip_task
from store.db import alembic_config
from store.models import Campaign, CampaignCount, Contact, Message, Task
from tests.support.counts import assert_counters_match
from tests.support.reads import NOW

LATER = "2026-12-02T16:00:00Z"
NAMES = ("Flow", "Otto Outreach", "Shared")


def statuses(world) -> dict:
    return {name: json.loads(world.run("status", name, "--json", now=LATER)) for name in NAMES}


def test_counters_equal_a_full_recount_through_a_campaigns_life(world):
    app, run = world.app, world.run
    assert assert_counters_match(app) == 3
    before = statuses(world)
    assert before["Flow"]["delivery"]["opens"] == 1 and before["Flow"]["delivery"]["replies"] == 1
    assert before["Flow"]["delivery"]["bounces"] == 1 and before["Flow"]["delivery"]["tasks_open"] >= 1

    with app.db.session() as session:
        sam, via, shared = session.execute(
            select(Contact.id, Message.id, Message.campaign_id).join(Message, Message.to_address == Contact.email)
            .where(Contact.email == "sam@shared.example", Message.position == 1)).one()
        task_id = session.scalar(select(Task.id).where(Task.state == "open").order_by(Task.id))
    assert engagement.unsubscribe(app, sam, via_message=via, campaign_id=shared)
    assert assert_counters_match(app) == 3
    skip_task(app, task_id)
    assert assert_counters_match(app) == 3

    run("pause", "Flow", now=LATER)
    assert assert_counters_match(app) == 3
    run("resume", "Flow", now=LATER)
    run("stop", "Otto Outreach", "--yes", now=LATER)
    assert assert_counters_match(app) == 3
    run("worker", "--once", "--now", LATER)
    assert assert_counters_match(app) == 3
    after = statuses(world)
    assert after["Otto Outreach"]["state"] == "stopped"
    assert after["Shared"]["delivery"]["unsubscribes"] == 1 and after["Flow"]["delivery"]["opens"] == 1

    # The migration's backfill: counters rebuilt from the stored rows give the same documents.
    config = alembic_config(app.db.engine)
    command.downgrade(config, "0009_mailbox_health")
    command.upgrade(config, "head")
    assert assert_counters_match(app) == 3
    assert statuses(world) == after


def test_status_reads_the_counters_not_the_campaign(world):
    # A counter row changed by hand shows in `status`: the figure comes from the counters.
    with world.app.db.session() as session:
        flow = session.scalar(select(Campaign.id).where(Campaign.name == "Flow"))
        session.add(CampaignCount(campaign_id=flow, position=1, name="msg:sent", slot=999, n=1000))
    document = json.loads(world.run("status", "Flow", "--json", now=NOW.strftime("%Y-%m-%dT%H:%M:%SZ")))
    assert document["delivery"]["sent"] >= 1000
