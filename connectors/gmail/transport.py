"""How the Gmail client reaches Google: one HTTP attempt per call, and a per-user quota bucket.

`googleapiclient` calls `http.request(uri, method, body, headers)` on an httplib2-shaped object.
Its default, httplib2, re-sends a request by itself when the connection drops before the
answer arrives (`httplib2.Http._conn_request`), so a `drafts.send` whose response is lost would
be attempted twice. `SingleAttemptHttp` serves the same interface from google-auth's
`AuthorizedSession` (requests, urllib3 retries at 0): every request goes out exactly once, and
the connector decides about retries itself.
"""
from __future__ import annotations

import threading
from typing import Callable

import httplib2
import requests
import urllib3.exceptions
from google.auth.credentials import Credentials
from google.auth.transport.requests import AuthorizedSession


class SingleAttemptHttp:
    """The `http` object for `googleapiclient.discovery.build`, with no transport-level retries.

    Token refresh (and one retry after a 401, which the server refused unprocessed) is google-auth's.
    """

    def __init__(self, credentials: Credentials, *, timeout: float):
        self.session = AuthorizedSession(credentials)
        self.timeout = timeout

    def request(self, uri: str, method: str = "GET", body: bytes | str | None = None,
                headers: dict[str, str] | None = None, redirections: int = 5,
                connection_type: object = None) -> tuple[httplib2.Response, bytes]:
        response = self.session.request(method, uri, data=body, headers=headers, timeout=self.timeout,
                                        allow_redirects=False)
        info = {name.lower(): value for name, value in response.headers.items()}
        info["status"] = str(response.status_code)
        info["reason"] = response.reason or ""
        return httplib2.Response(info), response.content

    def close(self) -> None:
        self.session.close()


def never_reached_server(error: BaseException) -> bool:
    """True when the request provably never left: the connection could not be opened at all."""
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return True
    cause = error.args[0] if error.args else None
    reason = getattr(cause, "reason", None)
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


# Quota units per call, from Google's "Usage limits" page for the Gmail API.
QUOTA_UNITS: dict[str, int] = {
    "drafts.create": 10,
    "drafts.delete": 10,
    "drafts.get": 5,
    "drafts.list": 5,
    "drafts.send": 100,
    "drafts.update": 15,
    "getProfile": 1,
    "history.list": 2,
    "messages.get": 5,
    "messages.list": 5,
    "messages.send": 100,
    "threads.get": 10,
}
DEFAULT_QUOTA_UNITS = 5


class QuotaBucket:
    """A token bucket of Gmail quota units for one user, refilled evenly over a minute.

    `take(units)` waits (with the injected `sleep`) until the units are there. Share one bucket
    between every `GmailMailbox` of the same address in a process.
    """

    def __init__(self, units_per_minute: int = 6000, *, sleep: Callable[[float], None],
                 monotonic: Callable[[], float]):
        if units_per_minute <= 0:
            raise ValueError(f"units_per_minute: must be positive, got {units_per_minute}")
        self.capacity = float(units_per_minute)
        self.rate = units_per_minute / 60.0  # units per second
        self._sleep, self._monotonic = sleep, monotonic
        self._lock = threading.Lock()
        self._available = self.capacity
        self._updated = monotonic()

    def take(self, units: int) -> float:
        """Take `units`, waiting as long as needed; returns the seconds waited."""
        units = min(float(units), self.capacity)
        waited = 0.0
        while True:
            with self._lock:
                now = self._monotonic()
                self._available = min(self.capacity, self._available + (now - self._updated) * self.rate)
                self._updated = now
                if self._available >= units:
                    self._available -= units
                    return waited
                wait = (units - self._available) / self.rate
            self._sleep(wait)
            waited += wait
