"""A replayed Slack request inside the signature window is acknowledged but not acted on twice.

Slack's v0 signature (checked by bolt before this runs) proves a request is authentic and at most
five minutes old, but the same bytes can be sent again within those minutes. This guard remembers
every verified request by timestamp + signature, and every Events API delivery by `event_id`
(Slack's own retries are re-signed but keep the event id), for ten minutes. The memory is per
process: with several `cadence serve` processes behind one URL, a replay reaching another process
is not caught (documented in docs/slack.md).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from slack_bolt import BoltRequest, BoltResponse

log = logging.getLogger("cadence.slack.replay")

WINDOW_SECONDS = 600.0  # the 5 minutes a timestamp may be old, plus 5 it may be early


class ReplayGuard:
    def __init__(self, window_seconds: float = WINDOW_SECONDS, monotonic: Callable[[], float] = time.monotonic):
        self.window, self._now = window_seconds, monotonic
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def first_time(self, keys: list[str]) -> bool:
        """Record `keys`; False when any of them was recorded within the window."""
        now = self._now()
        with self._lock:
            if len(self._seen) > 1000:
                self._seen = {k: until for k, until in self._seen.items() if until > now}
            if any(self._seen.get(k, 0.0) > now for k in keys):
                return False
            for k in keys:
                self._seen[k] = now + self.window
            return True

    def middleware(self, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]) -> BoltResponse:
        """Bolt global middleware; registered after bolt's own signature check."""
        if req.mode == "socket_mode":
            return next()  # no signature: Slack delivers each envelope once per connection
        keys = []
        signature = (req.headers.get("x-slack-signature") or [""])[0]
        timestamp = (req.headers.get("x-slack-request-timestamp") or [""])[0]
        if signature:
            keys.append(f"sig:{timestamp}:{signature}")
        event_id = req.body.get("event_id") if isinstance(req.body, dict) else None
        if event_id:
            keys.append(f"event:{event_id}")
        if keys and not self.first_time(keys):
            log.warning("replayed Slack request ignored (timestamp %s, event %s)", timestamp, event_id)
            return BoltResponse(status=200, body="")
        return next()
