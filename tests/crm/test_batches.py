"""The CRM lane's use cases on both databases: batches of at most 200, one lane holder at a time."""
from __future__ import annotations

import threading
from datetime import datetime, timezone

from cadence.app import App
from cadence.services.crm import connect_with_refresh_token
from cadence.services.crm_sync import sync_crm
from cadence.services.directory import add_rep
from cadence.services.engagement import unsubscribe
from cadence.services.imports import import_contacts_data
from cadence.settings import Settings
from core.clock import FixedClock
from store.models import Contact

from tests.support.crm import ADMIN

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)


def _app(cli, upgrade: bool = True) -> App:
    return App.from_settings(Settings(), clock=FixedClock(NOW), upgrade=upgrade)  # Alembic is not thread-safe


def test_tasks_are_created_200_a_call_and_once_with_two_lanes_racing(cli, org):
    fake = org.fake
    people = [f"p{i:03d}@prospect.example" for i in range(205)]
    for email in people:
        fake.add_contact(email, "P", email[:4])
    app = _app(cli)
    add_rep(app, email=ADMIN, role="admin")
    report = import_contacts_data(app, ("email\n" + "\n".join(people) + "\n").encode(), source="test")
    assert report.imported == 205
    connect_with_refresh_token(app, ADMIN, fake.issue_refresh_token(org.admin_user, "3MVG9-cadence-test"))
    with app.db.session() as session:
        ids = [c.id for c in session.query(Contact).order_by(Contact.id)]
    for contact_id in ids:
        assert unsubscribe(app, contact_id)

    reports = []
    start = threading.Barrier(2)

    def lane() -> None:
        start.wait()
        reports.append(sync_crm(_app(cli, upgrade=False)))

    threads = [threading.Thread(target=lane) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(r.created for r in reports) == [0, 205]  # one lane held the lease, the other left
    assert fake.writes == [("POST", 200), ("POST", 5)]
    tasks = fake.records("Task")
    assert len(tasks) == 205 and len({t["WhoId"] for t in tasks}) == 205
    assert {t["Subject"] for t in tasks} == {f"Unsubscribed: {email}" for email in people}
    assert all(t["Status"] == "Completed" and t["OwnerId"] == org.admin_user for t in tasks)  # no rep: the connector
    assert sync_crm(_app(cli)).created == 0 and len(fake.records("Task")) == 205
