"""Reading and writing a campaign's definition (campaign options + steps rows).

Reading works on an ORM session or a Core connection alike (Core statements over `store.tables`),
so the read side can run without the ORM; writing needs the ORM session of a unit of work.
"""
from __future__ import annotations

from datetime import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from core.campaign import CampaignSpec, spec_from_dict, spec_to_dict
from store.tables import campaigns, steps

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Session

    from store.models import Campaign


def write_spec(session: Session, campaign: Campaign, spec: CampaignSpec) -> None:
    from sqlalchemy import delete

    from store.models import Step

    data = spec_to_dict(spec)
    steps_data = data.pop("steps")
    campaign.options = data
    session.execute(delete(Step).where(Step.campaign_id == campaign.id))
    session.add_all(Step(campaign_id=campaign.id, position=s["position"], day=s["day"], action=s["action"],
                         send=s["send"], time=s["time"], thread=s["thread"], subject=s["subject"], body=s["body"])
                    for s in steps_data)


def read_spec(session: Session | Connection, campaign: Any) -> CampaignSpec:
    """The spec of `campaign` (an ORM Campaign or a `campaigns` row: its `id` and `options`)."""
    c = steps.c
    rows = session.execute(select(c.position, c.day, c.action, c.send, c.body, c.subject, c.thread, c.time)
                           .where(c.campaign_id == campaign.id).order_by(c.position)).all()
    data = dict(campaign.options)
    data["steps"] = [row._asdict() for row in rows]
    return spec_from_dict(data)


def find_campaign_id(session: Session | Connection, name: str) -> int | None:
    """The id of the campaign named `name`: exact name first, then the one name equal to it
    case-insensitively; None otherwise."""
    found = session.scalar(select(campaigns.c.id).where(campaigns.c.name == name))
    if found is None:
        wanted = name.strip().lower()
        matches = [cid for cid, stored in session.execute(select(campaigns.c.id, campaigns.c.name))
                   if stored.lower() == wanted]
        found = matches[0] if len(matches) == 1 else None
    return found


def find_campaign(session: Session, name: str) -> Campaign | None:
    """The ORM Campaign named `name` (see `find_campaign_id`), for a unit of work that changes it."""
    from store.models import Campaign

    campaign_id = find_campaign_id(session, name)
    return None if campaign_id is None else session.get(Campaign, campaign_id)


def campaign_row(session: Session | Connection, campaign_id: int) -> Any:
    """The `campaigns` row of `campaign_id` (attributes as an ORM Campaign's), or None."""
    return session.execute(select(campaigns).where(campaigns.c.id == campaign_id)).first()


def parse_hhmm(value: str | None) -> time | None:
    return time.fromisoformat(value) if value else None
