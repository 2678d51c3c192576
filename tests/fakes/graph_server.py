"""A stateful fake of the Microsoft Graph mail API, over real HTTP on 127.0.0.1.

It keeps, per mailbox, the folders Cadence cares about (drafts, sentitems, inbox, deleteditems),
messages with immutable ids that survive a move from Drafts to Sent Items, conversations, and
delta tokens per folder. It answers the calls the Outlook connector makes (create, createReply,
PATCH, DELETE, send, GET, `$value` (the MIME), `$filter=internetMessageId eq '...'`,
`messages/delta`) with Graph's
status codes and error bodies, and it lets a test play the people around the mailbox (a contact
replies, the rep sends a draft from Outlook, a mail server bounces) and inject faults (429 with
Retry-After, a 504 on a send that still delivered, a lost send response, expired delta tokens).

`FakeHTTPServer` is the small threaded HTTP(S) server both fakes run on.
Run alone: `python -m tests.fakes.graph_server --port 8025 --address rep@example.com`.
"""
from __future__ import annotations

import argparse
import html
import itertools
import json
import re
import secrets
import threading
import traceback
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
import email as stdlib_email
import email.policy
from email.message import EmailMessage, Message
from email.utils import format_datetime, getaddresses
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, quote, unquote, urlsplit

# --------------------------------------------------------------------------- HTTP plumbing


@dataclass
class Request:
    method: str
    path: str  # percent-decoded, without the query
    query: dict[str, str]  # first value of each parameter, decoded
    headers: Message
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode(), keep_blank_values=True).items()}


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop_connection: bool = False  # close the socket without answering

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> "Reply":
        return cls(status, json.dumps(payload).encode(),
                   {"Content-Type": "application/json", **(headers or {})})


class FakeHTTPServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 (HTTPS with `ssl_context`) calling `handle`."""

    def __init__(self, *, port: int = 0, ssl_context=None):
        self._port = port
        self._ssl_context = ssl_context
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def handle(self, request: Request) -> Reply:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "server not started"
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> "FakeHTTPServer":
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            wbufsize = 1 << 16  # one write per answer (headers and body), flushed per request
            disable_nagle_algorithm = True

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def _serve(self) -> None:
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Request(self.command, unquote(split.path),
                                  {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()},
                                  self.headers, body)
                try:
                    reply = owner.handle(request)
                except Exception:  # a bug in the fake: say so loudly to the client
                    reply = Reply(500, traceback.format_exc().encode(), {"Content-Type": "text/plain"})
                if reply.drop_connection:
                    self.close_connection = True
                    return
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(reply.body)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve

        httpd = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        httpd.daemon_threads = True
        if self._ssl_context is not None:
            httpd.socket = self._ssl_context.wrap_socket(httpd.socket, server_side=True)
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --------------------------------------------------------------------------- the mail model

FOLDER_NAMES = {"inbox": "Inbox", "drafts": "Drafts", "sentitems": "Sent Items",
                "deleteditems": "Deleted Items", "outbox": "Outbox"}
MAX_CUSTOM_HEADERS = 5  # Graph refuses more custom internetMessageHeaders than this
_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def html_to_text(body: str) -> str:
    text = re.sub(r"<(br|/p|/div)\s*/?>", "\n", body, flags=re.I)
    text = html.unescape(re.sub(r"<[^>]+>", "", text))
    return re.sub(r"[ \t]+", " ", text).strip()


@dataclass
class FakeMessage:
    """One message as the fake Graph stores it."""

    id: str  # immutable id
    folder: str  # well-known folder name
    subject: str
    body: str
    body_type: str  # "html" or "text"
    sender: tuple[str, str]  # (name, address)
    to: list[tuple[str, str]]
    internet_message_id: str
    conversation_id: str
    headers: list[tuple[str, str]] = field(default_factory=list)  # custom (drafts) or all (received)
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    is_draft: bool = True
    created: datetime = field(default_factory=_now)
    modified: datetime = field(default_factory=_now)
    received: datetime | None = None
    sent: datetime | None = None
    seq: int = 0
    mime: bytes | None = None  # the message as it arrived over SMTP; `$value` answers it

    @property
    def text(self) -> str:
        return html_to_text(self.body) if self.body_type == "html" else self.body


@dataclass(frozen=True)
class OutboundMessage:
    """A message that left a mailbox: the fake's record of 'what really went out'."""

    mailbox: str
    internet_message_id: str
    to: tuple[str, ...]
    subject: str
    body_text: str
    in_reply_to: str | None
    references: tuple[str, ...]
    headers: tuple[tuple[str, str], ...]
    at: datetime


class FakeMailbox:
    def __init__(self, address: str, name: str, number: int):
        self.address = address
        self.name = name
        self.folder_ids = {f: f"AQMkAD{number:04d}{f.upper()}AAAAAQ==" for f in FOLDER_NAMES}
        self.messages: dict[str, FakeMessage] = {}
        self.removed: dict[str, list[tuple[int, str]]] = {f: [] for f in FOLDER_NAMES}

    def folder_of_id(self, folder_id: str) -> str | None:
        return next((f for f, i in self.folder_ids.items() if i == folder_id), None)


@dataclass
class _DeltaState:
    address: str
    folder: str
    select: tuple[str, ...] | None
    since: int  # changes with a larger seq are new to this token
    epoch: int
    remaining: list[str] = field(default_factory=list)  # ids still to page out ("-id" = removed)
    snapshot: int = 0


@dataclass
class _Fault:
    method: str | None
    path: re.Pattern
    status: int
    code: str
    message: str
    retry_after: float | None = None
    times: int = 1
    after_handling: bool = False  # do the work, then answer with the fault
    drop: bool = False  # do the work, then close the connection without an answer


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


class GraphError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


# --------------------------------------------------------------------------- the server


class FakeGraphServer(FakeHTTPServer):
    """Graph's mail API at `{base_url}/v1.0`. `identity` (a FakeIdentityServer) validates
    bearer tokens and names the signed-in user; without it any bearer token is the
    `default_address` mailbox."""

    PREFIX = "/v1.0"

    def __init__(self, *, identity=None, default_address: str | None = None, port: int = 0,
                 page_size: int = 10, response_delay: float = 0.0, clock: Callable[[], datetime] = _now):
        super().__init__(port=port)
        self.identity = identity
        self.default_address = default_address
        self.page_size = page_size
        self.response_delay = response_delay
        self.clock = clock
        self.lock = threading.RLock()
        self.mailboxes: dict[str, FakeMailbox] = {}
        self.outbound: list[OutboundMessage] = []
        self.requests: list[RecordedRequest] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._faults: list[_Fault] = []
        self._seq = itertools.count(1)
        self._ids = itertools.count(1)
        self._delta_epoch = 0
        self._delta_states: dict[str, _DeltaState] = {}
        if default_address:
            self.add_mailbox(default_address)

    @property
    def graph_url(self) -> str:
        return self.base_url + self.PREFIX

    # ---- mailboxes and records

    def add_mailbox(self, address: str, name: str | None = None) -> FakeMailbox:
        with self.lock:
            key = address.lower()
            if key not in self.mailboxes:
                self.mailboxes[key] = FakeMailbox(address, name or address.split("@")[0].title(),
                                                  len(self.mailboxes) + 1)
            return self.mailboxes[key]

    def mailbox(self, address: str) -> FakeMailbox:
        return self.add_mailbox(address)

    def messages(self, address: str, folder: str) -> list[FakeMessage]:
        """Copies of the messages in one folder (well-known name), oldest change first."""
        with self.lock:
            box = self.mailbox(address)
            return [replace(m) for m in sorted(box.messages.values(), key=lambda m: m.seq) if m.folder == folder]

    def message(self, address: str, message_id: str) -> FakeMessage:
        with self.lock:
            return replace(self.mailbox(address).messages[message_id])

    def sent_by(self, address: str) -> list[OutboundMessage]:
        with self.lock:
            return [o for o in self.outbound if o.mailbox.lower() == address.lower()]

    # ---- the people around the mailbox

    def deliver(self, address: str, *, from_address: str, subject: str, body_text: str,
                from_name: str | None = None, in_reply_to_id: str | None = None,
                headers: dict[str, str] | None = None) -> FakeMessage:
        """A message arrives in the inbox; with `in_reply_to_id` (an immutable id in this
        mailbox) it answers that message and joins its conversation."""
        with self.lock:
            box = self.mailbox(address)
            parent = box.messages[in_reply_to_id] if in_reply_to_id else None
            imid = f"<{uuid.uuid4().hex}@{from_address.split('@')[-1]}>"
            all_headers = [("Received", "from mx.prospect.example by outlook.example"),
                           ("From", f"{from_name or from_address} <{from_address}>"),
                           ("To", address), ("Subject", subject), ("Message-ID", imid),
                           ("Content-Type", "text/plain; charset=utf-8")]
            if parent:
                all_headers += [("In-Reply-To", parent.internet_message_id),
                                ("References", " ".join(parent.references + [parent.internet_message_id]))]
            all_headers += list((headers or {}).items())
            message = FakeMessage(
                id=self._new_id(), folder="inbox", subject=subject, body=body_text, body_type="text",
                sender=(from_name or from_address, from_address), to=[(box.name, box.address)],
                internet_message_id=imid,
                conversation_id=parent.conversation_id if parent else self._new_conversation(),
                headers=all_headers, in_reply_to=parent.internet_message_id if parent else None,
                references=(parent.references + [parent.internet_message_id]) if parent else [],
                is_draft=False, received=self.clock(), sent=self.clock())
            self._touch(box, message)
            return replace(message)

    def deliver_mime(self, address: str, raw: bytes) -> FakeMessage:
        """A message arrives over SMTP as these bytes (an .eml): Graph shows its headers, its
        text, and the conversation of the message its In-Reply-To/References name, if any."""
        parsed = stdlib_email.message_from_bytes(raw, policy=email.policy.default)
        with self.lock:
            box = self.mailbox(address)
            ids = re.findall(r"<[^<>\s]+>", f"{parsed.get('In-Reply-To', '')} {parsed.get('References', '')}")
            parent = next((m for m in box.messages.values() if m.internet_message_id in ids), None)
            senders = [a for _, a in getaddresses([str(parsed.get("From", ""))]) if a]
            body_part = parsed.get_body(("plain", "html")) if isinstance(parsed, EmailMessage) else None
            body = body_part.get_content() if body_part is not None else ""
            refs = re.findall(r"<[^<>\s]+>", str(parsed.get("References", "")))
            message = FakeMessage(
                id=self._new_id(), folder="inbox", subject=str(parsed.get("Subject", "")),
                body=body, body_type="html" if body_part is not None and body_part.get_content_subtype() == "html" else "text",
                sender=(senders[0] if senders else "", senders[0] if senders else ""), to=[(box.name, box.address)],
                internet_message_id=str(parsed.get("Message-ID", f"<{uuid.uuid4().hex}@fake.example>")).strip(),
                conversation_id=parent.conversation_id if parent else self._new_conversation(),
                headers=[(k, str(v)) for k, v in parsed.items()],
                in_reply_to=(re.findall(r"<[^<>\s]+>", str(parsed.get("In-Reply-To", ""))) or [None])[0],
                references=refs, is_draft=False, received=self.clock(), sent=self.clock(), mime=raw)
            self._touch(box, message)
            return replace(message)

    def user_sends_draft(self, address: str, message_id: str, *, new_subject: str | None = None,
                         new_body_html: str | None = None) -> FakeMessage:
        """The rep presses Send in Outlook, maybe after editing the draft."""
        with self.lock:
            box = self.mailbox(address)
            message = box.messages[message_id]
            if new_subject is not None:
                message.subject = new_subject
            if new_body_html is not None:
                message.body, message.body_type = new_body_html, "html"
            self._send(box, message)
            return replace(message)

    def mark_read(self, address: str, message_id: str) -> None:
        """The rep opens a message: it changes, so delta reports it again."""
        with self.lock:
            box = self.mailbox(address)
            self._touch(box, box.messages[message_id])

    def bounce(self, address: str, original_id: str, *, recipient: str,
               reason: str = "550 5.1.1 RESOLVER.ADR.RecipNotFound; not found",
               with_reference_headers: bool = False) -> FakeMessage:
        """Exchange's non-delivery report for a sent message arrives in the inbox. The
        original's Message-ID is only in the report's text unless `with_reference_headers`."""
        with self.lock:
            box = self.mailbox(address)
            original = box.messages[original_id]
            domain = box.address.split("@")[-1]
            postmaster = f"postmaster@{domain}"
            body = (
                f"<p>Your message to {recipient} couldn't be delivered.</p>"
                f"<p>{recipient.split('@')[0]} wasn't found at {recipient.split('@')[-1]}.</p>"
                "<p>Diagnostic information for administrators:</p>"
                "<p>Generating server: BN8PR01MB0000.prod.outlook.example</p>"
                f"<p>{recipient}<br>Remote server returned '{reason}'</p>"
                "<p>Original message headers:</p>"
                f"<pre>From: {box.name} &lt;{box.address}&gt;\nTo: {', '.join(a for _, a in original.to)}\n"
                f"Subject: {html.escape(original.subject)}\n"
                f"Message-ID: {html.escape(original.internet_message_id)}\n"
                "Content-Type: text/html; charset=utf-8</pre>")
            headers = [("From", f"Microsoft Outlook <{postmaster}>"), ("To", box.address),
                       ("Subject", f"Undeliverable: {original.subject}"),
                       ("Message-ID", f"<{uuid.uuid4().hex}@{domain}>"),
                       ("Content-Type", "multipart/report; report-type=delivery-status; boundary=\"b1\""),
                       ("X-MS-Exchange-Message-Is-Ndr", ""), ("Auto-Submitted", "auto-replied")]
            if with_reference_headers:
                headers += [("In-Reply-To", original.internet_message_id),
                            ("References", original.internet_message_id)]
            code = re.search(r"\b[45]\.\d{1,3}\.\d{1,3}\b", reason)
            status = code.group() if code else "5.0.0"
            mime = "".join(f"{n}: {v}\n" for n, v in headers) + (
                f"Date: {format_datetime(self.clock())}\nMIME-Version: 1.0\n\n"
                "--b1\nContent-Type: text/html; charset=utf-8\n\n" + body + "\n"
                "--b1\nContent-Type: message/delivery-status\n\n"
                "Reporting-MTA: dns;BN8PR01MB0000.prod.outlook.example\n"
                f"Received-From-MTA: dns;{domain}\n\n"
                f"Final-Recipient: rfc822;{recipient}\nAction: failed\nStatus: {status}\n"
                f"Diagnostic-Code: smtp;{reason}\nRemote-MTA: dns;mx.{recipient.split('@')[-1]}\n\n"
                "--b1\nContent-Type: text/rfc822-headers\n\n"
                + "".join(f"{n}: {v}\n" for n, v in self._all_headers(box, original)) + "\n--b1--\n")
            message = FakeMessage(
                id=self._new_id(), folder="inbox", subject=f"Undeliverable: {original.subject}",
                body=body, body_type="html", sender=("Microsoft Outlook", postmaster),
                to=[(box.name, box.address)], internet_message_id=headers[3][1],
                conversation_id=original.conversation_id, headers=headers,
                in_reply_to=original.internet_message_id if with_reference_headers else None,
                is_draft=False, received=self.clock(), sent=self.clock(), mime=mime.encode())
            self._touch(box, message)
            return replace(message)

    # ---- faults

    def fail_next(self, method: str | None, path_pattern: str, *, status: int = 503,
                  code: str = "ServiceUnavailable", message: str = "The service is unavailable.",
                  retry_after: float | None = None, times: int = 1, after_handling: bool = False) -> None:
        """The next `times` matching requests fail: before doing anything, or, with
        `after_handling`, after doing the work (the caller never learns it was done)."""
        with self.lock:
            self._faults.append(_Fault(method, re.compile(path_pattern), status, code, message,
                                       retry_after, times, after_handling))

    def throttle_next(self, method: str | None = None, path_pattern: str = ".*", *,
                      retry_after: float = 7, times: int = 1) -> None:
        self.fail_next(method, path_pattern, status=429, code="ApplicationThrottled",
                       message="Application is over its MailboxConcurrency limit.",
                       retry_after=retry_after, times=times)

    def fail_next_send_after_delivery(self, status: int = 504) -> None:
        """The next send goes out, and the caller still gets an error (Graph has been seen
        to answer 504 to sends it delivered)."""
        with self.lock:
            self._faults.append(_Fault("POST", re.compile(r"/send$"), status, "UnknownError",
                                       "The gateway did not receive a timely response.",
                                       after_handling=True))

    def lose_next_send_response(self) -> None:
        """The next send goes out but the connection closes before the answer."""
        with self.lock:
            self._faults.append(_Fault("POST", re.compile(r"/send$"), 0, "", "", after_handling=True, drop=True))

    def expire_delta_tokens(self) -> None:
        """Every delta and skip token handed out so far answers 410 Gone from now on."""
        with self.lock:
            self._delta_epoch += 1

    # ---- internals

    def _new_id(self) -> str:
        return f"AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0A{next(self._ids):06d}AAA="

    @staticmethod
    def _new_conversation() -> str:
        return "AAQkAD" + secrets.token_hex(12).upper() + "="

    def _touch(self, box: FakeMailbox, message: FakeMessage, old_folder: str | None = None) -> None:
        message.seq = next(self._seq)
        message.modified = self.clock()
        box.messages[message.id] = message
        if old_folder and old_folder != message.folder:
            box.removed[old_folder].append((message.seq, message.id))

    def _send(self, box: FakeMailbox, message: FakeMessage) -> None:
        recipients = [a for _, a in message.to]
        bad = [a for a in recipients if not _ADDRESS.match(a)]
        if not recipients or bad:
            raise GraphError(400, "ErrorInvalidRecipients",
                             "At least one recipient isn't valid., Recipient "
                             f"'{(bad or [''])[0]}' isn't resolved. All recipients must be resolved "
                             "before a message can be submitted.")
        old = message.folder
        message.folder, message.is_draft = "sentitems", False
        message.sent = message.received = self.clock()
        self._touch(box, message, old)
        self.outbound.append(OutboundMessage(
            box.address, message.internet_message_id, tuple(recipients), message.subject,
            message.text, message.in_reply_to, tuple(message.references), tuple(message.headers),
            message.sent))

    def _render_id(self, box: FakeMailbox, message: FakeMessage, immutable: bool, folder: str | None = None) -> str:
        # Without `Prefer: IdType="ImmutableId"` Graph hands out ids that change when the
        # message moves to another folder; the fake makes that visible.
        return message.id if immutable else f"R.{folder or message.folder}.{message.id}"

    def _resolve(self, box: FakeMailbox, message_id: str) -> FakeMessage:
        if message_id.startswith("R."):
            _, folder, immutable = message_id.split(".", 2)
            found = box.messages.get(immutable)
            if found is None or found.folder != folder:
                found = None
        else:
            found = box.messages.get(message_id)
        if found is None:
            raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        return found

    def _render(self, box: FakeMailbox, m: FakeMessage, prefer: dict[str, str],
                select: tuple[str, ...] | None) -> dict[str, Any]:
        immutable = prefer.get("idtype", "").strip('"') == "ImmutableId"
        wants_text = prefer.get("outlook.body-content-type", "").strip('"') == "text"
        rid = self._render_id(box, m, immutable)
        body_type = "text" if wants_text else m.body_type
        body = m.text if wants_text or m.body_type == "text" else m.body

        def recipient(name_address):
            return {"emailAddress": {"name": name_address[0], "address": name_address[1]}}

        full = {
            "@odata.etag": f'W/"CQAAABYAAA{m.seq:08d}"', "id": rid,
            "createdDateTime": _iso(m.created), "lastModifiedDateTime": _iso(m.modified),
            "receivedDateTime": _iso(m.received or m.created), "sentDateTime": _iso(m.sent),
            "hasAttachments": False, "internetMessageId": m.internet_message_id,
            "subject": m.subject, "bodyPreview": m.text[:255], "importance": "normal",
            "parentFolderId": box.folder_ids[m.folder], "conversationId": m.conversation_id,
            "isDeliveryReceiptRequested": False, "isReadReceiptRequested": False,
            "isRead": m.folder != "inbox", "isDraft": m.is_draft,
            "webLink": f"https://outlook.office365.example/owa/?ItemID={quote(rid, safe='')}"
                       "&exvsurl=1&viewmodel=ReadMessageItem",
            "body": {"contentType": body_type, "content": body},
            "sender": recipient(m.sender), "from": recipient(m.sender),
            "toRecipients": [recipient(r) for r in m.to], "ccRecipients": [], "bccRecipients": [],
            "replyTo": [],
        }
        if select is None:
            return full
        out = {"@odata.etag": full["@odata.etag"], "id": rid}
        for name in select:
            if name == "internetMessageHeaders":
                out[name] = [{"name": k, "value": v} for k, v in self._all_headers(box, m)]
            elif name in full:
                out[name] = full[name]
        return out

    def _mime(self, box: FakeMailbox, m: FakeMessage) -> bytes:
        """What `$value` answers: the bytes that arrived, or a message made of what is stored."""
        if m.mime is not None:
            return m.mime
        built = EmailMessage(policy=email.policy.default)
        for name, value in self._all_headers(box, m):
            if name.lower() not in ("content-type", "content-transfer-encoding", "mime-version"):
                built[name] = value
        built.set_content(m.body, subtype="html" if m.body_type == "html" else "plain")
        return built.as_bytes()

    def _all_headers(self, box: FakeMailbox, m: FakeMessage) -> list[tuple[str, str]]:
        if m.folder == "inbox" or m.is_draft:
            return list(m.headers)
        headers = [("From", f"{box.name} <{box.address}>"),
                   ("To", ", ".join(a for _, a in m.to)), ("Subject", m.subject),
                   ("Message-ID", m.internet_message_id)]
        if m.in_reply_to:
            headers += [("In-Reply-To", m.in_reply_to), ("References", " ".join(m.references))]
        return headers + list(m.headers) + [("Content-Type", "text/html; charset=utf-8")]

    # ---- HTTP

    def handle(self, request: Request) -> Reply:
        try:
            with self.lock:
                self.requests.append(RecordedRequest(
                    request.method, request.path, dict(request.query), dict(request.headers.items()),
                    _maybe_json(request.body)))
                box = self._authenticate(request)
                self._in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self._in_flight)
            try:
                if self.response_delay:  # lets tests see how many requests overlap
                    threading.Event().wait(self.response_delay)
                return self._handle_for(request, box)
            finally:
                with self.lock:
                    self._in_flight -= 1
        except GraphError as error:
            return _error_reply(error)

    def _authenticate(self, request: Request) -> FakeMailbox:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        if not token:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        if self.identity is not None:
            username = self.identity.user_for_access_token(token)
            if username is None:
                raise GraphError(401, "InvalidAuthenticationToken",
                                 "Access token has expired or is not yet valid.")
            return self.mailbox(username)
        if not self.default_address:
            raise GraphError(401, "InvalidAuthenticationToken", "No mailbox behind this token.")
        return self.mailbox(self.default_address)

    def _take_fault(self, request: Request) -> _Fault | None:
        with self.lock:
            for fault in self._faults:
                if (fault.method in (None, request.method)) and fault.path.search(request.path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _handle_for(self, request: Request, box: FakeMailbox) -> Reply:
        fault = self._take_fault(request)
        if fault and not fault.after_handling:
            headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
            raise GraphError(fault.status, fault.code, fault.message, headers)
        with self.lock:
            reply = self._route(request, box)
        if fault and fault.drop:
            return Reply(0, drop_connection=True)
        if fault:
            raise GraphError(fault.status, fault.code, fault.message)
        return reply

    def _route(self, request: Request, box: FakeMailbox) -> Reply:
        if not request.path.startswith(self.PREFIX + "/"):
            raise GraphError(400, "BadRequest", f"Resource not found for the segment '{request.path}'.")
        path = request.path[len(self.PREFIX):]
        prefer = _parse_prefer(request.headers.get_all("Prefer") or [])
        select = tuple(s.strip() for s in request.query["$select"].split(",")) if "$select" in request.query else None
        method = request.method
        headers = {"Preference-Applied": 'IdType="ImmutableId"'} if "idtype" in prefer else {}

        if path == "/me" and method == "GET":
            return Reply.json(200, {"userPrincipalName": box.address, "mail": box.address,
                                    "displayName": box.name, "id": str(uuid.uuid5(uuid.NAMESPACE_DNS, box.address))})
        folder_match = re.fullmatch(r"/me/mailFolders(?:/([A-Za-z]+)|\('([A-Za-z]+)'\))(/messages(/delta)?)?", path)
        if folder_match and method == "GET":
            folder = (folder_match.group(1) or folder_match.group(2)).lower()
            if folder not in FOLDER_NAMES:
                raise GraphError(404, "ErrorItemNotFound", "The specified folder could not be found in the store.")
            if folder_match.group(4):
                return self._delta(request, box, folder, prefer, select, headers)
            if folder_match.group(3):
                return self._list(request, box, folder, prefer, select, headers)
            return Reply.json(200, {"id": box.folder_ids[folder], "displayName": FOLDER_NAMES[folder],
                                    "totalItemCount": sum(m.folder == folder for m in box.messages.values())})
        if path == "/me/messages":
            if method == "GET":
                return self._list(request, box, None, prefer, select, headers)
            if method == "POST":
                message = self._create(box, _require_object(request), prefer)
                return Reply.json(201, self._render(box, message, prefer, None), headers)
        item = re.fullmatch(r"/me/messages/([^/]+)(/createReply|/send|/\$value)?", path)
        if item:
            message = self._resolve(box, item.group(1))
            action = item.group(2)
            if action == "/$value" and method == "GET":
                return Reply(200, self._mime(box, message), {"Content-Type": "text/plain"})
            if action == "/send" and method == "POST":
                if not message.is_draft:
                    raise GraphError(400, "ErrorInvalidOperation", "The item has already been sent.")
                self._send(box, message)
                return Reply(202)
            if action == "/createReply" and method == "POST":
                reply = self._create_reply(box, message, request.json() or {}, prefer)
                return Reply.json(201, self._render(box, reply, prefer, None), headers)
            if action is None and method == "GET":
                return Reply.json(200, self._render(box, message, prefer, select), headers)
            if action is None and method == "PATCH":
                self._patch(box, message, _require_object(request))
                return Reply.json(200, self._render(box, message, prefer, None), headers)
            if action is None and method == "DELETE":
                if message.folder == "deleteditems":
                    del box.messages[message.id]
                    box.removed["deleteditems"].append((next(self._seq), message.id))
                else:
                    old, message.folder = message.folder, "deleteditems"
                    self._touch(box, message, old)
                return Reply(204)
        raise GraphError(400, "BadRequest", f"Unsupported request {method} {path}")

    # ---- message operations

    def _check_headers(self, raw: Any) -> list[tuple[str, str]]:
        if raw is None:
            return []
        if not isinstance(raw, list) or not all(isinstance(h, dict) and "name" in h for h in raw):
            raise GraphError(400, "ErrorInvalidProperty", "internetMessageHeaders must be a list of name/value pairs.")
        if len(raw) > MAX_CUSTOM_HEADERS:
            raise GraphError(400, "InvalidInternetMessageHeaderCollection",
                             f"Maximum number of headers in one message should be less than or equal to {MAX_CUSTOM_HEADERS}.")
        for h in raw:
            if not h["name"].lower().startswith("x-"):
                raise GraphError(400, "InvalidInternetMessageHeader",
                                 f"The internet message header name '{h['name']}' should start with 'x-' or 'X-'.")
        return [(h["name"], str(h.get("value", ""))) for h in raw]

    @staticmethod
    def _recipients(raw: Any, field_name: str) -> list[tuple[str, str]]:
        if not isinstance(raw, list):
            raise GraphError(400, "ErrorInvalidProperty", f"{field_name} must be a collection of recipients.")
        try:
            return [(r["emailAddress"].get("name") or r["emailAddress"]["address"], r["emailAddress"]["address"])
                    for r in raw]
        except (KeyError, TypeError, AttributeError):
            raise GraphError(400, "ErrorInvalidProperty", f"{field_name} holds a malformed recipient.") from None

    @staticmethod
    def _message_id(raw: Any) -> str:
        if not isinstance(raw, str) or not re.fullmatch(r"<[^<>\s]+@[^<>\s]+>", raw):
            raise GraphError(400, "ErrorInvalidInternetMessageId",
                             "The internetMessageId must be an RFC 2822 message id such as <id@domain>.")
        return raw

    def _apply(self, message: FakeMessage, data: dict[str, Any]) -> None:
        if "subject" in data:
            message.subject = str(data["subject"] or "")
        if "body" in data:
            body = data["body"] or {}
            message.body = str(body.get("content", ""))
            message.body_type = "html" if str(body.get("contentType", "text")).lower() == "html" else "text"
        if "toRecipients" in data:
            message.to = self._recipients(data["toRecipients"], "toRecipients")
        if "internetMessageId" in data:
            message.internet_message_id = self._message_id(data["internetMessageId"])

    def _create(self, box: FakeMailbox, data: dict[str, Any], prefer: dict[str, str]) -> FakeMessage:
        message = FakeMessage(
            id=self._new_id(), folder="drafts", subject="", body="", body_type="text",
            sender=(box.name, box.address), to=[],
            internet_message_id=f"<{uuid.uuid4().hex}@{box.address.split('@')[-1]}>",
            conversation_id=self._new_conversation(),
            headers=self._check_headers(data.get("internetMessageHeaders")))
        self._apply(message, data)
        self._touch(box, message)
        return message

    def _create_reply(self, box: FakeMailbox, parent: FakeMessage, data: dict[str, Any],
                      prefer: dict[str, str]) -> FakeMessage:
        given = data.get("message") or {}
        if not isinstance(given, dict):
            raise GraphError(400, "ErrorInvalidRequest", "message must be an object.")
        if data.get("comment") and "body" in given:
            raise GraphError(400, "ErrorInvalidRequest",
                             "Specify either a comment or the body property of the message parameter, not both.")
        from_me = parent.sender[1].lower() == box.address.lower()
        message = FakeMessage(
            id=self._new_id(), folder="drafts", subject=f"RE: {parent.subject}",
            body=html.escape(str(data.get("comment") or "")), body_type="html",
            sender=(box.name, box.address), to=list(parent.to) if from_me else [parent.sender],
            internet_message_id=f"<{uuid.uuid4().hex}@{box.address.split('@')[-1]}>",
            conversation_id=parent.conversation_id,
            headers=self._check_headers(given.get("internetMessageHeaders")),
            in_reply_to=parent.internet_message_id,
            references=parent.references + [parent.internet_message_id])
        self._apply(message, given)
        self._touch(box, message)
        return message

    def _patch(self, box: FakeMailbox, message: FakeMessage, data: dict[str, Any]) -> None:
        draft_only = {"subject", "body", "toRecipients", "internetMessageId", "internetMessageHeaders"}
        if not message.is_draft and draft_only & set(data):
            raise GraphError(400, "ErrorInvalidPropertyUpdateSentMessage",
                             "Update operation is invalid for property of a sent message.")
        if "internetMessageHeaders" in data:
            message.headers = self._check_headers(data["internetMessageHeaders"])
        self._apply(message, data)
        self._touch(box, message)

    def _list(self, request: Request, box: FakeMailbox, folder: str | None, prefer, select, headers) -> Reply:
        found = [m for m in sorted(box.messages.values(), key=lambda m: m.seq)
                 if folder is None or m.folder == folder]
        expression = request.query.get("$filter")
        if expression is not None:
            match = re.fullmatch(r"\s*internetMessageId\s+eq\s+'((?:[^']|'')*)'\s*", expression)
            if not match:
                raise GraphError(400, "ErrorInvalidUrlQueryFilter", "The query filter contains one or more invalid nodes.")
            wanted = match.group(1).replace("''", "'")
            found = [m for m in found if m.internet_message_id == wanted]
        top = int(request.query.get("$top", "10"))
        return Reply.json(200, {"value": [self._render(box, m, prefer, select) for m in found[:top]]}, headers)

    def _delta(self, request: Request, box: FakeMailbox, folder: str, prefer, select, headers) -> Reply:
        # odata.maxpagesize is a wish: the server may page smaller (the fake's page_size).
        page_size = min(int(prefer.get("odata.maxpagesize", self.page_size)), self.page_size)
        token = request.query.get("$deltatoken") or request.query.get("$skiptoken")
        if token is not None:
            state = self._delta_states.get(token)
            if state is None or state.epoch != self._delta_epoch or state.address != box.address.lower():
                raise GraphError(410, "SyncStateNotFound",
                                 "The sync state is not found or has expired. Please start a full sync.")
            if "$deltatoken" in request.query:
                snapshot = next(self._seq)
                changed = [m.id for m in sorted(box.messages.values(), key=lambda m: m.seq)
                           if m.folder == folder and m.seq > state.since]
                gone = [f"-{i}" for s, i in box.removed[folder]
                        if s > state.since and (i not in box.messages or box.messages[i].folder != folder)]
                state = replace(state, remaining=list(dict.fromkeys(changed + gone)), snapshot=snapshot)
        else:
            snapshot = next(self._seq)
            state = _DeltaState(box.address.lower(), folder, select, 0, self._delta_epoch,
                                [m.id for m in sorted(box.messages.values(), key=lambda m: m.seq) if m.folder == folder],
                                snapshot)
        page, rest = state.remaining[:page_size], state.remaining[page_size:]
        immutable = prefer.get("idtype", "").strip('"') == "ImmutableId"
        values = []
        for entry in page:
            if entry.startswith("-"):
                ghost = FakeMessage(id=entry[1:], folder=folder, subject="", body="", body_type="text",
                                    sender=("", ""), to=[], internet_message_id="", conversation_id="")
                values.append({"@odata.type": "#microsoft.graph.message",
                               "id": self._render_id(box, ghost, immutable, folder),
                               "@removed": {"reason": "deleted"}})
            elif entry in box.messages and box.messages[entry].folder == folder:
                values.append(self._render(box, box.messages[entry], prefer, state.select))
        link_base = f"{self.graph_url}/me/mailFolders('{folder}')/messages/delta"
        new_token = secrets.token_urlsafe(12)
        payload: dict[str, Any] = {"@odata.context": f"{self.graph_url}/$metadata#Collection(message)", "value": values}
        if rest:
            self._delta_states[new_token] = replace(state, remaining=rest)
            payload["@odata.nextLink"] = f"{link_base}?$skiptoken={new_token}"
        else:
            self._delta_states[new_token] = replace(state, remaining=[], since=state.snapshot)
            payload["@odata.deltaLink"] = f"{link_base}?$deltatoken={new_token}"
        return Reply.json(200, payload, headers)


def _maybe_json(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return body.decode(errors="replace")


def _require_object(request: Request) -> dict[str, Any]:
    try:
        data = request.json()
    except ValueError:
        raise GraphError(400, "BadRequest", "Unable to read JSON request payload.") from None
    if not isinstance(data, dict):
        raise GraphError(400, "BadRequest", "The request body must be a JSON object.")
    return data


def _parse_prefer(values: list[str]) -> dict[str, str]:
    prefer: dict[str, str] = {}
    for value in values:
        for part in value.split(","):
            name, _, setting = part.strip().partition("=")
            if name:
                prefer[name.strip().lower()] = setting.strip()
    return prefer


def _error_reply(error: GraphError) -> Reply:
    payload = {"error": {"code": error.code, "message": error.message,
                         "innerError": {"date": _iso(_now()), "request-id": str(uuid.uuid4())}}}
    return Reply.json(error.status, payload, error.headers)


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve a fake Microsoft Graph mail API on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--address", default="rep@example.com", help="the mailbox any bearer token opens")
    args = parser.parse_args()
    server = FakeGraphServer(default_address=args.address, port=args.port).start()
    print(f"fake Graph at {server.graph_url} (CADENCE_GRAPH_API_URL); mailbox {args.address}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
