"""Scheduling a task's draft to be sent later (the command centre's **Schedule**).

The rep's draft stays in their mailbox; the task keeps `send_at`. A worker pass
(`send_scheduled_tasks`) sends each due draft through `send_task`, exactly once: the task is
claimed by one conditional UPDATE clearing `send_at` before the provider is called, so two workers
never both send it. A worker that dies between the claim and the send leaves the task open and
unscheduled, for the rep to see and send, never sent twice. A task the rep sent or skipped
meanwhile (or whose prospect replied) is not open any more and is left alone.
"""
from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select, update

from cadence.app import App
from cadence.services.errors import UserError
from store.events import record
from cadence.services.tasks import send_task
from core.vocabulary import EventKind, TaskState
from store.models import Message, Task

log = logging.getLogger("cadence.tasks")


def schedule_task(app: App, task_id: int, at: datetime) -> datetime:
    """Have the worker send the task's draft at `at` (aware datetime, in the future); returns it in UTC.

    Raises UserError when the task is not open or `at` is not later than now.
    """
    now = app.clock.now()
    if at.tzinfo is None:
        raise UserError("Schedule: the time needs a time zone")
    if at <= now:
        raise UserError(f"Schedule: {at:%Y-%m-%d %H:%M} is not in the future")
    with app.db.session(immediate=True) as session:
        task = session.get(Task, task_id)
        if task is None:
            raise UserError(f"no task {task_id}")
        if task.state != TaskState.OPEN.value:
            raise UserError(f"task {task_id} is {task.state}, not open")
        task.send_at = at
        message = session.get(Message, task.message_id)
        record(session, EventKind.SCHEDULED, now, f"task {task_id}: to be sent to {message.to_address} at "
               f"{at.astimezone(now.tzinfo):%Y-%m-%d %H:%M} UTC", campaign_id=message.campaign_id,
               message_id=message.id, enrollment_id=message.enrollment_id)
    return at.astimezone(now.tzinfo)


def unschedule_task(app: App, task_id: int) -> None:
    """Forget a scheduled send (sending now or skipping takes over)."""
    with app.db.session(immediate=True) as session:
        session.execute(update(Task).where(Task.id == task_id).values(send_at=None)
                        .execution_options(synchronize_session=False))


def send_scheduled_tasks(app: App, limit: int = 100) -> int:
    """Send the drafts of open tasks whose scheduled time has come; returns how many went out."""
    now = app.clock.now()
    with app.db.session() as session:
        due = list(session.scalars(select(Task.id).where(Task.state == TaskState.OPEN.value,
                                                         Task.send_at.is_not(None), Task.send_at <= now)
                                   .order_by(Task.send_at, Task.id).limit(limit)))
    sent = 0
    for task_id in due:
        with app.db.session(immediate=True) as session:
            claimed = session.execute(update(Task).where(Task.id == task_id, Task.send_at.is_not(None),
                                                         Task.state == TaskState.OPEN.value)
                                      .values(send_at=None).execution_options(synchronize_session=False)).rowcount
        if claimed != 1:
            continue  # another worker has it, or the rep acted meanwhile
        try:
            send_task(app, task_id)
            sent += 1
        except UserError as refused:
            with app.db.session() as session:
                task = session.get(Task, task_id)
                message = session.get(Message, task.message_id)
                record(session, EventKind.FAILED, app.clock.now(), f"scheduled send of task {task_id} failed: "
                       f"{refused}; the task stays open", level="error", campaign_id=message.campaign_id,
                       message_id=message.id, enrollment_id=message.enrollment_id)
            log.warning("scheduled send of task %s failed: %s", task_id, refused)
    return sent


def scheduled_at(app: App, task_id: int) -> datetime | None:
    """When the task's draft is scheduled to go out (aware UTC), or None."""
    with app.db.session() as session:
        return session.scalar(select(Task.send_at).where(Task.id == task_id, Task.state == TaskState.OPEN.value))
