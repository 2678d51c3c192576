"""Which Cadence person a Slack user is.

A Slack user is a rep when `Rep.slack_id` is theirs, or when the email of their Slack profile
(users.info, which shows it with the users:read.email scope) is a rep's email; that link is then
stored on the rep. What each person may see and do is decided by the read side
(`cadence.services.reads.people`): reps their own tasks and campaigns, managers their team's,
admins all. Every check reads the database at the time of the action; nothing in a Slack payload
is trusted beyond "which object is asked about".
"""
from __future__ import annotations

import logging
import threading
import time

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from cadence.app import App
from cadence.services.directory import link_slack_account
from cadence.services.reads.people import Viewer, viewer_by_slack_id

log = logging.getLogger("cadence.slack.access")


def refuse(viewer: Viewer | None, slack_user: str, what: str, target: str) -> None:
    """Log a refused action (who, what, on which object) for the operator."""
    who = viewer.email if viewer else "unknown user"
    log.warning("refused: Slack user %s (%s) may not %s %s", slack_user, who, what, target)


class Directory:
    """Slack user id → Viewer. Profile emails are cached (default 10 min); reps and teams never are."""

    def __init__(self, app: App, client: WebClient, ttl_seconds: float = 600.0):
        self.app, self.client, self.ttl = app, client, ttl_seconds
        self._emails: dict[str, tuple[str | None, float]] = {}
        self._lock = threading.Lock()

    def viewer(self, slack_user_id: str) -> Viewer | None:
        """The rep for this Slack user, or None for someone Cadence does not know."""
        if not slack_user_id:
            return None
        viewer = viewer_by_slack_id(self.app, slack_user_id)
        if viewer is not None:
            return viewer
        email = self._email_of(slack_user_id)
        return link_slack_account(self.app, slack_user_id, email) if email else None

    def _email_of(self, slack_user_id: str) -> str | None:
        now = time.monotonic()
        with self._lock:
            cached = self._emails.get(slack_user_id)
            if cached is not None and cached[1] > now:
                return cached[0]
        try:
            info = self.client.users_info(user=slack_user_id)
            user = info["user"]
            email = None if user.get("is_bot") or user.get("deleted") else (user.get("profile") or {}).get("email")
        except SlackApiError as error:
            log.warning("users.info for %s failed: %s", slack_user_id, error.response.get("error"))
            return None
        with self._lock:
            if len(self._emails) > 10_000:
                self._emails.clear()
            self._emails[slack_user_id] = (email, now + self.ttl)
        return email


def parse_id(value: object) -> int | None:
    """An object id from a payload: a positive integer, or None."""
    text = str(value or "").strip()
    return int(text) if text.isdigit() and len(text) < 18 else None
