"""Stale task drafts leave the reps' Drafts (issue 11: a draft made stale by a reply, a bounce, an
opt-out, a stop or an unenrolment must not stay there ready to send).

A task goes `stale` in the same transaction that ends its sequence (`store.queue.claims.end_enrollment`,
`cadence.services.campaigns.stop_campaign`); its draft id stays on the message until the draft is
gone from the mailbox. `withdraw_stale_drafts` then deletes it (`Mailbox.delete_draft`); where the
provider refuses to delete it, the draft's subject and text are marked instead (`STALE_MARK`).
Either way the draft id is cleared (a marked draft keeps its link) and a `draft_withdrawn` event
says what was done and why.
A failure that may pass (network, rate limit, a disconnected mailbox) leaves the draft id in
place: the next pass tries again. Several workers may run this at once: deleting is idempotent
and the event has a dedup key.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from html import escape

from sqlalchemy import select, update

from cadence.app import App
from core.mailbox import DraftNotFound, MailboxError, PermanentError
from core.vocabulary import EventKind, MailboxHealth, TaskState
from store.events import record
from store.models import Enrollment, MailboxRow, Message, Task
from store.queue.claims import draft_ref

log = logging.getLogger("cadence.delivery")

STALE_MARK = "[STALE - do not send] "  # subject prefix of a draft the provider would not delete
BATCH = 100


@dataclass(frozen=True)
class _Stale:
    task_id: int
    message_id: int
    mailbox_id: int
    campaign_id: int
    enrollment_id: int
    contact_id: int
    to_address: str
    reason: str


def withdraw_stale_drafts(app: App, *, message_ids: list[int] | None = None, limit: int = BATCH) -> list[int]:
    """Withdraw the drafts of stale tasks still in the reps' mailboxes (only `message_ids` when
    given), at most `limit` of them. Returns the message ids whose drafts left Drafts or were marked."""
    with app.db.session(readonly=True) as session:
        query = (select(Task.id, Message, Enrollment, MailboxRow)
                 .join(Message, Message.id == Task.message_id)
                 .join(Enrollment, Enrollment.id == Message.enrollment_id)
                 .join(MailboxRow, MailboxRow.id == Message.mailbox_id)
                 .where(Task.state == TaskState.STALE.value, Message.provider_draft_id.is_not(None),
                        MailboxRow.health == MailboxHealth.CONNECTED.value)
                 .order_by(Task.id).limit(limit))
        if message_ids is not None:
            query = query.where(Message.id.in_(message_ids))
        found = []
        for task_id, message, enrollment, box in session.execute(query).all():
            found.append((_Stale(task_id, message.id, box.id, message.campaign_id, enrollment.id,
                                 enrollment.contact_id, message.to_address,
                                 enrollment.end_reason or "the sequence ended"),
                          draft_ref(message), message.subject or "", message.text or "", box))
    done: list[int] = []
    for stale, draft, subject, text, box in found:
        how = _withdraw(app, box, draft, stale, subject, text)
        if how is None:
            continue
        now = app.clock.now()
        with app.db.session(immediate=True) as session:
            marked = how.startswith("is marked")  # a marked draft keeps its link: it is still there
            changed = session.execute(update(Message).where(
                Message.id == stale.message_id, Message.provider_draft_id == draft.draft_id).values(
                provider_draft_id=None, web_link=draft.web_link if marked else None, updated_at=now)).rowcount
            if changed:
                record(session, EventKind.DRAFT_WITHDRAWN, now,
                       f"task {stale.task_id}: the draft to {stale.to_address} {how} ({stale.reason})",
                       level="warning", campaign_id=stale.campaign_id, enrollment_id=stale.enrollment_id,
                       message_id=stale.message_id, contact_id=stale.contact_id, mailbox_id=stale.mailbox_id,
                       data={"task_id": stale.task_id, "reason": stale.reason, "how": how},
                       dedup_key=f"draft_withdrawn:{stale.message_id}:{draft.draft_id}")
                done.append(stale.message_id)
    return done


def _withdraw(app: App, box: MailboxRow, draft, stale: _Stale, subject: str, text: str) -> str | None:
    """Delete the draft (or mark it, where the provider refuses); what was done, or None to retry later."""
    try:
        mailbox = app.mailbox(box)
        mailbox.delete_draft(draft)
        return f"was withdrawn from the Drafts of {box.address}"
    except DraftNotFound:
        return f"was no longer in the Drafts of {box.address}"
    except PermanentError as refused:
        try:
            note = f"This draft is stale ({stale.reason}); do not send it."
            mailbox.update_draft(draft, subject=STALE_MARK + subject, text_body=f"{note}\n\n{text}",
                                 html_body=f"<p><strong>{escape(note)}</strong></p>"
                                           + "".join(f"<p>{escape(p)}</p>" for p in text.split("\n\n")))
            return (f"is marked {STALE_MARK.strip()!r} in the Drafts of {box.address} (it could not be "
                    f"deleted: {refused.reason})")
        except DraftNotFound:
            return f"was no longer in the Drafts of {box.address}"
        except MailboxError as failed:
            log.warning("could not delete or mark the stale draft of task %s: %s", stale.task_id, failed.reason)
            return None
    except MailboxError as failed:  # may pass: tried again at the next pass
        log.warning("could not withdraw the stale draft of task %s yet: %s", stale.task_id, failed.reason)
        return None
    except Exception as exc:  # a connector bug must not stop the others
        log.warning("withdrawing the stale draft of task %s failed: %s: %s", stale.task_id,
                    type(exc).__name__, exc)
        return None
