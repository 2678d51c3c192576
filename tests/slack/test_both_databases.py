"""The bot's whole round on SQLite and PostgreSQL: the world built from scratch with the real CLI."""
from __future__ import annotations

from datetime import datetime

from bot.digest import build_digest
from bot.notify import send_notifications
from cadence.services.tasks import list_tasks
from tests.support.slack import Served, World, build_world, make_app, text_of


def test_commands_buttons_notifications_and_digest(cli, fake_slack):
    build_world(cli.ok, cli.home)
    world = World(cli.home, cli.database_url, cli.ok, cli)
    app = make_app(world, fake_slack)
    served = Served(app, fake_slack)
    try:
        response, hook = served.command("URITA", "tasks")
        assert response.status_code == 200
        assert "3 open tasks" in text_of(served.hook(hook))

        nora = next(t for t in list_tasks(app) if t.contact == "ny@prospect.example")
        _, hook = served.action("URITA", "task_send", str(nora.id))
        assert "Sent to ny@prospect.example" in text_of(served.hook(hook))
        ritas = next(t.id for t in list_tasks(app) if t.rep == "rita@acme.example")
        _, hook = served.action("UOTTO", "task_skip", str(ritas))
        assert "You may not act on this task" in served.hook(hook)["text"]

        assert send_notifications(app) == 3  # Nora's draft was sent before the notifier ran
        assert send_notifications(app) == 0

        _, hook = served.command("URITA", "status flow")
        assert "*Flow*" in text_of(served.hook(hook))
        digest = build_digest(app, "mia@acme.example", end=datetime.fromisoformat("2026-12-04T00:00:00+00:00"))
        rita = {row.label: row.kpis for row in digest.reps}["Rita Rep"]
        assert (rita.sent, rita.overdue_tasks) == (4, 2)  # three first steps and Nora's task; Leo and Taro wait
    finally:
        served.close()
        app.db.dispose()
