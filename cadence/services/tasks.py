""""I'll send this email myself" tasks: listing, sending, skipping and editing their drafts."""
from __future__ import annotations

from cadence.app import App
from cadence.services.errors import UserError
from cadence.services.reads.tasks import TaskView, list_tasks, task_owner_id
from cadence.services.sequences import mark_sent, move_on
from core.headers import HeaderInjection, check_header_value
from core.mailbox import Disconnected, DraftNotFound, DraftRef, Mailbox, MailboxError, SendCheck, SendInDoubt, SentRef
from core.outcomes import RETRY_BASE, PassReport
from core.render import html_to_text
from core.vocabulary import EventKind, MessageState, StepAction, TaskState
from store.events import record
from store.mailboxes import mark_disconnected
from store.models import MailboxRow, Message, Task
from store.queue.claims import draft_ref, release


def _open_task(session, task_id: int) -> tuple[Task, Message, MailboxRow]:
    task = session.get(Task, task_id)
    if task is None:
        raise UserError(f"no task {task_id}")
    message = session.get(Message, task.message_id)
    if task.state != TaskState.OPEN.value:
        why = ""
        if task.state == TaskState.STALE.value:
            why = f" ({message.enrollment.end_reason or 'the sequence ended'}; its draft is withdrawn)"
        raise UserError(f"task {task_id} is {task.state}{why}, not open")
    return task, message, session.get(MailboxRow, message.mailbox_id)


def send_task(app: App, task_id: int) -> str:
    """Send the task's draft as it is now in the rep's mailbox; the sequence moves on.

    Writes take SQLite's write lock up front (immediate sessions): Slack buttons and the CLI may
    act at the same moment as a worker.
    """
    with app.db.session(immediate=True) as session:
        task, message, box = _open_task(session, task_id)
        draft, message_id = draft_ref(message), message.id
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
        mark_sent(session, app.clock, message, sent, now)
    return f"task {task_id}: sent"


def _resolve(app: App, message_id: int, mailbox: Mailbox, draft: DraftRef, why: str,
             report: PassReport) -> PassReport:
    """An interrupted send outside a claim (a rep's task): ask the provider, and only mark what it says."""
    try:
        status = mailbox.check_sent(draft.message_id, draft)
    except MailboxError as problem:
        status = None
        why = f"{why}; checking failed: {problem.reason}"
    now = app.clock.now()
    with app.db.session(immediate=True) as session:
        message = session.get(Message, message_id)
        if status is not None and status.status is SendCheck.SENT:
            mark_sent(session, app.clock, message, status.sent or SentRef(draft.message_id), now,
                      f"step {message.position} to {message.to_address}: sent (confirmed after: {why})")
            report.sent += 1
            report.reconciled += 1
        elif status is not None and status.status is SendCheck.NOT_SENT:
            if message.action == StepAction.AUTO.value:
                message.state, message.due_at = MessageState.SCHEDULED.value, now + RETRY_BASE
                release(message)
            record(session, EventKind.RECONCILED, now, f"step {message.position}: not sent ({why})"
                   + ("; will retry" if message.action == StepAction.AUTO.value else "; the task stays open"),
                   level="warning", campaign_id=message.campaign_id, message_id=message.id)
            report.reconciled += 1
        else:
            message.state, message.error = MessageState.IN_DOUBT.value, why
            release(message)
            record(session, EventKind.IN_DOUBT, now, f"step {message.position} to {message.to_address}: cannot "
                   f"tell whether it was sent ({why}); a person must decide", level="error",
                   campaign_id=message.campaign_id, message_id=message.id)
            report.in_doubt += 1
    return report


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
        draft = draft_ref(message) if message.provider_draft_id else None
        record(session, EventKind.TASK_SKIPPED, now, f"task {task_id}: skipped", campaign_id=message.campaign_id,
               message_id=message.id, enrollment_id=message.enrollment_id)
        move_on(session, app.clock, message.enrollment, message.position, now)
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
        draft = draft_ref(message)
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
