"""Several real `cadence worker` processes on PostgreSQL, killed with SIGKILL while a campaign runs.

The fake Gmail's own records must show every due message sent exactly once and no mailbox
limit ever passed (requests at once, sends per minute, sends per day), through provider faults
(429 with Retry-After, 5xx, answers lost after the send) and database outages. The short CI run;
`make soak` runs the same with >= 1,000 kills.
"""
from __future__ import annotations

import json
import os
import time
import uuid

import pytest

from tests.support.databases import PG_DSN, PG_URL
from tests.support.counts import assert_counters_match
from tests.support.cluster import Box, Cluster, drop_schema, pg_schema_url

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def pg_url():
    schema = f"chaos_{uuid.uuid4().hex[:10]}"
    yield pg_schema_url(PG_DSN, PG_URL, schema)
    drop_schema(PG_DSN, schema)


def test_killed_workers_send_every_due_message_exactly_once_within_every_limit(tmp_path, pg_url):
    seed = int(os.environ.get("CADENCE_CHAOS_SEED", time.time()))
    boxes = [Box("m0@acme.example", contacts=25, concurrency=2),
             Box("m1@acme.example", contacts=25, per_minute=20, concurrency=1),
             Box("m2@acme.example", contacts=25, daily=30, concurrency=3)]
    with Cluster(tmp_path / "run", pg_url, workers=3, latency=0.03, lease=2.0, batch=4, seed=seed) as cluster:
        cluster.add_campaign("Chaos", boxes, daily_limit=45)
        cluster.start()
        started = time.monotonic()
        cluster.chaos(25, kill_gap=(0.3, 1.0), fault_chance=0.5, outage_every=5, outage=1.0,
                      stop_when=lambda: cluster.kills >= 8 and cluster.pending() == 0)
        settled = cluster.wait_settled(240)  # returns as soon as nothing due is left; the bound is for a loaded machine
        exit_times = cluster.terminate_all()
        verdict = cluster.verdict()
        logs = cluster.worker_logs()
        status = json.loads(cluster.cadence("status", "Chaos", "--json"))
        lines = cluster.cadence("logs", "Chaos")
        sent_by = {box.address: sum(1 for a, _, _ in cluster.gmail.sends if a == box.address) for box in boxes}
        faults = dict(cluster.faults)
        counted = assert_counters_match(cluster.app)  # the counters equal a full recount after the kills
    context = f"seed {seed}, {verdict.line()}, faults {faults}, {time.monotonic() - started:.0f} s\n{logs}"
    assert settled, f"due work was left undone; {context}"
    assert verdict.ok, f"{(verdict.violations + verdict.draft_problems)[:5]}; {context}"
    assert verdict.kills >= 8 and faults, context
    # The daily caps were reached exactly: retries never used up a day's allowance.
    assert sent_by["m0@acme.example"] == 45 and sent_by["m2@acme.example"] == 30, f"{sent_by}; {context}"
    assert 1 <= sent_by["m1@acme.example"] <= 20, f"{sent_by}; {context}"
    assert verdict.delivered == sum(sent_by.values())
    # What a cap held back says so, and when it goes.
    assert verdict.deferred > 0 and status["delivery"]["deferred"] >= verdict.deferred - 1
    assert "daily_limit of 45" in lines and "cap of 30 emails a day" in lines
    assert status["delivery"]["in_doubt"] == 0 and status["delivery"]["sent"] == verdict.delivered
    assert counted == 1
    # SIGTERM: every worker left by itself with status 0 (terminate_all raises otherwise).
    assert exit_times, "no worker was running at the end"
