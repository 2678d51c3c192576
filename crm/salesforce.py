"""REST calls to one Salesforce org through simple-salesforce, the access token kept fresh.

Pages followed: REST API Developer Guide — "Query" and "Query More Results" (`nextRecordsUrl`),
"sObject Collections" (`composite/sobjects`, up to 200 records a call, `allOrNone: false`),
"Status Codes and Error Responses" (401 INVALID_SESSION_ID, 403 REQUEST_LIMIT_EXCEEDED) and
"Sforce-Limit-Info" (`api-usage=used/max`).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceRefusedRequest,
)

from crm import oauth
from crm.errors import ApiLimit, Refused, Transient
from crm.records import COLLECTION_LIMIT

API_VERSION = "60.0"
TIMEOUT = 60


@dataclass(frozen=True)
class Usage:
    """The org's API requests in the last 24 hours and its limit (from Sforce-Limit-Info)."""

    used: int
    limit: int

    @property
    def share(self) -> float:
        return self.used / self.limit if self.limit else 0.0


@dataclass(frozen=True)
class Saved:
    """One record's outcome in a collection call: `id` on success, else Salesforce's error."""

    ok: bool
    id: str | None
    error_code: str | None = None
    message: str | None = None


def _error_codes(exc: SalesforceError) -> list[str]:
    content = exc.content
    if isinstance(content, list):
        return [str(item.get("errorCode", "")) for item in content if isinstance(item, dict)]
    if isinstance(content, dict):
        return [str(content.get("errorCode") or content.get("error") or "")]
    return []


def _describe(exc: SalesforceError) -> str:
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return f"{content[0].get('errorCode')}: {content[0].get('message')}"
    return f"HTTP {exc.status}"


class SalesforceOrg:
    """One connected org. Thread-safe; every call refreshes the access token once on 401.

    Raises, from every call: `Disconnected` (refresh token refused), `ApiLimit`,
    `Transient` (5xx, timeout, dropped connection: the call may have taken effect), `Refused`.
    """

    def __init__(self, *, login_url: str, client_id: str, client_secret: str | None, refresh_token: str,
                 http: requests.Session | None = None, api_version: str = API_VERSION,
                 on_usage: Callable[[Usage], None] | None = None):
        self.login_url, self.client_id, self.client_secret = login_url, client_id, client_secret
        self.refresh_token = refresh_token
        self.http = http or requests.Session()
        self.api_version = api_version
        self.on_usage = on_usage
        self.usage: Usage | None = None
        self.tokens: oauth.Tokens | None = None
        self._sf: Salesforce | None = None
        self._lock = threading.Lock()

    # -- the session ----------------------------------------------------------------------

    def _client(self, renew: bool = False) -> Salesforce:
        with self._lock:
            if self._sf is None or renew:
                self.tokens = oauth.refresh(self.http, self.login_url, self.refresh_token,
                                            client_id=self.client_id, client_secret=self.client_secret)
                self._sf = Salesforce(instance_url=self.tokens.instance_url, session_id=self.tokens.access_token,
                                      version=self.api_version, session=self.http)
            return self._sf

    def _call(self, fn: Callable[[Salesforce], Any]) -> Any:
        renewed = False
        while True:
            sf = self._client()
            try:
                result = fn(sf)
            except SalesforceExpiredSession:  # 401 INVALID_SESSION_ID: the access token expired
                if renewed:
                    raise Transient("Salesforce refused a fresh access token (INVALID_SESSION_ID)") from None
                self._client(renew=True)
                renewed = True
                continue
            except SalesforceRefusedRequest as exc:
                self._note_usage(sf)
                if "REQUEST_LIMIT_EXCEEDED" in _error_codes(exc):
                    raise ApiLimit("the org's API request limit is exceeded (REQUEST_LIMIT_EXCEEDED)") from None
                raise Refused(f"Salesforce refused the request ({_describe(exc)})") from None
            except SalesforceGeneralError as exc:
                if exc.status >= 500:
                    raise Transient(f"Salesforce answered HTTP {exc.status}") from None
                raise Refused(f"Salesforce refused the request ({_describe(exc)})") from None
            except SalesforceError as exc:
                raise Refused(f"Salesforce refused the request ({_describe(exc)})") from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise Transient(f"no answer from Salesforce ({type(exc).__name__})") from None
            self._note_usage(sf)
            return result

    def _note_usage(self, sf: Salesforce) -> None:
        found = (sf.api_usage or {}).get("api-usage")
        if found is not None:
            self.usage = Usage(found.used, found.total)
            if self.on_usage is not None:
                self.on_usage(self.usage)

    # -- calls ----------------------------------------------------------------------------

    def connect(self) -> oauth.Tokens:
        """Get an access token now (checks the refresh token); returns the token response."""
        self._client(renew=True)
        assert self.tokens is not None
        return self.tokens

    def query(self, soql: str) -> Iterator[dict]:
        """Every record a SOQL query returns, page after page (queryMore through `nextRecordsUrl`)."""
        page = self._call(lambda sf: sf.query(soql))
        while True:
            yield from page.get("records", [])
            next_url = page.get("nextRecordsUrl")
            if page.get("done", True) or not next_url:
                return
            page = self._call(lambda sf: sf.query_more(next_url, identifier_is_url=True))

    def _collection(self, method: str, records: list[dict]) -> list[Saved]:
        if not 0 < len(records) <= COLLECTION_LIMIT:
            raise ValueError(f"an sObject Collections call takes 1 to {COLLECTION_LIMIT} records")
        body = {"allOrNone": False, "records": records}
        answer = self._call(lambda sf: sf.restful("composite/sobjects", method=method, json=body, timeout=TIMEOUT))
        if not isinstance(answer, list) or len(answer) != len(records):
            raise Transient("Salesforce answered a collection call with an unexpected body")
        saved = []
        for item in answer:
            errors = item.get("errors") or []
            first = errors[0] if errors else {}
            saved.append(Saved(bool(item.get("success")), item.get("id"), first.get("statusCode"),
                               first.get("message")))
        return saved

    def create(self, records: list[dict]) -> list[Saved]:
        """Create up to 200 records (each with `attributes.type`) in one call, in order."""
        return self._collection("POST", records)

    def update(self, records: list[dict]) -> list[Saved]:
        """Update up to 200 records (each with `attributes.type` and `Id`) in one call, in order."""
        return self._collection("PATCH", records)
