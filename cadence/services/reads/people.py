"""Who is who, and which campaigns and tasks each person may see.

Reps see their own tasks and campaigns, managers those of the reps whose `manager_id` is theirs
(and their own), admins all. A campaign belongs to the reps who own the mailboxes its people are
enrolled with. Every answer reads the database at the time of the call (only the owners of a
campaign are cached, per `audience_version`); Slack, the web app and the CLI share these rules.
"""
from __future__ import annotations

import difflib
import logging
import threading
import weakref
from dataclasses import dataclass

from sqlalchemy import func, select

from cadence.app import App
from cadence.services.errors import UserError
from core.addresses import stored_address
from core.vocabulary import CampaignState
from store.models import Campaign, Enrollment, MailboxRow, Rep

log = logging.getLogger("cadence.access")

ACTIVE_FIRST = {CampaignState.SENDING.value: 0, CampaignState.SCHEDULED.value: 1, CampaignState.PAUSED.value: 2,
                CampaignState.PREPARING.value: 3, CampaignState.PREPARED.value: 4, CampaignState.FAILED.value: 5,
                CampaignState.DRAFT.value: 6, CampaignState.FINISHED.value: 7, CampaignState.STOPPED.value: 8}


@dataclass(frozen=True)
class RepRef:
    """A rep as the interfaces need it: id, email (lower case), display name, role, Slack id."""

    id: int
    email: str
    name: str | None
    role: str  # "rep" | "manager" | "admin"
    slack_id: str | None
    timezone: str | None

    @property
    def label(self) -> str:
        return self.name or self.email


@dataclass(frozen=True)
class Viewer:
    """A person using Cadence (in Slack, on the web), with the reps whose work they may see and act on.

    `team_ids` is None for an admin (everyone), else the viewer's own id and their reports' ids.
    `slack_id` is the Slack user asking, when the request came from Slack.
    """

    rep_id: int
    email: str
    name: str | None
    role: str
    timezone: str | None
    team_ids: frozenset[int] | None
    has_reports: bool
    slack_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.team_ids is None

    @property
    def rep_ids(self) -> list[int] | None:
        """The reps whose tasks this viewer sees, sorted; None means everyone."""
        return None if self.team_ids is None else sorted(self.team_ids)

    @property
    def gets_digest(self) -> bool:
        return self.role in ("manager", "admin") or self.has_reports

    def may_act_for(self, rep_id: int | None) -> bool:
        return rep_id is not None and (self.team_ids is None or rep_id in self.team_ids)

    def may_see_campaign(self, owners: frozenset[int]) -> bool:
        return self.team_ids is None or bool(owners & self.team_ids)

    def may_control_campaign(self, owners: frozenset[int]) -> bool:
        """Pause/resume touches everyone enrolled: only when every sending mailbox is the viewer's team's."""
        return self.team_ids is None or (bool(owners) and owners <= self.team_ids)


@dataclass(frozen=True)
class CampaignRef:
    """A campaign as lists show it: id, name, state and the reps owning its sending mailboxes."""

    id: int
    name: str
    state: str
    owner_ids: frozenset[int]


def _rep_ref(rep: Rep) -> RepRef:
    return RepRef(rep.id, rep.email, rep.name, rep.role, rep.slack_id, rep.timezone)


def viewer_of(session, rep: Rep, slack_id: str | None = None) -> Viewer:
    """The Viewer of `rep` (a store row) inside an open session."""
    reports = set(session.scalars(select(Rep.id).where(Rep.manager_id == rep.id)))
    team = None if rep.role == "admin" else frozenset({rep.id, *reports})
    return Viewer(rep.id, rep.email, rep.name, rep.role, rep.timezone, team, bool(reports), slack_id)


def viewer_by_rep_id(app: App, rep_id: int, *, slack_id: str | None = None) -> Viewer | None:
    """The Viewer of rep `rep_id`, or None when there is no such rep."""
    with app.db.session(readonly=True) as session:
        rep = session.get(Rep, rep_id)
        return viewer_of(session, rep, slack_id) if rep is not None else None


def viewer_by_email(app: App, email: str) -> Viewer | None:
    """The Viewer of the rep with this email (case-insensitive), or None (e.g. for a web sign-in)."""
    with app.db.session(readonly=True) as session:
        rep = session.scalar(select(Rep).where(Rep.email == stored_address(email)))
        return viewer_of(session, rep) if rep is not None else None


def viewer_by_slack_id(app: App, slack_id: str) -> Viewer | None:
    """The Viewer of the rep linked to Slack user `slack_id` (`Rep.slack_id`), or None."""
    if not slack_id:
        return None
    with app.db.session(readonly=True) as session:
        rep = session.scalar(select(Rep).where(Rep.slack_id == slack_id))
        return viewer_of(session, rep, slack_id) if rep is not None else None


def rep_by_id(app: App, rep_id: int) -> RepRef | None:
    """One rep, or None."""
    with app.db.session(readonly=True) as session:
        rep = session.get(Rep, rep_id)
        return _rep_ref(rep) if rep is not None else None


def who_is(viewer: Viewer) -> str:
    """How logs name the person asking: their Slack user when they came through Slack."""
    return f"Slack user {viewer.slack_id}" if viewer.slack_id else f"rep {viewer.rep_id}"


def refuse(viewer: Viewer | None, who: str, what: str, target: str) -> None:
    """Log a refused action (who, what, on which object) for the operator."""
    email = viewer.email if viewer else "unknown user"
    log.warning("refused: %s (%s) may not %s %s", who, email, what, target)


# -- campaigns ---------------------------------------------------------------------------------

class _OwnersCache:
    """The reps owning the mailboxes a campaign sends from, cached per campaign `audience_version`
    (bumped by every enrollment change), so a 100k-people campaign is scanned once per change.
    One cache per Database (tests run many databases in one process)."""

    def __init__(self):
        self._by_db: "weakref.WeakKeyDictionary[object, dict[int, tuple[int, frozenset[int]]]]" = (
            weakref.WeakKeyDictionary())
        self._lock = threading.Lock()
        # One scan per campaign at a time: viewers arriving together after a change wait for it
        # instead of each scanning the campaign's enrollments.
        self._scanning: "weakref.WeakKeyDictionary[object, dict[int, threading.Lock]]" = weakref.WeakKeyDictionary()

    def _cached(self, db, campaign: Campaign) -> frozenset[int] | None:
        with self._lock:
            cached = self._by_db.setdefault(db, {}).get(campaign.id)
        return cached[1] if cached is not None and cached[0] == campaign.audience_version else None

    def of(self, db, session, campaign: Campaign) -> frozenset[int]:
        owners = self._cached(db, campaign)
        if owners is not None:
            return owners
        with self._lock:
            scanning = self._scanning.setdefault(db, {}).setdefault(campaign.id, threading.Lock())
        with scanning:
            owners = self._cached(db, campaign)
            if owners is not None:
                return owners
            mailboxes = select(Enrollment.mailbox_id).where(Enrollment.campaign_id == campaign.id).distinct()
            owners = frozenset(session.scalars(select(MailboxRow.owner_id).where(MailboxRow.id.in_(mailboxes))
                                               .distinct()))
            with self._lock:
                self._by_db.setdefault(db, {})[campaign.id] = (campaign.audience_version, owners)
        return owners


_OWNERS = _OwnersCache()


def _ref(app: App, session, campaign: Campaign) -> CampaignRef:
    return CampaignRef(campaign.id, campaign.name, campaign.state, _OWNERS.of(app.db, session, campaign))


def _visible(app: App, session, viewer: Viewer) -> list[CampaignRef]:
    refs = [_ref(app, session, c) for c in session.scalars(select(Campaign))]
    shown = [r for r in refs if viewer.may_see_campaign(r.owner_ids)]
    return sorted(shown, key=lambda r: (ACTIVE_FIRST.get(r.state, 9), r.name.casefold()))


def visible_campaigns(app: App, viewer: Viewer) -> list[CampaignRef]:
    """Campaigns the viewer may see: sending ones first (then scheduled, paused …), then by name."""
    with app.db.session(readonly=True) as session:
        return _visible(app, session, viewer)


def visible_campaign(app: App, viewer: Viewer, campaign_id: int) -> CampaignRef | None:
    """Campaign `campaign_id` when the viewer may see it; None when it is missing or not theirs
    (the two are not told apart, so a web page answers 404 for both)."""
    with app.db.session(readonly=True) as session:
        campaign = session.get(Campaign, campaign_id)
        if campaign is None:
            return None
        ref = _ref(app, session, campaign)
        return ref if viewer.may_see_campaign(ref.owner_ids) else None


def find_campaign(app: App, viewer: Viewer, text: str) -> CampaignRef:
    """The visible campaign `text` names: case-insensitively, or by a unique prefix.

    UserError otherwise, suggesting the closest visible names. A campaign the viewer may not see
    is reported exactly as a missing one, so names do not leak.
    """
    wanted = " ".join(text.strip().strip("\"'“”‘’").split())
    if not wanted:
        raise UserError("name a campaign, e.g. `/cadence status Q4 outbound`")
    with app.db.session(readonly=True) as session:
        campaigns = _visible(app, session, viewer)
        folded = wanted.casefold()
        exact = [c for c in campaigns if c.name.casefold() == folded]
        if exact:
            return exact[0]
        prefixed = [c for c in campaigns if c.name.casefold().startswith(folded)]
        if len(prefixed) == 1:
            return prefixed[0]
        if len(prefixed) > 1:
            names = ", ".join(f"`{c.name}`" for c in prefixed[:5])
            raise UserError(f"\u201c{wanted}\u201d matches several campaigns: {names}. Which one?")
        hidden = session.scalar(select(Campaign.id).where(func.lower(Campaign.name) == folded))
    by_folded = {c.name.casefold(): c.name for c in campaigns}
    close = difflib.get_close_matches(folded, list(by_folded), n=3, cutoff=0.5)
    if hidden is not None:
        refuse(viewer, who_is(viewer), "see campaign", repr(wanted))
    if close:
        names = ", ".join(f"`{by_folded[n]}`" for n in close)
        raise UserError(f"No campaign named \u201c{wanted}\u201d. Did you mean {names}?")
    raise UserError(f"No campaign named \u201c{wanted}\u201d among yours. `/cadence status` lists them.")


def campaign_for_control(app: App, viewer: Viewer, text: str, verb: str) -> CampaignRef:
    """The campaign `text` names when the viewer may `verb` (pause, resume …) it; UserError otherwise."""
    campaign = find_campaign(app, viewer, text)
    if not viewer.may_control_campaign(campaign.owner_ids):
        refuse(viewer, who_is(viewer), verb, f"campaign {campaign.name!r}")
        scope = "your own" if viewer.role == "rep" and not viewer.has_reports else "your team's"
        raise UserError(f"You may not {verb} \u201c{campaign.name}\u201d: it also sends from mailboxes "
                        f"that are not {scope}. Ask its owner or an admin.")
    return campaign
