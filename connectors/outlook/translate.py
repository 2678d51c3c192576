"""Translation between our types and Graph's JSON: outgoing payloads, observed messages, and
what can be read out of an Exchange non-delivery report. No I/O here."""
from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any, Mapping

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
    """
    headers, dropped = custom_headers(email)
    if dropped:
        log.info("Outlook cannot set %s on %s (Graph takes only X- headers); left out",
                 ", ".join(dropped), email.message_id)
    payload: dict[str, Any] = {
        "subject": email.subject,
        "body": {"contentType": "HTML", "content": email.html_body},
        "toRecipients": [recipient(email.to_address, email.to_name)],
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


def _message_ids(value: str | None) -> tuple[str, ...]:
    return tuple(re.findall(r"<[^<>\s]+>", value or ""))


def observe(payload: Mapping[str, Any], folder: Folder) -> ObservedMessage:
    """A Graph message (from a delta page) as an `ObservedMessage`; `raw` keeps the payload."""
    headers = lower_headers(payload)
    in_reply_to = _message_ids(headers.get("in-reply-to"))
    received = payload.get("receivedDateTime") if folder == Folder.INBOX else (
        payload.get("sentDateTime") or payload.get("receivedDateTime"))
    return ObservedMessage(
        folder=folder,
        provider_message_id=payload["id"],
        message_id=payload.get("internetMessageId"),
        provider_thread_id=payload.get("conversationId"),
        in_reply_to=in_reply_to[0] if in_reply_to else None,
        references=_message_ids(headers.get("references")),
        from_address=_address(payload.get("from")) or _address(payload.get("sender")),
        to_addresses=tuple(a for a in (_address(r) for r in payload.get("toRecipients") or ()) if a),
        subject=payload.get("subject") or "",
        received_at=parse_time(received),
        snippet=payload.get("bodyPreview") or "",
        headers=headers,
        raw=dict(payload),
    )


# ---- non-delivery reports

_NDR_SENDERS = re.compile(r"^(postmaster|mailer-daemon|microsoftexchange[0-9a-f]*)@", re.I)
_NDR_SUBJECT = re.compile(r"^\s*(undeliverable:|undelivered mail returned to sender|delivery has failed|"
                          r"delivery status notification \(failure\)|mail delivery failed|returned mail:)", re.I)
_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


def looks_like_non_delivery_report(message: ObservedMessage) -> bool:
    """Exchange NDRs come from postmaster / MicrosoftExchange… with 'Undeliverable:' subjects;
    other servers' reports are multipart/report."""
    content_type = message.headers.get("content-type", "").lower()
    return (content_type.startswith("multipart/report")
            or "x-ms-exchange-message-is-ndr" in message.headers
            or bool(message.from_address and _NDR_SENDERS.match(message.from_address))
            or bool(_NDR_SUBJECT.match(message.subject)))


def read_non_delivery_report(body_text: str, headers: Mapping[str, str],
                             own_address: str) -> tuple[str | None, str | None, str | None]:
    """(bounced Message-ID, recipient, reason) as far as the report says them.

    The Message-ID comes from In-Reply-To / References when present, else from the copy of the
    original headers Exchange puts in the report (or a DSN's Original-Message-ID).
    """
    message_id = None
    for name in ("in-reply-to", "references"):
        found = _message_ids(headers.get(name))
        if found:
            message_id = found[-1] if name == "references" else found[0]
            break
    if message_id is None:
        original = re.split(r"original message headers:?", body_text, maxsplit=1, flags=re.I)
        where = original[1] if len(original) == 2 else body_text
        found = re.search(r"^\s*(?:original-)?message-id:\s*(<[^<>\s]+>)", where, re.I | re.M)
        message_id = found.group(1) if found else None

    recipient = None
    for pattern in (r"final-recipient:\s*rfc822;\s*(\S+@\S+)",
                    r"original-recipient:\s*rfc822;\s*(\S+@\S+)",
                    r"your message to\s+(\S+@\S+?)\s+couldn't be delivered",
                    r"delivery has failed to these recipients or groups:\s*(?:.*?)(\S+@\S+)"):
        found = re.search(pattern, body_text, re.I | re.S)
        if found:
            recipient = found.group(1).strip("<>.,;()'\"")
            break
    if recipient is None and message_id is not None:
        # Only in a report that names our email: the first other address before its headers.
        before = re.split(r"original message headers", body_text, maxsplit=1, flags=re.I)[0]
        own = own_address.lower()
        recipient = next((a for a in _ADDRESS.findall(before)
                          if a.lower() != own and not _NDR_SENDERS.match(a)), None)

    reason = None
    for pattern in (r"remote server returned\s+'([^']+)'", r"diagnostic-code:\s*smtp;\s*(.+)",
                    r"\b([45]\d\d[ -][45]\.\d{1,3}\.\d{1,3}\b.*)"):
        found = re.search(pattern, body_text, re.I)
        if found:
            reason = found.group(1).strip()
            break
    return message_id, recipient, reason
