"""A stateful fake Gmail: the Gmail v1 REST API and Google's OAuth endpoints on 127.0.0.1.

It speaks the JSON the real `googleapiclient` Gmail client sends (paths from the static
discovery document, including the `/upload/...` media paths) and keeps what Gmail keeps: drafts,
messages with labels, threads, a history log with increasing historyIds. Access tokens carry
scopes, and each method checks them against the discovery document, so a connector that asks
for too few scopes fails here as it would against Google.

Test control is plain Python (`FakeAccount.deliver`, `.user_sends_draft`, `.bounce`,
`FakeGmail.fail_next`, `.lose_next_response`, `FakeAccount.expire_history`, `.revoke`).
`FakeGmail.outbox` records every message that really went out, so tests can prove nothing was
sent twice.

Run it alone with `python -m tests.fakes.gmail_server --port P --account rep@example.com`; it
prints its URLs and refresh tokens as one JSON line and serves until killed.
"""
from __future__ import annotations

import argparse
import base64
import copy
import email
import email.policy
import hashlib
import html
import itertools
import json
import re
import secrets
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formataddr, formatdate, getaddresses, make_msgid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from .oidc_keys import SigningKeys

POLICY = email.policy.default
SCOPE_PREFIX = "https://www.googleapis.com/auth/"
ALL_GMAIL_SCOPES = tuple(SCOPE_PREFIX + s for s in ("gmail.compose", "gmail.readonly", "gmail.modify", "gmail.send"))
AUTH_PATH = "/o/oauth2/v2/auth"
TOKEN_PATH = "/token"
JWKS_PATH = "/oauth2/v3/certs"
STATUS_TEXT = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
               429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 502: "UNAVAILABLE", 503: "UNAVAILABLE"}
HISTORY_KIND = {"messageAdded": "messagesAdded", "messageDeleted": "messagesDeleted",
                "labelAdded": "labelsAdded", "labelRemoved": "labelsRemoved"}
ADDRESS = re.compile(r"^[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+\.[A-Za-z0-9-]+$")
SUBJECT_PREFIX = re.compile(r"^\s*((re|fw|fwd|aw|sv|wg)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)


class ApiError(Exception):
    """An error answer in Google's JSON error format."""

    def __init__(self, status: int, reason: str, message: str, *, headers: dict[str, str] | None = None,
                 rpc_status: str | None = None):
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message
        self.headers = headers or {}
        self.rpc_status = rpc_status or STATUS_TEXT.get(status, "UNKNOWN")

    def body(self) -> dict:
        domain = "usageLimits" if self.status in (403, 429) and "imit" in self.reason else "global"
        return {"error": {"code": self.status, "message": self.message,
                          "errors": [{"message": self.message, "domain": domain, "reason": self.reason}],
                          "status": self.rpc_status}}


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400):
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def normalized_subject(subject: str) -> str:
    return " ".join(SUBJECT_PREFIX.sub("", subject or "").split()).lower()


def _method_scopes() -> dict[str, frozenset[str]]:
    """Accepted scopes of each Gmail method, from the discovery document the client ships."""
    import googleapiclient

    doc = json.loads((Path(googleapiclient.__file__).parent / "discovery_cache" / "documents" /
                      "gmail.v1.json").read_text())
    scopes: dict[str, frozenset[str]] = {}

    def walk(resources: dict, prefix: str) -> None:
        for name, resource in resources.items():
            own = "" if name == "users" else f"{prefix}{name}."  # "drafts.create", "getProfile"
            for method_name, method in resource.get("methods", {}).items():
                scopes[own + method_name] = frozenset(method.get("scopes", ()))
            walk(resource.get("resources", {}), own)

    walk(doc["resources"], "")
    return scopes


@dataclass
class StoredMessage:
    """One message of a fake mailbox, kept as its RFC 5322 bytes plus Gmail's metadata."""

    id: str
    thread_id: str
    labels: list[str]
    raw: bytes
    internal_date: int
    history_id: int = 0

    @property
    def parsed(self) -> EmailMessage:
        return email.message_from_bytes(self.raw, policy=POLICY)

    @property
    def message_id(self) -> str | None:
        value = self.parsed["Message-ID"]
        return str(value).strip() if value else None

    @property
    def subject(self) -> str:
        return str(self.parsed["Subject"] or "")

    @property
    def to_addresses(self) -> tuple[str, ...]:
        return tuple(addr for _, addr in getaddresses([str(v) for v in self.parsed.get_all("To", [])]) if addr)

    @property
    def in_reply_to(self) -> str | None:
        value = self.parsed["In-Reply-To"]
        return str(value).strip() if value else None

    @property
    def references(self) -> tuple[str, ...]:
        return tuple(str(self.parsed["References"] or "").split())

    @property
    def text_body(self) -> str:
        return _text_of(self.parsed)

    @property
    def headers(self) -> dict[str, str]:
        return {name: str(value) for name, value in self.parsed.items()}


def _text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    text = part.get_content()
    if part.get_content_subtype() == "html":
        text = re.sub(r"<[^>]+>", " ", text)
    return text


@dataclass
class SentRecord:
    """A message that really went out (an API `drafts.send` or the rep pressing Send)."""

    address: str
    gmail_id: str
    message_id: str | None
    recipients: tuple[str, ...]
    subject: str
    via: str  # "api" or "ui"


@dataclass
class Fault:
    method: str
    remaining: int
    status: int | None = None
    reason: str | None = None
    message: str | None = None
    retry_after: str | None = None
    drop_response: bool = False
    perform: bool = False


@dataclass
class AuthorizationGrant:
    address: str
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    code_challenge: str
    offline: bool
    consent: bool
    nonce: str | None = None


class FakeAccount:
    """One Gmail account: its messages, threads, drafts and history."""

    def __init__(self, server: "FakeGmail", address: str):
        self.server = server
        self.address = address
        self.messages: dict[str, StoredMessage] = {}
        self.threads: dict[str, list[str]] = {}
        self.drafts: dict[str, str] = {}  # draft id -> message id
        self.history: list[dict] = []
        self.history_id = 1000
        self.expired_before = 0  # history.list with an older startHistoryId answers 404
        self.refresh_tokens: dict[str, tuple[str, ...]] = {}  # refresh token -> granted scopes
        self.revoked = False
        self.revoked_tokens: set[str] = set()
        self.consented_clients: set[str] = set()

    # -- state changes (callers hold the server lock) --------------------------------------

    def _log(self, kind: str, message: StoredMessage, label_ids: list[str] | None = None) -> None:
        self.history_id += 1 + len(self.history) % 3  # real historyIds have gaps
        message.history_id = self.history_id
        change: dict[str, Any] = {"message": {"id": message.id, "threadId": message.thread_id,
                                              "labelIds": list(message.labels)}}
        if label_ids is not None:
            change["labelIds"] = label_ids
        self.history.append({"id": str(self.history_id),
                             "messages": [{"id": message.id, "threadId": message.thread_id}],
                             kind: [change]})

    def _add(self, raw: bytes, labels: list[str], thread_id: str | None) -> StoredMessage:
        message_id = self.server._new_id()
        thread = thread_id or message_id  # Gmail names a new thread after its first message
        stored = StoredMessage(message_id, thread, list(labels), raw, int(time.time() * 1000))
        self.messages[message_id] = stored
        self.threads.setdefault(thread, []).append(message_id)
        self._log("messagesAdded", stored)
        return stored

    def _delete(self, gmail_id: str) -> None:
        stored = self.messages.pop(gmail_id)
        self.threads[stored.thread_id].remove(gmail_id)
        if not self.threads[stored.thread_id]:
            del self.threads[stored.thread_id]
        self._log("messagesDeleted", stored)

    def _thread_by_headers(self, parsed: EmailMessage) -> str | None:
        """Gmail's own threading: a referenced message in the thread and the same subject."""
        wanted = set(str(parsed["References"] or "").split()) | set(str(parsed["In-Reply-To"] or "").split())
        subject = normalized_subject(str(parsed["Subject"] or ""))
        for stored in self.messages.values():
            if stored.message_id in wanted and normalized_subject(stored.subject) == subject:
                return stored.thread_id
        return None

    def _thread_for_api(self, parsed: EmailMessage, requested: str | None, replacing: str | None = None,
                        ) -> str | None:
        """The API threads a message only when threadId, References/In-Reply-To and Subject agree."""
        if not requested:
            return None
        if requested not in self.threads:
            raise ApiError(404, "notFound", "Requested entity was not found.")
        wanted = set(str(parsed["References"] or "").split()) | set(str(parsed["In-Reply-To"] or "").split())
        members = [self.messages[i] for i in self.threads[requested] if i != replacing]
        subject = normalized_subject(str(parsed["Subject"] or ""))
        if any(m.message_id in wanted for m in members) and any(
                normalized_subject(m.subject) == subject for m in members):
            return requested
        return None

    def _create_draft(self, raw: bytes, requested_thread: str | None) -> tuple[str, StoredMessage]:
        parsed = email.message_from_bytes(raw, policy=POLICY)
        thread = self._thread_for_api(parsed, requested_thread)
        stored = self._add(raw, ["DRAFT"], thread)
        draft_id = f"r-{self.server._new_number()}"
        self.drafts[draft_id] = stored.id
        return draft_id, stored

    def _replace_draft(self, draft_id: str, raw: bytes, requested_thread: str | None) -> StoredMessage:
        """drafts.update: the draft gets a new message (new id); without threadId it leaves its thread."""
        parsed = email.message_from_bytes(raw, policy=POLICY)
        old = self.messages[self.drafts[draft_id]]
        if requested_thread and requested_thread == old.thread_id and self.threads[old.thread_id] == [old.id]:
            thread: str | None = old.thread_id  # a draft that is its own conversation keeps it
        else:
            thread = self._thread_for_api(parsed, requested_thread, replacing=old.id)
        self._delete(old.id)
        stored = self._add(raw, ["DRAFT"], thread)
        self.drafts[draft_id] = stored.id
        return stored

    def _send_draft(self, draft_id: str, via: str, new_subject: str | None = None,
                    new_message_id: bool = False) -> StoredMessage:
        stored = self.messages[self.drafts[draft_id]]
        parsed = stored.parsed
        recipients = [addr for _, addr in getaddresses(
            [str(v) for h in ("To", "Cc", "Bcc") for v in parsed.get_all(h, [])])]
        if not recipients:
            raise ApiError(400, "invalidArgument", "Recipient address required")
        if not all(ADDRESS.match(addr) for addr in recipients):
            raise ApiError(400, "invalidArgument", "Invalid To header")
        del self.drafts[draft_id]
        if "Date" not in parsed:
            parsed["Date"] = formatdate(localtime=False, usegmt=True)
        if via == "api":
            # The API keeps the draft's message (same id, same Message-ID) and relabels it.
            stored.raw = parsed.as_bytes()
            stored.labels = ["SENT"]
            self._log("labelsRemoved", stored, ["DRAFT"])
            self._log("labelsAdded", stored, ["SENT"])
            sent = stored
        else:
            # The web client composes the message anew: new Gmail id and, often, a new Message-ID.
            if new_subject is not None:
                del parsed["Subject"]
                parsed["Subject"] = new_subject
            if new_message_id:
                del parsed["Message-ID"]
                parsed["Message-ID"] = make_msgid(idstring="CAFake", domain="mail.gmail.com")
            thread = stored.thread_id
            others = [self.messages[i] for i in self.threads[thread] if i != stored.id]
            if others and normalized_subject(str(parsed["Subject"])) not in {
                    normalized_subject(m.subject) for m in others}:
                thread = None  # a reply whose subject was changed starts a new conversation
            self._delete(stored.id)
            sent = self._add(parsed.as_bytes(), ["SENT"], thread)
        self.server.outbox.append(SentRecord(self.address, sent.id, sent.message_id, tuple(recipients),
                                             sent.subject, via))
        return sent

    # -- test control ----------------------------------------------------------------------

    def folder(self, name: str) -> list[StoredMessage]:
        """Messages in "drafts", "sent" or "inbox", oldest first."""
        label = {"drafts": "DRAFT", "sent": "SENT", "inbox": "INBOX"}[name]
        with self.server.lock:
            return sorted((copy.copy(m) for m in self.messages.values() if label in m.labels),
                          key=lambda m: m.history_id)

    def message_by_message_id(self, message_id: str) -> StoredMessage | None:
        with self.server.lock:
            for stored in self.messages.values():
                if stored.message_id == message_id:
                    return copy.copy(stored)
        return None

    def deliver(self, *, from_address: str, subject: str, body: str, thread_id: str | None = None,
                in_reply_to: str | None = None, references: tuple[str, ...] = (),
                headers: dict[str, str] | None = None, message_id: str | None = None,
                from_name: str | None = None, labels: tuple[str, ...] = ("INBOX", "UNREAD")) -> str:
        """A message arrives; returns its Gmail id. Threads by `thread_id` or by Gmail's rules."""
        message = EmailMessage(policy=POLICY)
        message["From"] = formataddr((from_name or "", from_address))
        message["To"] = self.address
        message["Subject"] = subject
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = message_id or make_msgid(domain=from_address.rpartition("@")[2] or "example.com")
        if in_reply_to:
            message["In-Reply-To"] = in_reply_to
        if references:
            message["References"] = " ".join(references)
        for name, value in (headers or {}).items():
            message[name] = value
        message.set_content(body)
        return self.deliver_raw(message.as_bytes(), thread_id=thread_id, labels=labels)

    def deliver_raw(self, raw: bytes, *, thread_id: str | None = None,
                    labels: tuple[str, ...] = ("INBOX", "UNREAD")) -> str:
        with self.server.lock:
            parsed = email.message_from_bytes(raw, policy=POLICY)
            thread = thread_id if thread_id in self.threads else self._thread_by_headers(parsed)
            return self._add(raw, list(labels), thread).id

    def user_sends_draft(self, draft_id: str, *, new_subject: str | None = None,
                         new_message_id: bool = True) -> str:
        """The rep presses Send in Gmail's web client; returns the sent message's Gmail id."""
        with self.server.lock:
            return self._send_draft(draft_id, "ui", new_subject, new_message_id).id

    def bounce(self, original_message_id: str, recipient: str, *, action: str = "failed",
               status: str = "5.1.1",
               diagnostic: str = "smtp; 550-5.1.1 The email account that you tried to reach does not exist.",
               original_as: str = "headers", failed_recipients_header: bool = True) -> str:
        """A delivery-status notification (RFC 3464) from mailer-daemon for one of our emails.

        `original_as` is "headers" (text/rfc822-headers), "message" (message/rfc822) or "none".
        """
        original = self.message_by_message_id(original_message_id)
        if original is None:
            raise KeyError(f"no message with Message-ID {original_message_id}")
        boundary = f"=_dsn_{secrets.token_hex(8)}"
        head, _, _ = original.raw.replace(b"\r\n", b"\n").partition(b"\n\n")
        failed = action == "failed"
        lines = [
            "From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>",
            f"To: {self.address}",
            f"Subject: Delivery Status Notification ({'Failure' if failed else 'Delay'})",
            f"Date: {formatdate(usegmt=True)}",
            f"Message-ID: {make_msgid(domain='mx.google.com')}",
            f"In-Reply-To: {original_message_id}",
            f"References: {original_message_id}",
            "Auto-Submitted: auto-replied",
            "MIME-Version: 1.0",
            f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        ]
        if failed and failed_recipients_header:
            lines.insert(4, f"X-Failed-Recipients: {recipient}")
        parts = [
            "Content-Type: text/plain; charset=UTF-8\n\n"
            + (f"** Address not found **\n\nYour message wasn't delivered to {recipient}.\n" if failed
               else f"** Delivery incomplete **\n\nThere was a temporary problem delivering to {recipient}.\n"),
            "Content-Type: message/delivery-status\n\n"
            "Reporting-MTA: dns; googlemail.com\n\n"
            f"Final-Recipient: rfc822; {recipient}\nAction: {action}\nStatus: {status}\n"
            f"Remote-MTA: dns; mx.{recipient.rpartition('@')[2]}\nDiagnostic-Code: {diagnostic}\n",
        ]
        if original_as == "headers":
            parts.append("Content-Type: text/rfc822-headers\n\n" + head.decode("utf-8", "replace") + "\n")
        elif original_as == "message":
            parts.append("Content-Type: message/rfc822\n\n" + original.raw.replace(b"\r\n", b"\n").decode(
                "utf-8", "replace"))
        body = "".join(f"--{boundary}\n{p}\n" for p in parts) + f"--{boundary}--\n"
        raw = ("\n".join(lines) + "\n\n" + body).encode()
        return self.deliver_raw(raw, thread_id=original.thread_id)

    def expire_history(self) -> None:
        """Every historyId handed out so far is now too old: history.list answers 404."""
        with self.server.lock:
            self.history_id += 1
            self.expired_before = self.history_id

    def revoke(self) -> None:
        """The user revoked access: refresh answers invalid_grant, access tokens stop working."""
        with self.server.lock:
            self.revoked = True
            self.revoked_tokens |= set(self.refresh_tokens)
            for token, (address, _) in list(self.server.access_tokens.items()):
                if address == self.address:
                    del self.server.access_tokens[token]

    def grant(self, scopes: tuple[str, ...] = ALL_GMAIL_SCOPES, refresh_token: str | None = None) -> str:
        """Issue a refresh token for this account with `scopes`, as after a consent screen.

        After `revoke`, a new consent gives a working token; the revoked ones stay dead."""
        token = refresh_token or f"1//fake-{secrets.token_urlsafe(24)}"
        with self.server.lock:
            self.refresh_tokens[token] = tuple(scopes)
            self.revoked = False
        return token

    @property
    def refresh_token(self) -> str:
        """The first refresh token issued for this account."""
        return next(iter(self.refresh_tokens))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeGmail/1.0"
    timeout = 15
    disable_nagle_algorithm = True  # small answers would otherwise wait on delayed ACKs
    wbufsize = -1  # headers and body leave in one write; handle_one_request flushes

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _dispatch(self) -> None:
        self.server.fake._handle(self)  # type: ignore[attr-defined]

    do_GET = do_POST = do_PUT = do_DELETE = _dispatch


API = r"/(?P<upload>upload/)?gmail/v1/users/(?P<user>[^/]+)"
ROUTES: list[tuple[str, re.Pattern, str]] = [(verb, re.compile(API + path + r"$"), name) for verb, path, name in [
    ("GET", "/profile", "getProfile"),
    ("POST", "/drafts/send", "drafts.send"),
    ("POST", "/drafts", "drafts.create"),
    ("GET", "/drafts", "drafts.list"),
    ("GET", "/drafts/(?P<id>[^/]+)", "drafts.get"),
    ("PUT", "/drafts/(?P<id>[^/]+)", "drafts.update"),
    ("DELETE", "/drafts/(?P<id>[^/]+)", "drafts.delete"),
    ("GET", "/history", "history.list"),
    ("GET", "/messages", "messages.list"),
    ("GET", "/messages/(?P<id>[^/]+)", "messages.get"),
    ("GET", "/threads/(?P<id>[^/]+)", "threads.get"),
]]


@dataclass
class _Request:
    verb: str
    path: str
    query: dict[str, list[str]]
    headers: Any
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> dict:
        try:
            return json.loads(self.body or b"{}")
        except ValueError:
            raise ApiError(400, "parseError", "Invalid JSON payload received.")


class FakeGmail:
    """The fake server. Use as a context manager, or `start()` / `stop()`."""

    def __init__(self, *, client_id: str = "cadence-test.apps.googleusercontent.com",
                 client_secret: str = "fake-client-secret", host: str = "127.0.0.1", port: int = 0):
        self.client_id, self.client_secret = client_id, client_secret
        self.lock = threading.RLock()
        self.accounts: dict[str, FakeAccount] = {}
        self.access_tokens: dict[str, tuple[str, frozenset[str]]] = {}  # token -> (address, scopes)
        self.codes: dict[str, AuthorizationGrant] = {}
        self.faults: list[Fault] = []
        self.outbox: list[SentRecord] = []
        self.calls: list[tuple[str, str]] = []  # (method, address) of every authorised API call
        self.token_requests: list[dict[str, str]] = []
        self.signing = SigningKeys()
        self.history_page_size = 100
        self.list_page_size = 100
        self._numbers = itertools.count(1)
        self._method_scopes = _method_scopes()
        self._http = ThreadingHTTPServer((host, port), _Handler)
        self._http.daemon_threads = True
        self._http.fake = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host}:{port}/"

    @property
    def api_url(self) -> str:
        """The `api_endpoint` for googleapiclient (CADENCE_GMAIL_API_URL)."""
        return self.base_url

    @property
    def token_url(self) -> str:
        return self.base_url.rstrip("/") + TOKEN_PATH

    @property
    def auth_url(self) -> str:
        return self.base_url.rstrip("/") + AUTH_PATH

    @property
    def jwks_url(self) -> str:
        return self.base_url.rstrip("/") + JWKS_PATH

    def start(self) -> "FakeGmail":
        self._thread = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-gmail", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def __enter__(self) -> "FakeGmail":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test control ----------------------------------------------------------------------

    def add_account(self, address: str, *, refresh_token: str | None = None,
                    scopes: tuple[str, ...] = ALL_GMAIL_SCOPES) -> FakeAccount:
        """A Gmail account with one refresh token already granted for `scopes`."""
        with self.lock:
            account = self.accounts[address.lower()] = FakeAccount(self, address)
        account.grant(scopes, refresh_token)
        return account

    def account(self, address: str) -> FakeAccount:
        return self.accounts[address.lower()]

    def fail_next(self, method: str, status: int = 503, *, times: int = 1, retry_after: float | str | None = None,
                  reason: str | None = None, message: str | None = None, perform: bool = False) -> None:
        """The next `times` calls of `method` (e.g. "drafts.send") answer `status`.

        With `perform`, the call is carried out before the error is returned.
        """
        default_reason = {429: "rateLimitExceeded", 403: "userRateLimitExceeded", 500: "backendError",
                          503: "backendError", 502: "backendError"}.get(status, "failedPrecondition")
        default_message = {429: "Too many concurrent requests for user.", 403: "User-rate limit exceeded.",
                           500: "Backend Error", 502: "Bad Gateway", 503: "The service is currently unavailable."}
        with self.lock:
            self.faults.append(Fault(method, times, status, reason or default_reason,
                                     message or default_message.get(status, "Precondition check failed."),
                                     None if retry_after is None else str(retry_after), perform=perform))

    def lose_next_response(self, method: str = "drafts.send", *, times: int = 1) -> None:
        """The next call of `method` is carried out, then the connection closes without an answer."""
        with self.lock:
            self.faults.append(Fault(method, times, drop_response=True, perform=True))

    def expire_access_tokens(self) -> None:
        """Every access token expires now; clients must refresh."""
        with self.lock:
            self.access_tokens.clear()

    def refresh_count(self, address: str | None = None) -> int:
        return sum(1 for r in self.token_requests if r.get("grant_type") == "refresh_token"
                   and (address is None or r.get("_address") == address))

    def call_count(self, method: str) -> int:
        return sum(1 for name, _ in self.calls if name == method)

    def authorize(self, address: str, *, client_id: str, redirect_uri: str, scopes: tuple[str, ...],
                  code_challenge: str, offline: bool = True, consent: bool = True, nonce: str | None = None) -> str:
        """The user signs in as `address` and consents; returns an authorization code."""
        code = f"4/fake-{secrets.token_urlsafe(16)}"
        with self.lock:
            self.codes[code] = AuthorizationGrant(self.account(address).address, client_id, redirect_uri,
                                                  tuple(scopes), code_challenge, offline, consent, nonce)
        return code

    # -- plumbing --------------------------------------------------------------------------

    def _new_number(self) -> int:
        return next(self._numbers)

    def _new_id(self) -> str:
        return f"{0x18f3a00000000000 + self._new_number() * 0x1f3:x}"

    def _take_fault(self, method: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.method == method and fault.remaining > 0:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def _handle(self, handler: _Handler) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        request = _Request(handler.command, unquote(parts.path), parse_qs(parts.query, keep_blank_values=True),
                           handler.headers, body)
        try:
            if request.path == TOKEN_PATH and request.verb == "POST":
                return self._reply(handler, 200, self._token(request))
            if request.path == AUTH_PATH and request.verb == "GET":
                return self._authorize_page(handler, request)
            if request.path == JWKS_PATH and request.verb == "GET":
                return self._reply(handler, 200, self.signing.jwks())
            for verb, pattern, name in ROUTES:
                match = pattern.match(request.path)
                if match and verb == request.verb:
                    request.params = {k: v for k, v in match.groupdict().items() if v is not None}
                    return self._api(handler, request, name)
            raise ApiError(404, "notFound", f"No route for {request.verb} {request.path}")
        except ApiError as error:
            self._reply(handler, error.status, error.body(), error.headers)
        except OAuthError as error:
            self._reply(handler, error.status, {"error": error.error, "error_description": error.description})

    def _reply(self, handler: _Handler, status: int, payload: dict | None, headers: dict[str, str] | None = None,
               ) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        handler.send_response(status)
        if payload is not None:
            handler.send_header("Content-Type", "application/json; charset=UTF-8")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _api(self, handler: _Handler, request: _Request, method: str) -> None:
        account, scopes = self._authenticate(request)
        user = request.params["user"]
        if user != "me" and user.lower() != account.address.lower():
            raise ApiError(403, "forbidden", f"Delegation denied for {account.address}")
        allowed = self._method_scopes.get(method, frozenset())
        if not scopes & allowed:
            raise ApiError(403, "insufficientPermissions", "Request had insufficient authentication scopes.")
        with self.lock:
            self.calls.append((method, account.address))
        fault = self._take_fault(method)
        if fault is not None and fault.drop_response:
            self._run(account, request, method)
            handler.close_connection = True  # carried out; the answer is lost on the way back
            return
        if fault is not None:
            if fault.perform:
                try:
                    self._run(account, request, method)
                except ApiError:
                    pass
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            raise ApiError(fault.status or 503, fault.reason or "backendError", fault.message or "Backend Error",
                           headers=headers)
        status, payload = self._run(account, request, method)
        self._reply(handler, status, payload)

    def _authenticate(self, request: _Request) -> tuple[FakeAccount, frozenset[str]]:
        header = request.headers.get("Authorization") or ""
        token = header[7:] if header.startswith("Bearer ") else ""
        with self.lock:
            entry = self.access_tokens.get(token)
        if entry is None:
            raise ApiError(401, "authError", "Request had invalid authentication credentials. Expected OAuth 2 "
                           "access token, login cookie or other valid authentication credential.",
                           headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'})
        return self.account(entry[0]), entry[1]

    # -- OAuth -----------------------------------------------------------------------------

    def _authorize_page(self, handler: _Handler, request: _Request) -> None:
        """Google's consent page, answered at once as if the user clicked Allow."""
        redirect_uri = request.arg("redirect_uri") or ""
        problems = []
        if request.arg("response_type") != "code":
            problems.append("response_type must be code")
        if request.arg("client_id") != self.client_id:
            problems.append("invalid_client")
        if request.arg("code_challenge_method") != "S256" or not request.arg("code_challenge"):
            problems.append("PKCE S256 code_challenge required")
        if not redirect_uri:
            problems.append("redirect_uri missing")
        if problems:
            raise OAuthError("invalid_request", "; ".join(problems))
        hint = request.arg("login_hint")
        with self.lock:
            candidates = [self.accounts[hint.lower()]] if hint and hint.lower() in self.accounts else list(
                self.accounts.values())
        if not candidates:
            raise OAuthError("access_denied", "no account to sign in with")
        account = candidates[0]
        code = self.authorize(account.address, client_id=self.client_id, redirect_uri=redirect_uri,
                              scopes=tuple((request.arg("scope") or "").split()),
                              code_challenge=request.arg("code_challenge") or "",
                              offline=request.arg("access_type") == "offline",
                              consent=request.arg("prompt") == "consent", nonce=request.arg("nonce"))
        query = {"code": code, "scope": request.arg("scope") or ""}
        if request.arg("state") is not None:
            query["state"] = request.arg("state")
        handler.send_response(302)
        handler.send_header("Location", f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{urlencode(query)}")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def _token(self, request: _Request) -> dict:
        form = {k: v[0] for k, v in parse_qs(request.body.decode(), keep_blank_values=True).items()}
        grant_type = form.get("grant_type")
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            raise OAuthError("invalid_client", "The OAuth client was not found.", 401)
        if grant_type == "refresh_token":
            return self._refresh(form)
        if grant_type == "authorization_code":
            return self._exchange(form)
        raise OAuthError("unsupported_grant_type", f"Invalid grant_type: {grant_type}")

    def _issue(self, account: FakeAccount, scopes: tuple[str, ...]) -> dict:
        token = f"ya29.fake-{secrets.token_urlsafe(24)}"
        with self.lock:
            self.access_tokens[token] = (account.address.lower(), frozenset(scopes))
        return {"access_token": token, "expires_in": 3599, "token_type": "Bearer", "scope": " ".join(scopes)}

    def _refresh(self, form: dict[str, str]) -> dict:
        token = form.get("refresh_token") or ""
        with self.lock:
            account = next((a for a in self.accounts.values() if token in a.refresh_tokens), None)
            self.token_requests.append({**form, "_address": account.address if account else ""})
        if account is None or account.revoked or token in account.revoked_tokens:
            raise OAuthError("invalid_grant", "Token has been expired or revoked.")
        granted = account.refresh_tokens[token]
        requested = tuple(form.get("scope", "").split()) or granted
        if set(requested) - set(granted):
            raise OAuthError("invalid_scope", "Some requested scopes were invalid. "
                             f"{{invalid={sorted(set(requested) - set(granted))}}}")
        return self._issue(account, requested)

    def _exchange(self, form: dict[str, str]) -> dict:
        with self.lock:
            self.token_requests.append(dict(form))
            grant = self.codes.pop(form.get("code") or "", None)
        if grant is None:
            raise OAuthError("invalid_grant", "Malformed auth code.")
        if grant.redirect_uri != form.get("redirect_uri"):
            raise OAuthError("redirect_uri_mismatch", "Bad Request")
        verifier = form.get("code_verifier") or ""
        challenge = b64url(hashlib.sha256(verifier.encode()).digest()).rstrip("=")
        if not verifier or challenge != grant.code_challenge:
            raise OAuthError("invalid_grant", "Invalid code verifier.")
        account = self.account(grant.address)
        answer = self._issue(account, grant.scopes)
        if "openid" in grant.scopes:  # OpenID Connect: an ID token signed with the published key
            answer["id_token"] = self.signing.id_token(
                issuer="https://accounts.google.com", audience=grant.client_id,
                subject=hashlib.sha256(account.address.lower().encode()).hexdigest()[:21], nonce=grant.nonce,
                email=account.address, email_verified=True)
        # Google returns a refresh token for offline access on the first consent, or when
        # prompt=consent forces the consent screen again.
        if grant.offline and (grant.consent or grant.client_id not in account.consented_clients):
            answer["refresh_token"] = account.grant(grant.scopes)
        account.consented_clients.add(grant.client_id)
        return answer

    # -- Gmail methods ---------------------------------------------------------------------

    def _run(self, account: FakeAccount, request: _Request, method: str) -> tuple[int, dict | None]:
        with self.lock:
            return getattr(self, "_" + method.replace(".", "_"))(account, request)

    def _message_input(self, request: _Request) -> tuple[bytes, str | None, str | None]:
        """(raw bytes, threadId, draft id) from a JSON body or a media / multipart upload."""
        if request.params.get("upload"):
            kind = request.arg("uploadType")
            if kind == "media":
                return request.body, None, None
            if kind == "multipart":
                metadata, media = _split_related(request.headers.get("Content-Type", ""), request.body)
                message = metadata.get("message", {})
                return media, message.get("threadId"), metadata.get("id")
            raise ApiError(400, "badRequest", f"uploadType {kind!r} is not supported here")
        payload = request.json()
        message = payload.get("message") or {}
        raw = message.get("raw")
        return (unb64url(raw) if raw else b""), message.get("threadId"), payload.get("id")

    def _getProfile(self, account: FakeAccount, request: _Request):
        return 200, {"emailAddress": account.address, "messagesTotal": len(account.messages),
                     "threadsTotal": len(account.threads), "historyId": str(account.history_id)}

    def _drafts_create(self, account: FakeAccount, request: _Request):
        raw, thread_id, _ = self._message_input(request)
        if not raw:
            raise ApiError(400, "invalidArgument", "Missing draft message")
        draft_id, stored = account._create_draft(raw, thread_id)
        return 200, {"id": draft_id, "message": {"id": stored.id, "threadId": stored.thread_id,
                                                 "labelIds": stored.labels}}

    def _draft_resource(self, account: FakeAccount, draft_id: str, fmt: str) -> dict:
        if draft_id not in account.drafts:
            raise ApiError(404, "notFound", "Requested entity was not found.")
        return {"id": draft_id, "message": _resource(account.messages[account.drafts[draft_id]], fmt)}

    def _drafts_get(self, account: FakeAccount, request: _Request):
        return 200, self._draft_resource(account, request.params["id"], request.arg("format", "full"))

    def _drafts_list(self, account: FakeAccount, request: _Request):
        ids = [d for d, m in account.drafts.items()
               if _matches(account.messages[m], request.arg("q") or "")]
        page, token = _page(ids, request.arg("pageToken"), int(request.arg("maxResults") or self.list_page_size))
        drafts = [{"id": d, "message": {"id": account.drafts[d], "threadId":
                                        account.messages[account.drafts[d]].thread_id}} for d in page]
        return 200, {**({"drafts": drafts} if drafts else {}), **({"nextPageToken": token} if token else {}),
                     "resultSizeEstimate": len(ids)}

    def _drafts_update(self, account: FakeAccount, request: _Request):
        draft_id = request.params["id"]
        if draft_id not in account.drafts:
            raise ApiError(404, "notFound", "Requested entity was not found.")
        raw, thread_id, _ = self._message_input(request)
        stored = account._replace_draft(draft_id, raw, thread_id)
        return 200, {"id": draft_id, "message": {"id": stored.id, "threadId": stored.thread_id,
                                                 "labelIds": stored.labels}}

    def _drafts_delete(self, account: FakeAccount, request: _Request):
        draft_id = request.params["id"]
        if draft_id not in account.drafts:
            raise ApiError(404, "notFound", "Requested entity was not found.")
        account._delete(account.drafts.pop(draft_id))
        return 204, None

    def _drafts_send(self, account: FakeAccount, request: _Request):
        raw, thread_id, draft_id = self._message_input(request)
        if not draft_id or draft_id not in account.drafts:
            raise ApiError(404, "notFound", "Requested entity was not found.")
        if raw:
            account._replace_draft(draft_id, raw, thread_id)
        sent = account._send_draft(draft_id, "api")
        return 200, {"id": sent.id, "threadId": sent.thread_id, "labelIds": sent.labels}

    def _history_list(self, account: FakeAccount, request: _Request):
        start_text = request.arg("startHistoryId")
        if not start_text or not start_text.isdigit():
            raise ApiError(400, "invalidArgument", "Invalid startHistoryId")
        start = int(start_text)
        if start < account.expired_before:
            raise ApiError(404, "notFound", "Requested entity was not found.")
        kinds = {HISTORY_KIND[t] for t in request.query.get("historyTypes", [])} or set(HISTORY_KIND.values())
        label = request.arg("labelId")
        records = [r for r in account.history if int(r["id"]) > start and kinds & r.keys()
                   and (label is None or any(label in c["message"]["labelIds"]
                                             for k in kinds & r.keys() for c in r[k]))]
        records = [{k: v for k, v in r.items() if k in ("id", "messages") or k in kinds} for r in records]
        size = min(int(request.arg("maxResults") or self.history_page_size), self.history_page_size)
        page, token = _page(records, request.arg("pageToken"), size)
        answer: dict[str, Any] = {"historyId": str(account.history_id)}
        if page:
            answer["history"] = page
        if token:
            answer["nextPageToken"] = token
        return 200, answer

    def _messages_list(self, account: FakeAccount, request: _Request):
        labels = set(request.query.get("labelIds", []))
        query = request.arg("q") or ""
        found = [m for m in sorted(account.messages.values(), key=lambda m: -m.history_id)
                 if labels <= set(m.labels) and _matches(m, query)
                 and not {"SPAM", "TRASH"} & set(m.labels)]
        page, token = _page(found, request.arg("pageToken"), int(request.arg("maxResults") or self.list_page_size))
        refs = [{"id": m.id, "threadId": m.thread_id} for m in page]
        return 200, {**({"messages": refs} if refs else {}), **({"nextPageToken": token} if token else {}),
                     "resultSizeEstimate": len(found)}

    def _messages_get(self, account: FakeAccount, request: _Request):
        stored = account.messages.get(request.params["id"])
        if stored is None:
            raise ApiError(404, "notFound", "Requested entity was not found.")
        return 200, _resource(stored, request.arg("format", "full"), request.query.get("metadataHeaders"))

    def _threads_get(self, account: FakeAccount, request: _Request):
        thread_id = request.params["id"]
        if thread_id not in account.threads:
            raise ApiError(404, "notFound", "Requested entity was not found.")
        messages = [account.messages[i] for i in account.threads[thread_id]]
        fmt = request.arg("format", "full")
        return 200, {"id": thread_id, "historyId": str(max(m.history_id for m in messages)),
                     "messages": [_resource(m, fmt, request.query.get("metadataHeaders")) for m in messages]}


def _page(items: list, token: str | None, size: int) -> tuple[list, str | None]:
    start = int(token) if token and token.isdigit() else 0
    end = start + max(size, 1)
    return items[start:end], (str(end) if end < len(items) else None)


def _matches(message: StoredMessage, query: str) -> bool:
    """The slice of Gmail search the fake understands: `rfc822msgid:`; anything else is refused."""
    for term in query.split():
        name, _, value = term.partition(":")
        if name.lower() != "rfc822msgid" or not value:
            raise ApiError(400, "invalidArgument", f"The fake Gmail does not understand the query term {term!r}")
        wanted = value.strip("<>").lower()
        if (message.message_id or "").strip("<>").lower() != wanted:
            return False
    return True


def _snippet(message: EmailMessage) -> str:
    return html.escape(" ".join(_text_of(message).split())[:200])


def _payload(part: EmailMessage, part_id: str, with_bodies: bool, wanted: list[str] | None) -> dict:
    headers = [{"name": k, "value": str(v)} for k, v in part.items()
               if wanted is None or k.lower() in {w.lower() for w in wanted}]
    payload: dict[str, Any] = {"partId": part_id, "mimeType": part.get_content_type(),
                               "filename": part.get_filename() or "", "headers": headers, "body": {"size": 0}}
    if not with_bodies:
        return payload
    if part.is_multipart():
        prefix = f"{part_id}." if part_id else ""
        payload["parts"] = [_payload(sub, f"{prefix}{i}", True, None) for i, sub in enumerate(part.iter_parts())]
    else:
        data = part.get_payload(decode=True)
        if data is None:  # message/* parts: keep their text as the body
            inner = part.get_payload()
            data = b"\n".join(m.as_bytes() for m in inner) if isinstance(inner, list) else str(inner).encode()
        payload["body"] = {"size": len(data), **({"data": b64url(data)} if data else {})}
    return payload


def _resource(stored: StoredMessage, fmt: str, metadata_headers: list[str] | None = None) -> dict:
    parsed = stored.parsed
    resource: dict[str, Any] = {"id": stored.id, "threadId": stored.thread_id, "labelIds": list(stored.labels),
                                "snippet": _snippet(parsed), "historyId": str(stored.history_id),
                                "internalDate": str(stored.internal_date), "sizeEstimate": len(stored.raw)}
    if fmt == "raw":
        resource["raw"] = b64url(stored.raw)
    elif fmt == "metadata":
        resource["payload"] = _payload(parsed, "", False, metadata_headers or None)
    elif fmt == "full":
        resource["payload"] = _payload(parsed, "", True, None)
    elif fmt != "minimal":
        raise ApiError(400, "invalidArgument", f"Invalid value for format: {fmt}")
    return resource


def _split_related(content_type: str, body: bytes) -> tuple[dict, bytes]:
    """The JSON metadata and the message bytes of a multipart/related upload."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        raise ApiError(400, "badRequest", "multipart upload without a boundary")
    delimiter = b"--" + match.group(1).encode()
    sections = [s for s in body.split(delimiter)[1:] if not s.startswith(b"--")]
    if len(sections) != 2:
        raise ApiError(400, "badRequest", "a multipart upload has exactly two parts")

    def content(section: bytes) -> bytes:
        """What follows the part's own headers (the first blank line, in either line ending)."""
        section = section.lstrip(b"\r\n")
        found = [(i, len(sep)) for sep in (b"\r\n\r\n", b"\n\n") if (i := section.find(sep)) >= 0]
        if not found:
            return b""
        start, width = min(found)
        return section[start + width:].rstrip(b"\r\n")

    return json.loads(content(sections[0]) or b"{}"), content(sections[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve a fake Gmail API and Google OAuth endpoints.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--account", action="append", default=[],
                        help="ADDRESS or ADDRESS=REFRESH_TOKEN; repeatable (default rep@example.com)")
    parser.add_argument("--client-id", default="cadence-test.apps.googleusercontent.com")
    parser.add_argument("--client-secret", default="fake-client-secret")
    args = parser.parse_args(argv)
    server = FakeGmail(client_id=args.client_id, client_secret=args.client_secret, host=args.host, port=args.port)
    tokens = {}
    for spec in args.account or ["rep@example.com"]:
        address, _, token = spec.partition("=")
        tokens[address] = server.add_account(address, refresh_token=token or None).refresh_token
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server.start()
    print(json.dumps({"api_url": server.api_url, "token_url": server.token_url, "auth_url": server.auth_url,
                      "client_id": server.client_id, "client_secret": server.client_secret,
                      "refresh_tokens": tokens}), flush=True)
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
