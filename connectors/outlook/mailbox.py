"""The Outlook / Microsoft 365 `Mailbox`: msal for sign-in, Microsoft Graph for mail.

Drafts are Graph messages created in Drafts with our Message-ID as `internetMessageId`; a
threaded step is a `createReply` draft on the previous email, so Exchange keeps it in the same
conversation with In-Reply-To and References set. Ids are immutable ids (`Prefer:
IdType="ImmutableId"`), so the id stored with a task or an automatic send still finds the
message after it moved to Sent Items. Sends are never repeated at transport level: an
interrupted send raises `SendInDoubt`, and `check_sent` reads the mailbox to settle it.
Sync follows delta links on Sent Items and the Inbox; the cursor holds them.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import replace
from typing import Any, Callable, Collection

import requests

from core.email.bounces import looks_like_report, read_bounce
from core.email.read import observed_headers, parse_message
from core.headers import check_header_value
from core.mailbox import (
    DraftNotFound,
    DraftRef,
    Folder,
    ObservedMessage,
    OutgoingEmail,
    PermanentError,
    PollResult,
    ProviderLimits,
    RateLimited,
    SendCheck,
    SendInDoubt,
    SendStatus,
    SentRef,
    TransientError,
)

from .graph import ConnectionLost, GraphBatch, GraphCallFailed, GraphClient
from .identity import TokenSource
from .translate import (
    DRAFTS_FOLDER,
    GRAPH_FOLDERS,
    OBSERVED_FIELDS,
    message_payload,
    observe,
    parse_time,
)

log = logging.getLogger(__name__)

CURSOR_VERSION = 1
RECENT_IDS_KEPT = 1000  # delta repeats a message when it changes (read, flagged): report it once
DELTA_PAGE_SIZE = 50
_STATE_FIELDS = "id,isDraft,parentFolderId,conversationId,internetMessageId,webLink,sentDateTime"


class OutlookMailbox:
    """`Mailbox` for one Microsoft 365 / Outlook.com mailbox, through Microsoft Graph.

    `token_cache` is the mailbox's serialized msal token cache; `on_token_cache_change` gets the
    new serialization whenever msal changes it and must store it. `client_secret=None` makes a
    public client, for mailboxes connected with the device code. `sleep` is used for every wait
    (Retry-After, back-off) so tests do not really wait.
    """

    limits = ProviderLimits(daily=10000, per_minute=30, concurrency=4)

    def __init__(self, address: str, *, client_id: str, client_secret: str | None, authority: str,
                 graph_url: str, token_cache: str | None, on_token_cache_change: Callable[[str], None],
                 account_username: str | None = None, sleep: Callable[[float], None] = time.sleep,
                 http_timeout: float = 30, session: requests.Session | None = None,
                 identity_http_client: Any = None):
        if not address or "@" not in address:
            raise ValueError(f"address must be an email address, got {address!r}")
        self.address = address
        self.tokens = TokenSource(client_id=client_id, client_secret=client_secret, authority=authority,
                                  token_cache=token_cache, on_token_cache_change=on_token_cache_change,
                                  account_username=account_username or address,
                                  http_client=identity_http_client)
        self.graph = GraphClient(graph_url, self.tokens, address=address, session=session, sleep=sleep,
                                 timeout=http_timeout, max_concurrency=self.limits.concurrency or 4)
        self._drafts_folder_id: str | None = None

    # ---- drafts

    def create_draft(self, email: OutgoingEmail) -> DraftRef:
        payload = message_payload(email)
        batch = self.graph.batch()
        if email.reply_to is None:
            created = self._create_once(batch, "/me/messages", payload, email.message_id)
        else:
            parent_id = self._parent_id(batch, email)
            created = self._create_once(batch, f"/me/messages/{parent_id}/createReply",
                                        {"message": payload}, email.message_id)
            created = self._align_reply(batch, created, payload)
        return self._draft_ref(created, email.message_id)

    def update_draft(self, draft: DraftRef, *, subject: str, html_body: str, text_body: str) -> DraftRef:
        """PATCH subject and HTML body (Graph keeps one body; Exchange derives the text part)."""
        check_header_value("Subject", subject)
        batch = self.graph.batch()
        self._live_draft(batch, draft)
        updated = batch.json("PATCH", f"/me/messages/{draft.draft_id}",
                             json={"subject": subject, "body": {"contentType": "HTML", "content": html_body}},
                             repeatable=True)
        return self._draft_ref(updated, draft.message_id)

    def delete_draft(self, draft: DraftRef) -> None:
        batch = self.graph.batch()
        try:
            self._live_draft(batch, draft)
        except DraftNotFound:
            return  # gone, sent or already in Deleted Items: nothing of ours to remove
        try:
            batch.json("DELETE", f"/me/messages/{draft.draft_id}", repeatable=True)
        except DraftNotFound:
            pass

    def find_drafts(self, message_id: str) -> list[DraftRef]:
        """`GET /me/mailFolders('drafts')/messages?$filter=internetMessageId eq '<id>'`, drafts only."""
        wanted = message_id.strip()
        if not wanted.startswith("<"):
            wanted = f"<{wanted.strip('<>')}>"
        batch = self.graph.batch()
        found = self._by_message_id(batch, f"/me/mailFolders('{DRAFTS_FOLDER}')/messages", wanted)
        return [self._draft_ref(m, wanted) for m in found if m.get("isDraft") is not False]

    # ---- sending

    def send_draft(self, draft: DraftRef) -> SentRef:
        batch = self.graph.batch()
        state = self._live_draft(batch, draft)
        try:
            batch.call("POST", f"/me/messages/{draft.draft_id}/send", repeatable=False, retry_throttled=False)
        except ConnectionLost as lost:
            raise SendInDoubt(f"the answer to sending {draft.message_id} was lost ({lost}); "
                              "check_sent tells whether it went out") from None
        except GraphCallFailed as failed:
            failure = failed.failure
            if failure.status >= 500:
                raise SendInDoubt(f"{failure.describe()} while sending {draft.message_id}; Graph has "
                                  "delivered after such answers, so check_sent decides") from None
            if failure.status == 429:
                raise RateLimited(failure.describe(), failure.retry_after) from None
            raise failure.as_error() from None
        return SentRef(draft.message_id, draft.draft_id,
                       state.get("conversationId") or draft.provider_thread_id, None)

    def check_sent(self, message_id: str, draft: DraftRef | None) -> SendStatus:
        batch = self.graph.batch()
        if draft is not None:
            try:
                found = batch.json("GET", f"/me/messages/{draft.draft_id}", params={"$select": _STATE_FIELDS})
            except DraftNotFound:
                found = None
            if found is not None and found.get("isDraft") is False:
                return SendStatus(SendCheck.SENT, self._sent_ref(found, message_id))
            if found is not None:
                return SendStatus(SendCheck.NOT_SENT, detail="the message is still a draft")
        for where in (f"/me/mailFolders('{GRAPH_FOLDERS[Folder.SENT]}')/messages", "/me/messages"):
            for found in self._by_message_id(batch, where, message_id):
                if found.get("isDraft") is False:
                    return SendStatus(SendCheck.SENT, self._sent_ref(found, message_id))
                return SendStatus(SendCheck.NOT_SENT, detail="a draft with that Message-ID is not sent yet")
        if draft is None:
            return SendStatus(SendCheck.NOT_SENT, detail="nothing with that Message-ID is in the mailbox")
        return SendStatus(SendCheck.UNKNOWN,
                          detail="the draft is gone and nothing sent with its Message-ID is in the mailbox")

    # ---- sync

    def poll(self, cursor: str | None, tracked_threads: Collection[str] = ()) -> PollResult:
        links, recent = _read_cursor(cursor)
        batch = self.graph.batch()
        observations: list[ObservedMessage] = []
        resynced = False
        new_links: dict[str, str] = {}
        seen = list(recent)
        seen_set = set(seen)
        tracked = set(tracked_threads)
        for folder, graph_folder in GRAPH_FOLDERS.items():
            start = f"/me/mailFolders('{graph_folder}')/messages/delta"
            link = (links or {}).get(graph_folder)
            report = link is not None  # a first run only finds where "now" is
            try:
                messages, new_links[graph_folder] = self._run_delta(batch, link or start, first=link is None)
            except _DeltaExpired:
                resynced = True
                messages, new_links[graph_folder] = self._run_delta(batch, start, first=True)
                messages = [m for m in messages if m.get("conversationId") in tracked]
            if not report:
                continue
            for payload in messages:
                if "@removed" in payload or payload.get("isDraft"):
                    continue
                key = _short(payload["id"])
                if key in seen_set:
                    continue
                seen.append(key)
                seen_set.add(key)
                observations.append(self._observation(batch, payload, folder))
        return PollResult(tuple(observations), _write_cursor(new_links, seen[-RECENT_IDS_KEPT:]), resynced)

    # ---- internals

    def _create_once(self, batch: GraphBatch, path: str, body: dict[str, Any], message_id: str) -> dict[str, Any]:
        """POST a new message. A create that failed without a clear answer may still have made
        the draft, so before trying again look for it by our Message-ID."""
        for attempt in range(1, batch.client.max_attempts + 1):
            try:
                return batch.call("POST", path, json=body, repeatable=False).json()
            except ConnectionLost as lost:
                failure_reason = str(lost)
            except GraphCallFailed as failed:
                if failed.failure.status < 500:
                    raise failed.failure.as_error() from None
                failure_reason = failed.failure.describe()
            existing = [m for m in self._by_message_id(batch, "/me/messages", message_id) if m.get("isDraft")]
            if existing:
                return batch.json("GET", f"/me/messages/{existing[0]['id']}")
            if attempt < batch.client.max_attempts:
                batch.client.sleep(float(2 ** (attempt - 1)))
        raise TransientError(f"creating the draft {message_id} failed: {failure_reason}")

    def _parent_id(self, batch: GraphBatch, email: OutgoingEmail) -> str:
        """The Graph id of the previous email of the thread: the stored id when it still
        resolves, else the message found by its Message-ID."""
        thread = email.reply_to
        assert thread is not None
        if thread.provider_message_id:
            try:
                batch.json("GET", f"/me/messages/{thread.provider_message_id}", params={"$select": "id"})
                return thread.provider_message_id
            except DraftNotFound:
                pass
        for found in self._by_message_id(batch, "/me/messages", thread.message_id):
            if not found.get("isDraft"):
                return found["id"]
        raise PermanentError(f"reply_to: the previous email {thread.message_id} is no longer in "
                             f"{self.address}, so Outlook cannot reply in its conversation")

    def _align_reply(self, batch: GraphBatch, created: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
        """createReply fills in its own subject, recipients and Message-ID; PATCH ours where they differ."""
        changes: dict[str, Any] = {}
        if created.get("subject") != payload["subject"]:
            changes["subject"] = payload["subject"]
        wanted = [r["emailAddress"]["address"].lower() for r in payload["toRecipients"]]
        got = [(r.get("emailAddress") or {}).get("address", "").lower() for r in created.get("toRecipients") or ()]
        if wanted != got:
            changes["toRecipients"] = payload["toRecipients"]
        if created.get("internetMessageId") != payload["internetMessageId"]:
            changes["internetMessageId"] = payload["internetMessageId"]
        if not changes:
            return created
        return batch.json("PATCH", f"/me/messages/{created['id']}", json=changes, repeatable=True)

    def _drafts_folder(self, batch: GraphBatch) -> str:
        if self._drafts_folder_id is None:
            folder = batch.json("GET", f"/me/mailFolders('{DRAFTS_FOLDER}')", params={"$select": "id"})
            self._drafts_folder_id = folder["id"]
        return self._drafts_folder_id

    def _live_draft(self, batch: GraphBatch, draft: DraftRef) -> dict[str, Any]:
        """The draft's state, or DraftNotFound when it is gone, sent, or out of Drafts (deleted)."""
        state = batch.json("GET", f"/me/messages/{draft.draft_id}", params={"$select": _STATE_FIELDS})
        if state.get("isDraft") is not True:
            raise DraftNotFound(f"draft {draft.message_id} has been sent")
        if state.get("parentFolderId") != self._drafts_folder(batch):
            raise DraftNotFound(f"draft {draft.message_id} is no longer in Drafts (deleted by the user?)")
        return state

    def _by_message_id(self, batch: GraphBatch, collection: str, message_id: str) -> list[dict[str, Any]]:
        literal = message_id.replace("'", "''")
        found = batch.json("GET", collection, params={
            "$filter": f"internetMessageId eq '{literal}'", "$select": _STATE_FIELDS, "$top": "5"})
        return list(found.get("value") or ())

    @staticmethod
    def _draft_ref(message: dict[str, Any], message_id: str) -> DraftRef:
        return DraftRef(draft_id=message["id"], message_id=message_id, provider_message_id=message["id"],
                        provider_thread_id=message.get("conversationId"), web_link=message.get("webLink"))

    @staticmethod
    def _sent_ref(message: dict[str, Any], message_id: str) -> SentRef:
        return SentRef(message_id, message["id"], message.get("conversationId"),
                       parse_time(message.get("sentDateTime")))

    def _run_delta(self, batch: GraphBatch, link: str, *, first: bool) -> tuple[list[dict[str, Any]], str]:
        """Follow @odata.nextLink to the @odata.deltaLink; return the messages and that link."""
        messages: list[dict[str, Any]] = []
        params = {"$select": ",".join(OBSERVED_FIELDS)} if first else None
        prefer = (f"odata.maxpagesize={DELTA_PAGE_SIZE}",)
        while True:
            try:
                page = batch.call("GET", link, params=params, prefer=prefer).json()
            except GraphCallFailed as failed:
                if failed.failure.status == 410:
                    raise _DeltaExpired() from None
                raise failed.failure.as_error() from None
            messages.extend(page.get("value") or ())
            params = None  # the links carry the query from here on
            if page.get("@odata.deltaLink"):
                return messages, page["@odata.deltaLink"]
            link = page.get("@odata.nextLink")
            if not link:
                raise TransientError("Graph ended a delta page with neither nextLink nor deltaLink")

    def _observation(self, batch: GraphBatch, payload: dict[str, Any], folder: Folder) -> ObservedMessage:
        observed = observe(payload, folder)
        if folder != Folder.INBOX or not looks_like_report(observed.headers, observed.from_address, observed.subject):
            return observed
        # Graph's JSON has no report parts; the message's MIME ($value) has them all.
        message = parse_message(batch.content(f"/me/messages/{payload['id']}/$value"))
        bounce = read_bounce(message)
        return replace(observed, headers={**observed_headers(message), **observed.headers}, bounce=bounce,
                       bounced_message_id=bounce.message_id if bounce else None,
                       bounced_recipient=bounce.recipient if bounce else None,
                       bounce_reason=bounce.reason if bounce else None)


class _DeltaExpired(Exception):
    """Graph answered 410 Gone: the delta link is too old, start a full sync."""


def _short(message_id: str) -> str:
    return hashlib.sha1(message_id.encode()).hexdigest()[:16]


def _read_cursor(cursor: str | None) -> tuple[dict[str, str] | None, list[str]]:
    if cursor is None:
        return None, []
    try:
        data = json.loads(cursor)
        links = data["links"]
        if data.get("v") != CURSOR_VERSION or not isinstance(links, dict):
            raise ValueError
        return {k: str(v) for k, v in links.items()}, [str(x) for x in data.get("recent", [])]
    except (ValueError, KeyError, TypeError):
        raise ValueError("cursor: not a cursor returned by OutlookMailbox.poll") from None


def _write_cursor(links: dict[str, str], recent: list[str]) -> str:
    return json.dumps({"v": CURSOR_VERSION, "links": links, "recent": recent}, separators=(",", ":"))

