"""PostgreSQL going away under a running worker: every connection is cut, new ones are turned
away for a while (as during a restart); the loops log, carry on once it is back, and nothing is
sent twice or lost."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.engine import make_url

from cadence.app import App
from cadence.worker.runtime import Intervals, Runtime
from cadence.worker.options import DispatchOptions
from core.vocabulary import MessageState
from tests.support.workers import ProviderMailbox, database
from tests.support.tcp_proxy import TcpProxy

ADDRESS = "a@acme.example"


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_worker_rides_out_a_database_restart(world, database_url, caplog):
    app = world.app()
    world.campaign(app, contacts=30)
    url = make_url(database_url)
    proxy = TcpProxy(url.host, url.port)
    through_proxy = url.set(port=proxy.port).render_as_string(hide_password=False)
    worker = App(settings=world.settings(), db=database(through_proxy), clock=world.clock)
    worker.mailbox_factories["memory"] = lambda a, row: ProviderMailbox(row.address, world.provider)
    world.apps.append(worker)
    world.provider.latency = 0.05
    runtime = Runtime(worker, BackgroundScheduler(timezone="UTC"),
                      intervals=Intervals(dispatch=0.1, reconcile=0.2),
                      options=DispatchOptions(lease=timedelta(seconds=30), batch=5, threads=1), worker="survivor")
    try:
        runtime.start()
        deadline = time.monotonic() + 20
        while len(world.provider.sent(ADDRESS)) < 8 and time.monotonic() < deadline:
            time.sleep(0.02)
        proxy.outage(1.5)  # mid-batch: sends under way, outcomes not yet written
        while time.monotonic() < deadline and any(m.state != MessageState.SENT.value for m in world.messages(app)):
            time.sleep(0.1)
    finally:
        runtime.shutdown(wait=True)
        proxy.close()
    sent = [m.message_id for m in world.provider.sent(ADDRESS)]
    assert len(sent) == len(set(sent)) == 30
    assert {m.state for m in world.messages(app)} == {MessageState.SENT.value}
    assert proxy.cuts == 1
    assert "database error, trying again" in caplog.text or "database unavailable" in caplog.text
