"""The read side: every figure and list the CLI, Slack and the web app show, each computed here once.

Results are plain frozen dataclasses or JSON-ready dicts (no ORM rows, no open session), so an
interface only renders them. Who may see what (`people`): reps their own campaigns and tasks,
managers their team's, admins all.

- people: `Viewer`, `viewer_by_rep_id`, `viewer_by_email`, `viewer_by_slack_id`, `rep_by_id`;
  `CampaignRef`, `visible_campaigns`, `visible_campaign`, `find_campaign`, `campaign_for_control`
- status: `campaign_status` (by name), `campaign_status_by_id`, `status_of`, `delivery_kpis`,
  `list_campaigns`, `campaign_logs` (KPIs by the one definition, `core.kpis.DeliveryKpis`)
- tasks: `TaskView`, `TaskDetail`, `TaskPage`, `list_tasks`, `open_tasks`, `count_open_tasks`,
  `task_detail`, `task_owner_id`
- digest: `Digest`, `DigestRow`, `Kpis`, `build_digest`, `build_digest_for`
- mailboxes: `list_mailboxes`
- events: `EventNotice`, `event_notice`, `event_ids_after`
- explain: `explain_contact` (one person's steps and what decided each, by `core.explain`)
- backlog: `held_back_of` (deferred messages by cause, when the backlog clears, a scheduled start), `event_cause`
- logs: `read_log` (filtered by level, cause, contact, time), `collapse`, `summarize`
"""
from __future__ import annotations

import importlib

# Each name is loaded from its module on first use: importing one read (status for `cadence
# status`) does not load every other read and what it needs.
_NAMES = {
    "digest": ("Digest", "DigestRow", "Kpis", "build_digest", "build_digest_for"),
    "events": ("EventNotice", "event_ids_after", "event_notice"),
    "mailboxes": ("list_mailboxes",),
    "people": ("CampaignRef", "RepRef", "Viewer", "campaign_for_control", "find_campaign", "rep_by_id",
               "viewer_by_email", "viewer_by_rep_id", "viewer_by_slack_id", "visible_campaign", "visible_campaigns"),
    "status": ("campaign_logs", "campaign_status", "campaign_status_by_id", "delivery_kpis", "list_campaigns",
               "status_of"),
    "tasks": ("TaskDetail", "TaskPage", "TaskView", "count_open_tasks", "list_tasks", "open_tasks", "task_detail",
              "task_owner_id"),
}
_WHERE = {name: module for module, names in _NAMES.items() for name in names}


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "CampaignRef", "Digest", "DigestRow", "EventNotice", "Kpis", "RepRef", "TaskDetail", "TaskPage", "TaskView",
    "Viewer", "build_digest", "build_digest_for", "campaign_for_control", "campaign_logs", "campaign_status",
    "campaign_status_by_id", "count_open_tasks", "delivery_kpis", "event_ids_after", "event_notice",
    "find_campaign", "list_campaigns", "list_mailboxes", "list_tasks", "open_tasks", "rep_by_id", "status_of",
    "task_detail", "task_owner_id", "viewer_by_email", "viewer_by_rep_id", "viewer_by_slack_id",
    "visible_campaign", "visible_campaigns",
]
