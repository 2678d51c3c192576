"""HTTP calls to Microsoft Graph for one mailbox.

Every request carries the bearer token of the current batch and `Prefer: IdType="ImmutableId"`,
so message ids stay the same when a draft moves to Sent Items. At most `max_concurrency`
requests per mailbox are in flight at once (Exchange allows 4). Refused calls (429) wait for
`Retry-After` and are tried again; failed calls (5xx, timeouts, dropped connections) are tried
again only when the caller says the call is safe to repeat, and a send never is.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from core.mailbox import (
    Disconnected,
    DraftNotFound,
    MailboxError,
    PermanentError,
    RateLimited,
    TransientError,
)

from .identity import TokenSource

IMMUTABLE_IDS = 'IdType="ImmutableId"'
MAX_RETRY_AFTER = 120.0  # a longer wait goes back to the caller as RateLimited instead of blocking

# Graph error codes -> the exception a caller gets, when the code alone says what happened
# (the django-anymail way: one table, not a chain of ifs). Codes not listed fall back on the
# HTTP status (STATUS_ERRORS).
GRAPH_ERROR_CODES: dict[str, type[MailboxError]] = {
    "ErrorItemNotFound": DraftNotFound,
    "ErrorInvalidPropertyUpdateSentMessage": DraftNotFound,  # the draft was sent meanwhile
    "ErrorInvalidRecipients": PermanentError,
    "ErrorInvalidRecipientsException": PermanentError,
    "ErrorMessageSizeExceeded": PermanentError,
    "ErrorInvalidInternetMessageId": PermanentError,
    "InvalidInternetMessageHeader": PermanentError,
    "InvalidInternetMessageHeaderCollection": PermanentError,
    "ErrorSendAsDenied": PermanentError,
    "ErrorAccessDenied": Disconnected,  # the consent lacks Mail.ReadWrite / Mail.Send
    "Authorization_RequestDenied": Disconnected,
    "MailboxNotEnabledForRESTAPI": Disconnected,
    "InvalidAuthenticationToken": Disconnected,
    "ErrorQuotaExceeded": TransientError,  # the mailbox is full until the rep cleans up
    "ErrorMailboxStoreUnavailable": TransientError,
    "ErrorServerBusy": TransientError,
    "ApplicationThrottled": RateLimited,
    "TooManyRequests": RateLimited,
}
STATUS_ERRORS: dict[int, type[MailboxError]] = {
    400: PermanentError, 401: Disconnected, 403: Disconnected, 404: DraftNotFound,
    409: TransientError, 412: TransientError, 429: RateLimited,
}


@dataclass(frozen=True)
class GraphFailure:
    """A non-2xx answer from Graph, as Graph described it."""

    status: int
    code: str
    message: str
    retry_after: float | None

    def describe(self) -> str:
        return f"Graph answered {self.status} {self.code}: {self.message}".rstrip(": ")

    def as_error(self) -> MailboxError:
        kind = GRAPH_ERROR_CODES.get(self.code) or STATUS_ERRORS.get(self.status) or (
            TransientError if self.status >= 500 else PermanentError)
        if issubclass(kind, TransientError):
            return kind(self.describe(), self.retry_after)
        return kind(self.describe())


class GraphCallFailed(Exception):
    """Raised by `GraphBatch.call` with the failure, for callers that map it themselves."""

    def __init__(self, failure: GraphFailure):
        super().__init__(failure.describe())
        self.failure = failure


class ConnectionLost(Exception):
    """The request may have reached Graph, but no answer came back (timeout, reset)."""


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def failure_of(response: requests.Response) -> GraphFailure:
    code, message = "", response.reason or ""
    try:
        error = response.json().get("error") or {}
        code, message = str(error.get("code") or ""), str(error.get("message") or message)
    except (ValueError, AttributeError):
        pass
    return GraphFailure(response.status_code, code, message, retry_after_seconds(response.headers.get("Retry-After")))


_SEMAPHORES: dict[str, threading.BoundedSemaphore] = {}
_SEMAPHORES_LOCK = threading.Lock()


def mailbox_semaphore(address: str, limit: int) -> threading.BoundedSemaphore:
    """One semaphore per mailbox address in this process, shared by every client of it."""
    with _SEMAPHORES_LOCK:
        return _SEMAPHORES.setdefault(address.lower(), threading.BoundedSemaphore(limit))


def new_session() -> requests.Session:
    """A Session that never retries by itself: retrying is decided per call here."""
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class GraphClient:
    def __init__(self, graph_url: str, tokens: TokenSource, *, address: str, session: requests.Session | None,
                 sleep: Callable[[float], None], timeout: float, max_concurrency: int = 4, max_attempts: int = 4):
        parts = urlsplit(graph_url or "")
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise ValueError(f"graph_url (CADENCE_GRAPH_API_URL) must be an http(s) URL, got {graph_url!r}")
        self.root = graph_url.rstrip("/")
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.tokens = tokens
        self.session = session or new_session()
        self.sleep = sleep
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.semaphore = mailbox_semaphore(address, max_concurrency)

    def batch(self) -> "GraphBatch":
        """Start a batch of calls: one token acquisition (msal's silent flow) for all of them."""
        return GraphBatch(self, self.tokens.access_token())


class GraphBatch:
    def __init__(self, client: GraphClient, token: str):
        self.client = client
        self.token = token
        self._refreshed = False

    def url(self, path_or_link: str) -> str:
        if path_or_link.startswith(("https://", "http://")):
            # nextLink / deltaLink come back absolute; the token goes to our Graph host only.
            if not path_or_link.startswith(self.client.origin + "/"):
                raise TransientError(f"Graph returned a link to another host: {path_or_link[:80]}")
            return path_or_link
        return self.client.root + path_or_link

    def call(self, method: str, path: str, *, params: dict[str, str] | None = None, json: Any = None,
             prefer: Iterable[str] = (), repeatable: bool = True, retry_throttled: bool = True) -> requests.Response:
        """Make one Graph call and return its 2xx response.

        `repeatable`: a failed attempt (5xx, timeout, dropped connection) may be made again.
        Otherwise a 5xx raises `GraphCallFailed` and a lost answer `ConnectionLost`.
        `retry_throttled`: a 429 waits `Retry-After` and tries again (a 429 was not carried out).
        Other failures raise `GraphCallFailed`; an access token Graph refuses twice, `Disconnected`.
        """
        client = self.client
        headers = {"Prefer": ", ".join([IMMUTABLE_IDS, *prefer]), "Accept": "application/json"}
        attempt = 0
        while True:
            attempt += 1
            try:
                with client.semaphore:
                    response = client.session.request(
                        method, self.url(path), params=params, json=json, timeout=client.timeout,
                        headers={**headers, "Authorization": f"Bearer {self.token}"})
            except (requests.ConnectionError, requests.Timeout) as lost:
                if repeatable and attempt < client.max_attempts:
                    client.sleep(_backoff(attempt))
                    continue
                if repeatable:
                    raise TransientError(f"Graph could not be reached: {lost}") from None
                raise ConnectionLost(str(lost)) from None
            if response.status_code < 300:
                return response
            failure = failure_of(response)
            if response.status_code == 401 and not self._refreshed:
                # A 401 was not carried out: refresh the token once and try again.
                self._refreshed = True
                self.token = client.tokens.access_token(force_refresh=True)
                attempt -= 1
                continue
            if response.status_code == 429 and retry_throttled and attempt < client.max_attempts:
                wait = failure.retry_after if failure.retry_after is not None else _backoff(attempt)
                if wait <= MAX_RETRY_AFTER:
                    client.sleep(wait)
                    continue
            if response.status_code >= 500 and repeatable and attempt < client.max_attempts:
                client.sleep(_backoff(attempt))
                continue
            raise GraphCallFailed(failure)

    def json(self, method: str, path: str, **options) -> dict[str, Any]:
        """`call`, with every failure turned into our errors through the tables above."""
        try:
            response = self.call(method, path, **options)
        except GraphCallFailed as failed:
            raise failed.failure.as_error() from None
        return response.json() if response.content else {}

    def content(self, path: str) -> bytes:
        """The bytes of a GET (`/me/messages/{id}/$value`: the message's MIME), failures as in `json`."""
        try:
            return self.call("GET", path).content
        except GraphCallFailed as failed:
            raise failed.failure.as_error() from None


def _backoff(attempt: int) -> float:
    return float(min(2 ** (attempt - 1), 30))
