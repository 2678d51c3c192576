"""The Gmail `Mailbox`: drafts, sends and sync through the Gmail v1 REST API.

Uses the real `googleapiclient` Gmail client (static discovery document, `api_endpoint` from
settings) and `google.oauth2.credentials.Credentials`, which refreshes the access token at the
token endpoint. Calls go through `SingleAttemptHttp` (see transport.py): one HTTP attempt per
call, so `drafts.send` is never re-sent by the transport. Retries happen here, for calls that are
safe to repeat, with the injected `sleep` and `monotonic`.
"""
from __future__ import annotations

import base64
import html
import http.client
import random
import time
from datetime import datetime, timezone
from email import policy
from email.message import EmailMessage
from typing import Any, Callable, Collection, TypeVar
from urllib.parse import quote

import google.auth.exceptions
import requests
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from core.email.bounces import looks_like_report, read_bounce
from core.email.compose import build_message, replace_content
from core.email.message_id import first_message_id
from core.email.read import addresses, header_ids, header_text, message_from_headers, observed_headers, parse_message
from core.headers import check_header_value
from core.mailbox import (
    Disconnected,
    DraftNotFound,
    DraftRef,
    Folder,
    MailboxError,
    ObservedMessage,
    OutgoingEmail,
    PollResult,
    ProviderLimits,
    SendCheck,
    SendInDoubt,
    SendStatus,
    SentRef,
    ThreadRef,
    TransientError,
)

from .errors import GmailFailure
from .transport import DEFAULT_QUOTA_UNITS, QUOTA_UNITS, QuotaBucket, SingleAttemptHttp, never_reached_server

DEFAULT_API_URL = "https://gmail.googleapis.com/"
DEFAULT_TOKEN_URL = "https://oauth2.googleapis.com/token"

# gmail.compose: create, update, delete and send drafts. gmail.readonly: history, messages,
# threads and search (rfc822msgid:) for sync and for `check_sent`. Neither allows deleting mail
# or changing labels; gmail.send is not needed because compose covers drafts.send.
GMAIL_SCOPES: tuple[str, ...] = (
    "https://www.googleapis.com/auth/gmail.compose",
    "https://www.googleapis.com/auth/gmail.readonly",
)

# Which of our folders a Gmail message belongs to, first match wins.
FOLDER_BY_LABEL: tuple[tuple[str, Folder], ...] = (("SENT", Folder.SENT), ("INBOX", Folder.INBOX))
# Received mail that skipped the inbox (a filter archived it) is still mail the contact sent us.
RECEIVED_FOLDER = Folder.INBOX
# Messages with these labels are never observations.
IGNORED_LABELS = frozenset({"DRAFT", "SPAM", "TRASH", "CHAT"})
# History changes that can bring a message into Sent or the Inbox.
HISTORY_TYPES = ["messageAdded", "labelAdded"]
ARRIVAL_LABELS = frozenset(label for label, _ in FOLDER_BY_LABEL)
# Opens the draft in Gmail's web client, in the right account when several are signed in.
DRAFT_LINK = "https://mail.google.com/mail/?authuser={address}#drafts?compose={message_id}"

T = TypeVar("T")


class _Missing(Exception):
    """Gmail answered 404; what that means depends on the call."""


class GmailMailbox:
    """`core.mailbox.Mailbox` for one Gmail (or Google Workspace) account.

    `sleep` and `monotonic` pace the quota bucket and the backoff. `quota` may be shared by
    every mailbox object of the same address. Call `close()` when done.
    """

    limits = ProviderLimits(daily=2000, per_minute=None, concurrency=None)

    def __init__(self, address: str, *, refresh_token: str, client_id: str, client_secret: str,
                 api_url: str = DEFAULT_API_URL, token_url: str = DEFAULT_TOKEN_URL,
                 scopes: Collection[str] = GMAIL_SCOPES, sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic, http_timeout: float = 30,
                 quota: QuotaBucket | None = None, max_attempts: int = 4, max_wait: float = 60.0,
                 backoff_base: float = 1.0, rng: random.Random | None = None):
        _require(address and "@" in address, "address", f"expected an email address, got {address!r}")
        for name, value in (("refresh_token", refresh_token), ("client_id", client_id),
                            ("client_secret", client_secret)):
            _require(isinstance(value, str) and value.strip(), name, "must not be empty")
        for name, value in (("api_url", api_url), ("token_url", token_url)):
            _require(isinstance(value, str) and value.startswith(("http://", "https://")), name,
                     f"expected an http(s) URL, got {value!r}")
        _require(bool(scopes), "scopes", "must name at least one scope")
        _require(http_timeout > 0, "http_timeout", "must be positive")
        _require(max_attempts >= 1, "max_attempts", "must be at least 1")
        self.address = address
        self.max_attempts, self.max_wait, self.backoff_base = max_attempts, max_wait, backoff_base
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._quota = quota or QuotaBucket(sleep=sleep, monotonic=monotonic)
        self.credentials = Credentials(token=None, refresh_token=refresh_token, token_uri=token_url,
                                       client_id=client_id, client_secret=client_secret, scopes=list(scopes))
        self._http = SingleAttemptHttp(self.credentials, timeout=http_timeout)
        service = build("gmail", "v1", http=self._http, static_discovery=True, cache_discovery=False,
                        client_options={"api_endpoint": api_url if api_url.endswith("/") else api_url + "/"})
        self._users = service.users()

    def close(self) -> None:
        self._http.close()

    # -- Mailbox ---------------------------------------------------------------------------

    def create_draft(self, email: OutgoingEmail) -> DraftRef:
        message = build_message(email)
        thread_id = self._thread_id_for(email.reply_to)
        body: dict[str, Any] = {"message": {"raw": encode_raw(message)}}
        if thread_id:
            body["message"]["threadId"] = thread_id
        # drafts.create is not idempotent: after a failure that may have created the draft
        # (5xx, lost answer), look for it by Message-ID before trying again.
        created = self._call("drafts.create", lambda: self._users.drafts().create(userId="me", body=body),
                             recover=lambda: self._find_draft(email.message_id))
        return self._draft_ref(created, email.message_id)

    def update_draft(self, draft: DraftRef, *, subject: str, html_body: str, text_body: str) -> DraftRef:
        check_header_value("Subject", subject)
        current = self._existing_draft(draft, "raw")
        message = replace_content(decode_raw(current["message"]["raw"]), subject=subject,
                                  text_body=text_body, html_body=html_body)
        # Without threadId the updated draft would leave its conversation.
        body = {"id": draft.draft_id, "message": {"raw": encode_raw(message),
                                                  "threadId": current["message"]["threadId"]}}
        try:
            updated = self._call("drafts.update", lambda: self._users.drafts().update(
                userId="me", id=draft.draft_id, body=body))
        except _Missing:
            raise DraftNotFound(f"draft {draft.draft_id} is no longer in the drafts of {self.address}") from None
        return self._draft_ref(updated, draft.message_id)

    def delete_draft(self, draft: DraftRef) -> None:
        try:
            self._call("drafts.delete", lambda: self._users.drafts().delete(userId="me", id=draft.draft_id))
        except _Missing:
            pass

    def find_drafts(self, message_id: str) -> list[DraftRef]:
        """drafts.list with `q=rfc822msgid:<id>`, in Gmail's order."""
        return [self._draft_ref(found, message_id) for found in self._drafts_with(message_id)]

    def send_draft(self, draft: DraftRef) -> SentRef:
        try:
            sent = self._once("drafts.send", lambda: self._users.drafts().send(
                userId="me", body={"id": draft.draft_id}), sending=True)
        except _Missing:
            raise DraftNotFound(f"draft {draft.draft_id} of {self.address} no longer exists "
                                "(already sent or deleted; ask check_sent)") from None
        try:
            resource = self._call("messages.get", lambda: self._users.messages().get(
                userId="me", id=sent["id"], format="metadata", metadataHeaders=["Message-ID"]))
            return self._sent_ref(resource, draft.message_id)
        except (_Missing, MailboxError):
            # It went out; only the details are missing, which must not turn the send into an error.
            return SentRef(draft.message_id, sent.get("id"), sent.get("threadId"))

    def check_sent(self, message_id: str, draft: DraftRef | None) -> SendStatus:
        if draft is not None:
            try:
                self._existing_draft(draft, "minimal")
                return SendStatus(SendCheck.NOT_SENT, detail=f"draft {draft.draft_id} is still in Drafts")
            except DraftNotFound:
                pass
        for found in self._search(message_id, label_ids=["SENT"]):
            try:
                resource = self._get_message(found["id"], "metadata")
            except _Missing:
                continue
            return SendStatus(SendCheck.SENT, self._sent_ref(resource, message_id),
                              detail=f"Gmail message {found['id']} in Sent has this Message-ID")
        if draft is not None and draft.provider_message_id:
            try:
                resource = self._get_message(draft.provider_message_id, "metadata")
                if "SENT" in resource.get("labelIds", []):
                    return SendStatus(SendCheck.SENT, self._sent_ref(resource, message_id),
                                      detail=f"the draft's message {resource['id']} is now in Sent")
            except _Missing:
                pass
        if draft is None:
            return SendStatus(SendCheck.NOT_SENT, detail="no draft, and nothing in Sent has this Message-ID")
        return SendStatus(SendCheck.UNKNOWN, detail=f"draft {draft.draft_id} is gone and nothing in Sent "
                          "has its Message-ID (deleted, or sent with a new Message-ID)")

    def poll(self, cursor: str | None, tracked_threads: Collection[str] = ()) -> PollResult:
        if cursor is None:
            return PollResult((), self._history_now())
        if not str(cursor).isdigit():
            raise ValueError(f"cursor: expected a Gmail historyId (digits), got {cursor!r}")
        try:
            added, latest = self._added_since(str(cursor))
        except _Missing:
            return self._resync(tracked_threads)
        observations = []
        for gmail_id in added:
            try:
                observed = self._observe(self._get_message(gmail_id, "metadata"))
            except _Missing:
                continue  # deleted since it arrived
            if observed is not None:
                observations.append(observed)
        return PollResult(tuple(observations), latest)

    # -- extras ----------------------------------------------------------------------------

    def account_address(self) -> str:
        """The Google account's own address, as `users.getProfile` reports it."""
        return self._call("getProfile", lambda: self._users.getProfile(userId="me"))["emailAddress"]

    # -- sync ------------------------------------------------------------------------------

    def _history_now(self) -> str:
        return str(self._call("getProfile", lambda: self._users.getProfile(userId="me"))["historyId"])

    def _added_since(self, cursor: str) -> tuple[list[str], str]:
        """Gmail ids of messages that arrived in Sent or the Inbox after `cursor`, and the new cursor."""
        added: dict[str, None] = {}  # ordered set
        latest, page_token = cursor, None
        while True:
            page = self._call("history.list", lambda token=page_token: self._users.history().list(
                userId="me", startHistoryId=cursor, historyTypes=HISTORY_TYPES, pageToken=token))
            for record in page.get("history", []):
                for change in record.get("messagesAdded", []):
                    if not IGNORED_LABELS & set(change["message"].get("labelIds", [])):
                        added[change["message"]["id"]] = None
                for change in record.get("labelsAdded", []):
                    if (ARRIVAL_LABELS & set(change.get("labelIds", []))
                            and not IGNORED_LABELS & set(change["message"].get("labelIds", []))):
                        added[change["message"]["id"]] = None
            latest = str(page.get("historyId") or latest)
            page_token = page.get("nextPageToken")
            if not page_token:
                return list(added), latest

    def _resync(self, tracked_threads: Collection[str]) -> PollResult:
        # The cursor is taken first: whatever changes during the resync comes again next poll.
        latest = self._history_now()
        observations = []
        for thread_id in dict.fromkeys(t for t in tracked_threads if t):
            try:
                thread = self._call("threads.get", lambda t=thread_id: self._users.threads().get(
                    userId="me", id=t, format="metadata"))
            except _Missing:
                continue
            for resource in thread.get("messages", []):
                observed = self._observe(resource)
                if observed is not None:
                    observations.append(observed)
        return PollResult(tuple(observations), latest, resynced=True)

    def _observe(self, resource: dict) -> ObservedMessage | None:
        labels = set(resource.get("labelIds", []))
        if labels & IGNORED_LABELS:
            return None
        folder = next((f for label, f in FOLDER_BY_LABEL if label in labels), RECEIVED_FOLDER)
        message = message_from_headers((h["name"], h["value"]) for h in resource.get("payload", {}).get("headers", []))
        headers = observed_headers(message)
        sender = next(iter(addresses(message, "From")), None)
        subject = header_text(message, "Subject") or ""
        bounce = None
        if folder is Folder.INBOX and looks_like_report(headers, sender, subject):
            try:
                bounce = read_bounce(decode_raw(self._get_message(resource["id"], "raw")["raw"]))
            except _Missing:
                bounce = None
        return ObservedMessage(
            folder=folder,
            provider_message_id=resource["id"],
            message_id=first_message_id(header_text(message, "Message-ID")),
            provider_thread_id=resource.get("threadId"),
            in_reply_to=first_message_id(header_text(message, "In-Reply-To")),
            references=header_ids(message, "References"),
            from_address=sender,
            to_addresses=addresses(message, "To"),
            subject=subject,
            received_at=_internal_date(resource),
            snippet=html.unescape(resource.get("snippet", "")),
            headers=headers,
            bounce=bounce,
            bounced_message_id=bounce.message_id if bounce else None,
            bounced_recipient=bounce.recipient if bounce else None,
            bounce_reason=bounce.reason if bounce else None,
            raw=resource,
        )

    # -- lookups ---------------------------------------------------------------------------

    def _thread_id_for(self, reply_to: ThreadRef | None) -> str | None:
        """Gmail's threadId of the previous email: given, or looked up by Gmail id or Message-ID."""
        if reply_to is None:
            return None
        if reply_to.provider_thread_id:
            return reply_to.provider_thread_id
        if reply_to.provider_message_id:
            try:
                return self._get_message(reply_to.provider_message_id, "minimal")["threadId"]
            except _Missing:
                pass
        found = self._search(reply_to.message_id)
        return found[0]["threadId"] if found else None

    def _search(self, message_id: str, label_ids: list[str] | None = None) -> list[dict]:
        query = f"rfc822msgid:{message_id.strip().strip('<>')}"
        page = self._call("messages.list", lambda: self._users.messages().list(
            userId="me", q=query, labelIds=label_ids))
        return page.get("messages", [])

    def _find_draft(self, message_id: str) -> dict | None:
        drafts = self._drafts_with(message_id, first_only=True)
        return drafts[0] if drafts else None

    def _drafts_with(self, message_id: str, *, first_only: bool = False) -> list[dict]:
        """drafts.list resources (id, message.id, message.threadId) whose Message-ID is `message_id`,
        every page (Gmail's search `rfc822msgid:` takes the id without angle brackets)."""
        query = f"rfc822msgid:{message_id.strip().strip('<>')}"
        found: list[dict] = []
        page_token = None
        while True:
            page = self._call("drafts.list", lambda token=page_token: self._users.drafts().list(
                userId="me", q=query, pageToken=token))
            found += page.get("drafts", [])
            page_token = page.get("nextPageToken")
            if not page_token or (first_only and found):
                return found

    def _existing_draft(self, draft: DraftRef, fmt: str) -> dict:
        try:
            return self._call("drafts.get", lambda: self._users.drafts().get(
                userId="me", id=draft.draft_id, format=fmt))
        except _Missing:
            raise DraftNotFound(f"draft {draft.draft_id} is no longer in the drafts of {self.address}") from None

    def _get_message(self, gmail_id: str, fmt: str) -> dict:
        return self._call("messages.get", lambda: self._users.messages().get(userId="me", id=gmail_id, format=fmt))

    def _draft_ref(self, resource: dict, message_id: str) -> DraftRef:
        message = resource.get("message", {})
        return DraftRef(
            draft_id=resource["id"],
            message_id=message_id,
            provider_message_id=message.get("id"),
            provider_thread_id=message.get("threadId"),
            web_link=DRAFT_LINK.format(address=quote(self.address), message_id=message.get("id")),
        )

    def _sent_ref(self, resource: dict, fallback_message_id: str) -> SentRef:
        headers = _headers(resource)
        return SentRef(message_id=first_message_id(headers.get("message-id")) or fallback_message_id,
                       provider_message_id=resource.get("id"), provider_thread_id=resource.get("threadId"),
                       sent_at=_internal_date(resource))

    # -- calling Gmail ---------------------------------------------------------------------

    def _call(self, method: str, make_request: Callable[[], Any], *,
              recover: Callable[[], T | None] | None = None) -> Any:
        """One Gmail call that is safe to repeat; transient failures back off and retry.

        `recover`, when given, runs before each retry and its non-None answer is returned
        instead (for calls whose failed attempt may still have taken effect).
        """
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._once(method, make_request)
            except TransientError as problem:
                delay = self._delay(attempt, problem.retry_after)
                if delay is None:
                    raise
                self._sleep(delay)
            if recover is not None:
                found = recover()
                if found is not None:
                    return found

    def _delay(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None to give up now."""
        if attempt >= self.max_attempts:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_wait else None
        ceiling = min(self.max_wait, self.backoff_base * 2 ** (attempt - 1))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def _once(self, method: str, make_request: Callable[[], Any], *, sending: bool = False) -> Any:
        """Exactly one HTTP attempt, its failure translated to our exceptions (404 -> `_Missing`)."""
        self._quota.take(QUOTA_UNITS.get(method, DEFAULT_QUOTA_UNITS))
        action = f"{method} for {self.address}"
        try:
            return make_request().execute(num_retries=0)
        except HttpError as error:
            failure = GmailFailure.from_http_error(error)
            if failure.status == 404:
                raise _Missing(failure.message) from error
            if sending and failure.status >= 500:
                raise SendInDoubt(f"{failure.describe(action)}; the email may or may not have gone out "
                                  "(resolve with check_sent)") from error
            raise failure.to_error(action) from error
        except google.auth.exceptions.RefreshError as error:
            raise _refresh_failure(self.address, error) from error
        except google.auth.exceptions.TransportError as error:
            raise TransientError(f"could not reach Google's token endpoint for {self.address}: {error}") from error
        except (requests.RequestException, OSError, http.client.HTTPException) as error:
            if sending and not never_reached_server(error):
                raise SendInDoubt(f"{action}: the connection failed before Gmail answered ({error}); the email "
                                  "may or may not have gone out (resolve with check_sent)") from error
            raise TransientError(f"{action} failed in transit: {error}") from error


def encode_raw(message: EmailMessage) -> str:
    """The base64url `raw` field Gmail takes: the message's bytes with CRLF line ends."""
    return base64.urlsafe_b64encode(message.as_bytes(policy=policy.SMTP)).decode("ascii")


def decode_raw(raw: str) -> EmailMessage:
    """A `raw` field Gmail returned (format=raw), parsed."""
    return parse_message(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))


def _refresh_failure(address: str, error: google.auth.exceptions.RefreshError) -> Exception:
    """invalid_grant and friends need a person; a token endpoint hiccup does not."""
    detail = error.args[1] if len(error.args) > 1 and isinstance(error.args[1], dict) else {}
    code = detail.get("error") or ""
    description = detail.get("error_description") or (str(error.args[0]) if error.args else str(error))
    if getattr(error, "retryable", False):
        return TransientError(f"Google could not refresh the token of {address} right now: {description}")
    reason = f"{code}: {description}" if code and code not in description else description
    return Disconnected(f"Google refused the refresh token of {address} ({reason}); reconnect the mailbox")


def _headers(resource: dict) -> dict[str, str]:
    """Top-level headers of a Gmail message resource, lower-case names, first occurrence wins."""
    headers: dict[str, str] = {}
    for header in resource.get("payload", {}).get("headers", []):
        headers.setdefault(header["name"].lower(), header["value"])
    return headers


def _internal_date(resource: dict) -> datetime | None:
    value = resource.get("internalDate")
    return datetime.fromtimestamp(int(value) / 1000, tz=timezone.utc) if value else None


def _require(condition: object, field: str, problem: str) -> None:
    if not condition:
        raise ValueError(f"{field}: {problem}")
