""""I'll send this email myself" tasks as the CLI, Slack and the web app show them (reads only;
sending, skipping and editing are the task use cases in `cadence.services.tasks`)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from cadence.app import App
from core.addresses import stored_address
from core.vocabulary import TaskState
from store.models import Campaign, Contact, Enrollment, MailboxRow, Message, Rep, Task

PREVIEW = 160  # characters of the draft's text shown in lists


@dataclass(frozen=True)
class TaskView:
    """One task: `rep` is the owner's email, `contact` the recipient's address, `contact_name`
    their name (else the address), `preview` the first 160 characters of the draft's text on one
    line, `draft_link` the provider's link to the draft (web URL, or a Maildir path; None once a
    stale draft is withdrawn), `mailbox` the sending address, `reason` why it is not open any
    more. Datetimes are aware UTC."""

    id: int
    state: str  # open | done | skipped | stale
    rep: str
    campaign: str
    position: int
    contact: str
    contact_name: str
    company: str | None
    subject: str
    preview: str
    created_at: datetime
    due_at: datetime | None
    draft_link: str | None
    mailbox: str
    # Why a task is no longer open, in words: for a stale one, why its sequence ended and whether
    # its draft has left the rep's Drafts yet (cadence.services.stale_drafts). None for open tasks.
    reason: str | None = None

    def as_dict(self) -> dict:
        """The `cadence tasks --json` row: the fields above, datetimes as ISO 8601 strings."""
        data = dict(self.__dict__)
        data["created_at"] = self.created_at.isoformat()
        data["due_at"] = self.due_at.isoformat() if self.due_at else None
        return data


@dataclass(frozen=True)
class TaskDetail:
    """One task with what an editor needs: its view, its owner's rep id, the draft's full text,
    the campaign id and the provider of the sending mailbox (maildir | gmail | outlook | memory)."""

    view: TaskView
    rep_id: int
    body: str
    campaign_id: int
    provider: str


@dataclass(frozen=True)
class TaskPage:
    """One page of a list of tasks and how many there are in all: `tasks` are the rows from the
    `offset`-th (0-based) on."""

    tasks: list[TaskView]
    total: int
    offset: int = 0


def _query():
    return (select(Task, Message, Contact, Campaign, Rep, MailboxRow, Enrollment.end_reason)
            .join(Message, Message.id == Task.message_id)
            .join(Enrollment, Enrollment.id == Message.enrollment_id)
            .join(Contact, Contact.id == Enrollment.contact_id)
            .join(Campaign, Campaign.id == Message.campaign_id)
            .join(Rep, Rep.id == Task.rep_id)
            .join(MailboxRow, MailboxRow.id == Message.mailbox_id))


def _columns():
    """What a list shows of a task, as columns (the draft's text cut to what a preview needs)."""
    return (select(Task.id, Task.state, Task.created_at, Rep.email.label("rep"), Campaign.name.label("campaign"),
                   Message.position, Contact.email.label("contact"), Contact.first_name, Contact.last_name,
                   Contact.company, Message.subject, func.substr(Message.text, 1, PREVIEW * 8).label("text"),
                   Message.due_at, Message.web_link, Message.provider_draft_id,
                   MailboxRow.address.label("mailbox"), Enrollment.end_reason)
            .join(Message, Message.id == Task.message_id)
            .join(Enrollment, Enrollment.id == Message.enrollment_id)
            .join(Contact, Contact.id == Enrollment.contact_id)
            .join(Campaign, Campaign.id == Message.campaign_id)
            .join(Rep, Rep.id == Task.rep_id)
            .join(MailboxRow, MailboxRow.id == Message.mailbox_id))


def _view_of_columns(row) -> TaskView:
    name = " ".join(p for p in (row.first_name, row.last_name) if p) or row.contact
    return TaskView(row.id, row.state, row.rep, row.campaign, row.position, row.contact, name, row.company,
                    row.subject or "", " ".join((row.text or "").split())[:PREVIEW], row.created_at, row.due_at,
                    row.web_link, row.mailbox, _reason(row, row, row.end_reason))


def _view(task: Task, message: Message, contact: Contact, campaign: Campaign, owner: Rep, box: MailboxRow,
          end_reason: str | None) -> TaskView:
    name = " ".join(p for p in (contact.first_name, contact.last_name) if p) or contact.email
    preview = " ".join((message.text or "").split())[:PREVIEW]
    return TaskView(task.id, task.state, owner.email, campaign.name, message.position, contact.email, name,
                    contact.company, message.subject or "", preview, task.created_at, message.due_at,
                    message.web_link, box.address, _reason(task, message, end_reason))


def _reason(task, message, end_reason: str | None) -> str | None:
    """Why a task is not open (None when it is). `task` has `state`; `message` has
    `provider_draft_id` and `web_link` (ORM rows, or one row of `_columns`)."""
    state = TaskState(task.state)
    if state is TaskState.STALE:
        if message.provider_draft_id:
            where = "its draft is still in Drafts, being withdrawn"
        elif message.web_link:  # the provider would not delete it (cadence.services.stale_drafts)
            where = "its draft is marked stale in Drafts; do not send it"
        else:
            where = "its draft was withdrawn from Drafts"
        return f"{end_reason or 'the sequence ended'}; {where}"
    if state is TaskState.DONE:
        return "the draft was sent"
    if state is TaskState.SKIPPED:
        return "skipped by the rep"
    return None


def list_tasks(app: App, *, rep: str | None = None, states=(TaskState.OPEN,), rep_ids: list[int] | None = None,
               limit: int | None = None, offset: int = 0, overdue_first: bool = False) -> list[TaskView]:
    """Tasks in `states` (default: open), oldest first; only rep `rep` (email) or reps `rep_ids`
    when given (None: everyone). With `overdue_first`, by due time instead (earliest first, then
    those without one). At most `limit` when given, from the `offset`-th (0-based) in that order
    (ties are broken by creation time, then id, so consecutive pages neither repeat nor skip a row)."""
    with app.db.session(readonly=True) as session:
        query = _query().where(Task.state.in_([TaskState(s).value for s in states]))
        if overdue_first:
            query = query.order_by(Message.due_at.is_(None), Message.due_at, Task.created_at, Task.id)
        else:
            query = query.order_by(Task.created_at, Task.id)
        if rep:
            query = query.where(Rep.email == stored_address(rep))
        if rep_ids is not None:
            query = query.where(Task.rep_id.in_(rep_ids))
        if not limit:
            return [_view(*row) for row in session.execute(query.offset(offset or None))]
        # The first `limit` ids are chosen on narrow rows, then only those are read, column by column:
        # sorting every open task with its draft, or loading whole rows, costs far more (the web's
        # /tasks with 10k open tasks).
        ids = list(session.scalars(query.with_only_columns(Task.id).limit(limit).offset(offset or None)))
        rows = {row.id: row for row in session.execute(_columns().where(Task.id.in_(ids)))} if ids else {}
        return [_view_of_columns(rows[i]) for i in ids if i in rows]


def count_open_tasks(app: App, rep_ids: list[int] | None) -> int:
    """How many tasks are open for reps `rep_ids` (None: everyone)."""
    with app.db.session(readonly=True) as session:
        query = select(func.count()).select_from(Task).where(Task.state == TaskState.OPEN.value)
        if rep_ids is not None:
            query = query.where(Task.rep_id.in_(rep_ids))
        return session.scalar(query) or 0


def open_tasks(app: App, rep_ids: list[int] | None, *, limit: int | None = None, offset: int = 0,
               overdue_first: bool = False) -> TaskPage:
    """The open tasks of reps `rep_ids` (None: everyone; a viewer's `rep_ids`): `limit` of them
    (all when None) from the `offset`-th on, and their total."""
    return TaskPage(list_tasks(app, rep_ids=rep_ids, limit=limit, offset=offset, overdue_first=overdue_first),
                    count_open_tasks(app, rep_ids), offset)


def task_detail(app: App, task_id: int) -> TaskDetail | None:
    """Task `task_id` in any state with its full draft text, or None when there is no such task."""
    with app.db.session(readonly=True) as session:
        row = session.execute(_query().where(Task.id == task_id)).first()
        if row is None:
            return None
        task, message, _contact, campaign, _owner, box, _end = row
        return TaskDetail(_view(*row), task.rep_id, message.text or "", campaign.id, box.provider)


def task_owner_id(app: App, task_id: int) -> int | None:
    """The rep id owning task `task_id`, or None when there is no such task."""
    with app.db.session(readonly=True) as session:
        task = session.get(Task, task_id)
        return task.rep_id if task else None
