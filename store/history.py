"""What a contact did at any time, in any campaign, finished or not: the history exclusions read."""
from __future__ import annotations

from typing import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.vocabulary import EnrollmentState, EventKind
from store.bulk import IN_LIST, among
from store.models import Enrollment, Event


def replied_contacts(session: Session, contact_ids: Iterable[int]) -> set[int]:
    """The contacts of `contact_ids` who ever replied: a `replied` event in any campaign (its
    sequence finished or not) or a sequence that ended because they replied."""
    wanted = sorted(set(contact_ids))
    replied: set[int] = set()
    for start in range(0, len(wanted), IN_LIST):
        chunk = wanted[start:start + IN_LIST]
        replied.update(session.scalars(select(Event.contact_id).where(
            Event.kind == EventKind.REPLIED.value, among(session, Event.contact_id, chunk)).distinct()))
        replied.update(session.scalars(select(Enrollment.contact_id).where(
            among(session, Enrollment.contact_id, chunk), Enrollment.state == EnrollmentState.REPLIED.value).distinct()))
    return replied
