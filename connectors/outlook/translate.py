"""Translation between our types and Graph's JSON: outgoing payloads and observed messages.
No I/O here. Delivery reports are read from their MIME by `core.email.bounces`."""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Mapping

from core.email.compose import check_outgoing, wire_address
from core.email.message_id import message_ids
from core.mailbox import Folder, ObservedMessage, OutgoingEmail, PermanentError

log = logging.getLogger(__name__)

# Our folders -> Graph's well-known folder names.
GRAPH_FOLDERS: dict[Folder, str] = {Folder.SENT: "sentitems", Folder.INBOX: "inbox"}
DRAFTS_FOLDER = "drafts"

# Graph accepts custom internetMessageHeaders only with an x- / X- name, at most 5 per message,
# and only when the message is created.
MAX_CUSTOM_HEADERS = 5

# What a delta page returns for each message: enough to translate it without another call.
OBSERVED_FIELDS = ("id", "internetMessageId", "conversationId", "from", "sender", "toRecipients", "subject",
                   "bodyPreview", "receivedDateTime", "sentDateTime", "isDraft", "internetMessageHeaders")


def custom_headers(email: OutgoingEmail) -> tuple[list[dict[str, str]], list[str]]:
    """Split `email.headers` into Graph internetMessageHeaders and the names Graph cannot carry.

    Graph only takes X- headers in JSON, so List-Unsubscribe (and List-Unsubscribe-Post) cannot
    be set on an Outlook message: they are left out and their names returned, and the campaign's
    own unsubscribe link in the body is what recipients get. Raises PermanentError naming the
    field when there are more X- headers than Graph accepts.
    """
    accepted = [{"name": n, "value": v} for n, v in email.headers.items() if n.lower().startswith("x-")]
    dropped = [n for n in email.headers if not n.lower().startswith("x-")]
    if len(accepted) > MAX_CUSTOM_HEADERS:
        raise PermanentError(f"headers: Outlook accepts at most {MAX_CUSTOM_HEADERS} X- headers per "
                             f"message, this email has {len(accepted)}")
    return accepted, dropped


def recipient(address: str, name: str | None) -> dict[str, Any]:
    email_address = {"address": address}
    if name:
        email_address["name"] = name
    return {"emailAddress": email_address}


def message_payload(email: OutgoingEmail) -> dict[str, Any]:
    """The Graph message for a new draft: our Message-ID, HTML body, one recipient, X- headers.

    Graph has one body per message; Exchange derives the plain-text part from the HTML, so
    `text_body` is not sent. The sender is the signed-in mailbox (its own display name).
    Every header value passes the same checks as a MIME message's (`core.email.compose`);
    HeaderInjection (a ValueError) names the header otherwise.
    """
    check_outgoing(email)
    headers, dropped = custom_headers(email)
    if dropped:
        log.info("Outlook cannot set %s on %s (Graph takes only X- headers); left out",
                 ", ".join(dropped), email.message_id)
    payload: dict[str, Any] = {
        "subject": email.subject,
        "body": {"contentType": "HTML", "content": email.html_body},
        "toRecipients": [recipient(wire_address(email.to_address), email.to_name)],
        "internetMessageId": email.message_id,
    }
    if headers:
        payload["internetMessageHeaders"] = headers
    return payload


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _address(field: Any) -> str | None:
    if isinstance(field, dict):
        return (field.get("emailAddress") or {}).get("address")
    return None


def lower_headers(payload: Mapping[str, Any]) -> dict[str, str]:
    """internetMessageHeaders as a dict with lower-case names (first occurrence wins)."""
    headers: dict[str, str] = {}
    for header in payload.get("internetMessageHeaders") or ():
        name = str(header.get("name", "")).lower()
        if name and name not in headers:
            headers[name] = str(header.get("value", ""))
    return headers


def observe(payload: Mapping[str, Any], folder: Folder) -> ObservedMessage:
    """A Graph message (from a delta page) as an `ObservedMessage`; `raw` keeps the payload."""
    headers = lower_headers(payload)
    in_reply_to = message_ids(headers.get("in-reply-to"))
    received = payload.get("receivedDateTime") if folder == Folder.INBOX else (
        payload.get("sentDateTime") or payload.get("receivedDateTime"))
    return ObservedMessage(
        folder=folder,
        provider_message_id=payload["id"],
        message_id=payload.get("internetMessageId"),
        provider_thread_id=payload.get("conversationId"),
        in_reply_to=in_reply_to[0] if in_reply_to else None,
        references=message_ids(headers.get("references")),
        from_address=_address(payload.get("from")) or _address(payload.get("sender")),
        to_addresses=tuple(a for a in (_address(r) for r in payload.get("toRecipients") or ()) if a),
        subject=payload.get("subject") or "",
        received_at=parse_time(received),
        snippet=payload.get("bodyPreview") or "",
        headers=headers,
        raw=dict(payload),
    )
