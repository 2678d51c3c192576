"""What the web app's launch form offers one viewer for one campaign (`cadence enroll`'s choices)."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from cadence.app import App
from cadence.services.reads.people import Viewer
from store.campaigns import read_spec
from store.models import Campaign, Contact, MailboxRow, Rep

MAX_COMPANIES = 500


@dataclass(frozen=True)
class LaunchOptions:
    """`mailboxes`: addresses the viewer may send from (their team's; an admin: all); `owners`:
    (email, label) of the reps whose contacts they may pick; `companies`: distinct contact
    companies (at most MAX_COMPANIES, by name); `contacts`: how many contacts there are;
    `asks_for_send_time`: the first step is `choose_at_launch` (a send time is required)."""

    mailboxes: tuple[str, ...]
    owners: tuple[tuple[str, str], ...]
    companies: tuple[str, ...]
    contacts: int
    asks_for_send_time: bool


def launch_options(app: App, viewer: Viewer, campaign_id: int) -> LaunchOptions | None:
    """The choices for enrolling people into campaign `campaign_id`; None when it does not exist."""
    with app.db.session(readonly=True) as session:
        campaign = session.get(Campaign, campaign_id)
        if campaign is None:
            return None
        boxes = select(MailboxRow.address).order_by(MailboxRow.address)
        reps = select(Rep.email, Rep.name).order_by(Rep.email)
        if viewer.team_ids is not None:
            boxes = boxes.where(MailboxRow.owner_id.in_(sorted(viewer.team_ids)))
            reps = reps.where(Rep.id.in_(sorted(viewer.team_ids)))
        companies = session.scalars(select(Contact.company).where(Contact.company.is_not(None), Contact.company != "")
                                    .group_by(Contact.company).order_by(Contact.company).limit(MAX_COMPANIES))
        return LaunchOptions(tuple(session.scalars(boxes)),
                             tuple((email, name or email) for email, name in session.execute(reps)),
                             tuple(companies), session.scalar(select(func.count()).select_from(Contact)) or 0,
                             read_spec(session, campaign).asks_for_send_time)
