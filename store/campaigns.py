"""Reading and writing a campaign's definition (campaign options + steps rows)."""
from __future__ import annotations

from datetime import time

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.campaign import CampaignSpec, spec_from_dict, spec_to_dict
from store.models import Campaign, Step


def write_spec(session: Session, campaign: Campaign, spec: CampaignSpec) -> None:
    data = spec_to_dict(spec)
    steps = data.pop("steps")
    campaign.options = data
    session.execute(delete(Step).where(Step.campaign_id == campaign.id))
    session.add_all(Step(campaign_id=campaign.id, position=s["position"], day=s["day"], action=s["action"],
                         send=s["send"], time=s["time"], thread=s["thread"], subject=s["subject"], body=s["body"])
                    for s in steps)


def read_spec(session: Session, campaign: Campaign) -> CampaignSpec:
    steps = session.scalars(select(Step).where(Step.campaign_id == campaign.id).order_by(Step.position)).all()
    data = dict(campaign.options)
    data["steps"] = [{"position": s.position, "day": s.day, "action": s.action, "send": s.send, "body": s.body,
                      "subject": s.subject, "thread": s.thread, "time": s.time} for s in steps]
    return spec_from_dict(data)


def find_campaign(session: Session, name: str) -> Campaign | None:
    """Exact name first, then case-insensitive."""
    found = session.scalar(select(Campaign).where(Campaign.name == name))
    if found is None:
        matches = [c for c in session.scalars(select(Campaign)).all() if c.name.lower() == name.strip().lower()]
        found = matches[0] if len(matches) == 1 else None
    return found


def parse_hhmm(value: str | None) -> time | None:
    return time.fromisoformat(value) if value else None
