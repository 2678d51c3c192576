""""I'll send this email myself" tasks: listing, sending, skipping and editing their drafts."""
from __future__ import annotations

from cadence.app import App
from cadence.services.delivery import _draft_ref, _mark_sent, _resolve, PassReport, move_on
from cadence.services.directory import mark_disconnected
from cadence.services.errors import UserError
from cadence.services.events import record
from cadence.services.reads.tasks import TaskView, list_tasks, task_owner_id
from core.headers import HeaderInjection, check_header_value
from core.mailbox import Disconnected, DraftNotFound, MailboxError, SendInDoubt
from core.render import html_to_text
from core.vocabulary import EventKind, MessageState, TaskState
from store.models import MailboxRow, Message, Task


def _open_task(session, task_id: int) -> tuple[Task, Message, MailboxRow]:
    task = session.get(Task, task_id)
    if task is None:
        raise UserError(f"no task {task_id}")
    if task.state != TaskState.OPEN.value:
        raise UserError(f"task {task_id} is {task.state}, not open")
    message = session.get(Message, task.message_id)
    return task, message, session.get(MailboxRow, message.mailbox_id)


def send_task(app: App, task_id: int) -> str:
    """Send the task's draft as it is now in the rep's mailbox; the sequence moves on.

    Writes take SQLite's write lock up front (immediate sessions): Slack buttons and the CLI may
    act at the same moment as a worker.
    """
    with app.db.session(immediate=True) as session:
        task, message, box = _open_task(session, task_id)
        draft, message_id = _draft_ref(message), message.id
    mailbox = app.mailbox(box)
    try:
        sent = mailbox.send_draft(draft)
    except (SendInDoubt, DraftNotFound) as doubt:
        report = _resolve(app, message_id, mailbox, draft, str(doubt), PassReport())
        _close_if_sent(app, task_id)
        if report.sent:
            return f"task {task_id}: sent"
        raise UserError(f"task {task_id}: could not tell whether the draft was sent ({doubt.reason}); "
                        "check the rep's Sent folder") from None
    except Disconnected as problem:
        with app.db.session(immediate=True) as session:
            mark_disconnected(session, session.get(MailboxRow, box.id), problem.reason, app.clock.now())
        raise UserError(f"mailbox {box.address} is disconnected: {problem.reason}") from None
    except MailboxError as problem:
        raise UserError(f"task {task_id}: the provider refused to send: {problem.reason}") from None
    now = app.clock.now()
    with app.db.session(immediate=True) as session:
        task = session.get(Task, task_id)
        task.state, task.closed_at = TaskState.DONE.value, now
        message = session.get(Message, message_id)
        record(session, EventKind.TASK_DONE, now, f"task {task_id}: sent to {message.to_address}",
               campaign_id=message.campaign_id, message_id=message_id, enrollment_id=message.enrollment_id)
        _mark_sent(session, app, message, sent, now)
    return f"task {task_id}: sent"


def _close_if_sent(app: App, task_id: int) -> None:
    with app.db.session(immediate=True) as session:
        task = session.get(Task, task_id)
        message = session.get(Message, task.message_id)
        if message.state == MessageState.SENT.value and task.state == TaskState.OPEN.value:
            task.state, task.closed_at = TaskState.DONE.value, app.clock.now()


def skip_task(app: App, task_id: int) -> str:
    """Skip the step for this person: the draft is removed and the sequence moves on."""
    now = app.clock.now()
    with app.db.session(immediate=True) as session:
        task, message, box = _open_task(session, task_id)
        task.state, task.closed_at = TaskState.SKIPPED.value, now
        message.state, message.updated_at = MessageState.SKIPPED.value, now
        draft = _draft_ref(message) if message.provider_draft_id else None
        record(session, EventKind.TASK_SKIPPED, now, f"task {task_id}: skipped", campaign_id=message.campaign_id,
               message_id=message.id, enrollment_id=message.enrollment_id)
        move_on(session, app, message.enrollment, message.position, now)
    if draft is not None:
        try:
            app.mailbox(box).delete_draft(draft)
        except MailboxError:
            pass  # the task is skipped either way; a leftover draft harms nobody
    return f"task {task_id}: skipped"


def edit_task(app: App, task_id: int, *, subject: str, body: str) -> None:
    """Save an edited subject and body into the task's draft (plain text body, HTML derived)."""
    try:
        check_header_value("subject", subject)
    except HeaderInjection as refused:
        raise UserError(str(refused)) from None
    if not subject.strip() or not body.strip():
        raise UserError("subject and body must not be empty")
    from html import escape

    html = "".join(f"<p>{escape(p).replace(chr(10), '<br>')}</p>" for p in body.strip().split("\n\n"))
    with app.db.session(immediate=True) as session:
        task, message, box = _open_task(session, task_id)
        draft = _draft_ref(message)
    try:
        app.mailbox(box).update_draft(draft, subject=subject.strip(), html_body=html, text_body=body.strip())
    except DraftNotFound:
        raise UserError(f"task {task_id}: the draft is no longer in {box.address} (sent or deleted)") from None
    except MailboxError as problem:
        raise UserError(f"task {task_id}: could not save the draft: {problem.reason}") from None
    with app.db.session(immediate=True) as session:
        message = session.get(Message, session.get(Task, task_id).message_id)
        message.subject, message.text, message.html = subject.strip(), body.strip(), html
        message.updated_at = app.clock.now()


__all__ = ["TaskView", "list_tasks", "send_task", "skip_task", "edit_task", "task_owner_id", "html_to_text"]
