"""The one reader of delivery reports: RFC 3464 delivery-status notifications (with or without
the returned message or its headers), Exchange non-delivery reports, Gmail's reports, and the
plain-text forms of qmail, Postfix and Exim (detected with flufl.bounce).

`read_bounce(message)` answers with a `Bounce` (who bounced, which of our emails, the RFC 3463
status, the remote server's words, hard or soft) or None: for any other message, for a report
the user forwarded as an attachment, and for delay warnings (`Action: delayed`, "will be
retried"), which are not bounces. `looks_like_report` is the cheap pre-check on top-level
headers a connector uses to decide whether to fetch the whole message.

Hard or soft (`severity`): 5.x.x is hard, except mailbox full / over quota (5.2.2, or words to
that effect); 4.x.x is soft. A report naming no status takes it from the SMTP reply code in its
diagnostic, else from flufl.bounce's verdict (permanent = hard).
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass
from email import policy
from email.message import Message
from email.parser import Parser
from enum import StrEnum
from typing import Iterable, Mapping

import flufl.bounce

from core.addresses import comparable_address
from core.email.message_id import MESSAGE_ID, message_ids
from core.email.read import addresses, header_ids, header_text, part_text

__all__ = ["Bounce", "Severity", "is_report_sender", "looks_like_report", "read_bounce", "returned_message", "severity"]


class Severity(StrEnum):
    HARD = "hard"  # never write to this address again
    SOFT = "soft"  # this send failed; a later one may work


@dataclass(frozen=True)
class Bounce:
    """What a delivery report says about one failed recipient."""

    recipient: str | None  # Final-Recipient, else Original-Recipient, else the address named
    message_ids: tuple[str, ...]  # Message-IDs that may be the bounced email, most telling first
    status: str | None  # RFC 3463 enhanced status code, "5.1.1"
    diagnostic: str | None  # the remote server's words (Diagnostic-Code without its type)
    severity: Severity
    form: str  # which kind of report: "RFC 3464", "X-Failed-Recipients", "plain text"

    def __post_init__(self) -> None:
        object.__setattr__(self, "recipient", comparable_address(self.recipient))

    @property
    def message_id(self) -> str | None:
        return self.message_ids[0] if self.message_ids else None

    @property
    def reason(self) -> str:
        """The remote server's words, else the status code, else the report's form."""
        return self.diagnostic or self.status or f"{self.form} report"

    @property
    def cause(self) -> str:
        """One line: `hard bounce 5.1.1: 550 5.1.1 user unknown`."""
        status = f" {self.status}" if self.status else ""
        detail = f": {self.diagnostic}" if self.diagnostic and self.diagnostic != self.status else ""
        return f"{self.severity} bounce{status}{detail}"


_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_SMTP_CODE = re.compile(r"(?:^|[\s:;(])([45])[0-9][0-9](?=[\s\-])")
_MAILBOX_FULL = re.compile(
    r"mailbox (?:is )?full|mail ?box full|over ?quota|quota (?:exceeded|full)|exceeded (?:the |its |their )?"
    r"(?:storage|quota)|insufficient (?:system )?storage|mailbox size limit|user is over|disk quota",
    re.IGNORECASE)


def severity(status: str | None, diagnostic: str | None = None) -> Severity | None:
    """Hard or soft for an RFC 3463 status (and the server's words); None when neither names a
    failure class."""
    if not status:
        code = _SMTP_CODE.search(diagnostic or "")
        status = f"{code.group(1)}.0.0" if code else None
    if not status or status[0] not in "45":
        return None
    if status[0] == "4" or status.startswith("5.2.2") or _MAILBOX_FULL.search(diagnostic or ""):
        return Severity.SOFT
    return Severity.HARD


# ----------------------------------------------------------------------- is it a report at all

_REPORT_SENDER = re.compile(r"^(?:mailer-daemon|postmaster|microsoftexchange[0-9a-f]*|mail-daemon|"
                            r"mdaemon|mailerdaemon)@", re.IGNORECASE)
_REPORT_SUBJECT = re.compile(
    r"^\s*(?:undeliverable|undelivered mail|undeliverable mail|delivery status notification \((?:failure|delay)\)|"
    r"delivery has failed|mail delivery failed|returned mail|failure notice|delivery failure|"
    r"mail system error|non[- ]?deliver|unzustellbar|nicht zustellbar|non remis|no se puede entregar|"
    r"non recapitabile|onbestelbaar|kan inte levereras|niedostarczalne|warning: message .* delayed|"
    r"delayed mail)", re.IGNORECASE)
_DSN_TYPES = {"delivery-status", "global-delivery-status"}
_STATUS_PARTS = {"message/delivery-status", "message/global-delivery-status"}
_RETURNED_HEADERS = {"text/rfc822-headers", "message/global-headers"}
_RETURNED_MESSAGES = {"message/rfc822", "message/global"}


def is_report_sender(address: str | None) -> bool:
    """True for MAILER-DAEMON, postmaster and Exchange's MicrosoftExchange… senders."""
    return bool(address and _REPORT_SENDER.match(address))


def looks_like_report(headers: Mapping[str, str], from_address: str | None, subject: str | None) -> bool:
    """From top-level headers (lower-case names), sender and subject alone: could this be a
    delivery report? True for multipart/report, X-Failed-Recipients, Exchange's NDR mark, a
    MAILER-DAEMON / postmaster / MicrosoftExchange sender, a null Return-Path or a report subject."""
    content_type = headers.get("content-type", "").lower()
    return ("multipart/report" in content_type or "x-failed-recipients" in headers
            or "x-ms-exchange-message-is-ndr" in headers
            or headers.get("return-path", "").strip() == "<>"
            or bool(from_address and _REPORT_SENDER.match(from_address))
            or bool(subject and _REPORT_SUBJECT.match(subject)))


# ----------------------------------------------------------------------- reading

def read_bounce(message: Message) -> Bounce | None:
    """The failed recipient a delivery report names, or None (see the module's docstring)."""
    if message.get_content_type() == "multipart/report" and \
            (message.get_param("report-type") or "").lower() in _DSN_TYPES:
        parts = message.get_payload()
        status_part = next((p for p in parts if p.get_content_type() in _STATUS_PARTS), None) \
            if isinstance(parts, list) else None
        if status_part is not None:
            return _from_status_part(message, status_part)
    top_headers = {name: header_text(message, name) or "" for name in
                   ("content-type", "x-failed-recipients", "x-ms-exchange-message-is-ndr", "return-path")
                   if message.get(name) is not None}
    sender = next(iter(addresses(message, "From")), None)
    if not looks_like_report(top_headers, sender, header_text(message, "Subject")):
        return None
    return _from_text(message)


def _from_status_part(message: Message, status_part: Message) -> Bounce | None:
    blocks = _status_blocks(status_part)
    per_message, recipients = (blocks[0], blocks[1:]) if blocks else ({}, [])
    failed = [fields for fields in recipients if _is_failure(fields)]
    if not failed:
        return None  # delayed, delivered, relayed or expanded: no bounce
    fields = failed[0]
    recipient = _typed_address(fields.get("final-recipient")) or _typed_address(fields.get("original-recipient"))
    diagnostic = _strip_type(fields["diagnostic-code"]) if fields.get("diagnostic-code") else None
    status = _status_code(fields.get("status")) or _status_code(diagnostic)
    kind = severity(status, diagnostic) or Severity.HARD
    ids = _ids_of(message, [per_message, fields])
    return Bounce(recipient, ids, status, diagnostic, kind, "RFC 3464")


def _is_failure(fields: Mapping[str, str]) -> bool:
    action = fields.get("action", "").lower()
    if action:
        return action == "failed"
    return fields.get("status", "").strip()[:1] in ("4", "5") and "x-delayed" not in fields


def _status_blocks(part: Message) -> list[dict[str, str]]:
    """The field blocks of a delivery-status part: per-message first, then one per recipient."""
    payload = part.get_payload()
    blocks: list[list[tuple[str, str]]] = []
    if isinstance(payload, list):
        # The parser splits message/delivery-status into blocks; the RFC 6533 global type
        # arrives as one "message" whose body holds the remaining blocks.
        for block in payload:
            blocks.append(list(block.items()))
            rest = _utf8_body(block)
            if rest.strip():
                blocks.extend(_text_blocks(rest))
    else:
        raw = part.get_payload(decode=True)
        blocks = _text_blocks(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload))
    return [{name.lower(): " ".join(str(value).split()) for name, value in block} for block in blocks]


def _utf8_body(block: Message) -> str:
    """The body of a parsed block as text, its raw 8-bit bytes read as UTF-8 (RFC 6533: a
    message/global-delivery-status part is UTF-8); the stdlib reads them as ASCII otherwise."""
    text = block.get_payload()
    if not isinstance(text, str):
        return ""
    if "\ufffd" in text:  # 8-bit bytes the stdlib could not read: read them again as UTF-8
        raw = block.get_payload(decode=True)
        if isinstance(raw, bytes):
            return raw.decode("utf-8", "replace")
    return text


_BLANK_LINE = re.compile(r"\r?\n[ \t]*\r?\n")


def _text_blocks(text: str) -> list[list[tuple[str, str]]]:
    parser = Parser(policy=policy.compat32)
    return [list(parser.parsestr(chunk.strip("\r\n") + "\n", headersonly=True).items())
            for chunk in _BLANK_LINE.split(text) if chunk.strip()]


def _strip_type(value: str) -> str:
    """`smtp; 550 5.1.1 ...` -> `550 5.1.1 ...` (the RFC 3464 type prefix dropped)."""
    kind, sep, rest = value.partition(";")
    return rest.strip() if sep and " " not in kind.strip() else value.strip()


_UTF8_ADDR_ESCAPE = re.compile(r"\\x\{([0-9A-Fa-f]{1,6})\}")


def _unescape(found: re.Match) -> str:
    code = int(found.group(1), 16)
    return chr(code) if code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else found.group()


def _typed_address(value: str | None) -> str | None:
    """The address of an `rfc822; a@b` or `utf-8; a@b` field (RFC 3464, RFC 6533), with the
    `\\x{HHHH}` escapes of utf-8-addr-xtext written as their characters."""
    if not value:
        return None
    address = _strip_type(value).strip("<> ")
    address = _UTF8_ADDR_ESCAPE.sub(_unescape, address)
    return address or None


def _status_code(text: str | None) -> str | None:
    found = _ENHANCED.search(text or "")
    return found.group() if found else None


def returned_message(message: Message) -> Message | None:
    """The returned email (or its headers) a report carries, parsed; None without one."""
    for part in message.walk():
        kind = part.get_content_type()
        if kind not in _RETURNED_MESSAGES and kind not in _RETURNED_HEADERS:
            continue
        payload = part.get_payload()
        if isinstance(payload, list) and payload:  # parsed as an enclosed message
            return payload[0]
        if kind in _RETURNED_HEADERS:
            return Parser(policy=policy.default).parsestr(part_text(part), headersonly=True)
    return None


def _ids_of(message: Message, field_blocks: Iterable[Mapping[str, str]], text: str = "") -> tuple[str, ...]:
    """Our Message-ID wherever a report puts it: the returned message's Message-ID, the
    Original-Message-ID / X-Original-Message-ID fields, the report's X-Original-Message-ID,
    In-Reply-To and References, and Message-ID lines of a returned copy quoted in its text."""
    found: list[str] = []
    returned = returned_message(message)
    if returned is not None:
        found += header_ids(returned, "Message-ID")
    for fields in field_blocks:
        for name in ("original-message-id", "x-original-message-id"):
            found += message_ids(fields.get(name))
    found += header_ids(message, "X-Original-Message-ID")
    found += _quoted_ids(text)
    found += header_ids(message, "In-Reply-To")
    found += reversed(header_ids(message, "References"))
    return tuple(dict.fromkeys(found))


_QUOTED_ID = re.compile(r"^[ \t>]*(?:x-)?(?:original-)?message-id:[ \t]*(" + MESSAGE_ID.pattern + ")",
                        re.IGNORECASE | re.MULTILINE)


def _quoted_ids(text: str) -> list[str]:
    return [m.group(1) for m in _QUOTED_ID.finditer(text)]


# ----------------------------------------------------------------------- plain-text forms

_BREAKS = re.compile(r"<\s*(?:br|/p|/div|/tr|/li|/h\d|/pre|p|div|pre)\b[^>]*>", re.IGNORECASE)
_TAGS = re.compile(r"<(script|style)\b.*?</\1>|<[^>]*>", re.IGNORECASE | re.DOTALL)
_TEXT_FIELD = re.compile(r"^[ \t]*(final-recipient|original-recipient|action|status|diagnostic-code|"
                         r"x-original-message-id|original-message-id)[ \t]*:[ \t]*(.+)$",
                         re.IGNORECASE | re.MULTILINE)
_EXCHANGE_REASON = re.compile(r"remote server returned\s+'([^']+)'", re.IGNORECASE)
_EXCHANGE_RECIPIENT = re.compile(
    r"your message to\s+<?([^\s<>]+@[^\s<>]+?)>?\s+couldn't be delivered|"
    r"delivery has failed to these recipients or groups:\s*(?:[^\n@]*\n)*?[^\n@]*?<?([^\s<>()]+@[^\s<>()]+?)>?[\s)]",
    re.IGNORECASE)
_SMTP_LINE = re.compile(r"\b([45]\d\d[ -][245]\.\d{1,3}\.\d{1,3}\b[^\n]*)")
_SAID = re.compile(r"(?:said|says|reason|error|diagnostic[^:\n]*):\s*((?:[45]\d\d|[45]\.\d)[^\n]*)", re.IGNORECASE)
# Where a plain-text report starts quoting the returned email (qmail, Exim, Exchange, Sendmail …).
_COPY_MARK = re.compile(r"^[ \t-]*(?:below this line is a copy of the message|this is a copy of the message|"
                        r"original message headers|-+ ?original message ?-+|the original message was received|"
                        r"---+ ?(?:returned|undelivered) message)", re.IGNORECASE | re.MULTILINE)
# qmail and Postfix: "<address>:" then the remote server's words on the same or the next lines.
_ADDRESS_BLOCK = re.compile(r"^<([^<>\s]+@[^<>\s]+)>:[ \t]*\n?[ \t]*(\S[^\n]*(?:\n[ \t]+\S[^\n]*)*)", re.MULTILINE)
_FULL_LINE = re.compile(r"^[ \t]*([^\n]*(?:" + _MAILBOX_FULL.pattern + r")[^\n]*)$", re.IGNORECASE | re.MULTILINE)
_DELAY_WORDS = re.compile(r"has not yet been delivered|will (?:continue|keep) (?:trying|to try)|"
                          r"will be retried|still being retried|delivery has been delayed|"
                          r"is an advisory-only|no action is required on your part|"
                          r"delivery attempts will continue", re.IGNORECASE)


def _plain(message: Message) -> str:
    """The report's own text (plain parts preferred, HTML parts with line breaks kept), outside
    any returned message."""
    plain, html_parts = [], []
    stack = [message]
    while stack:
        part = stack.pop(0)
        kind = part.get_content_type()
        if kind in _RETURNED_MESSAGES:
            continue
        if part.is_multipart():
            stack.extend(part.get_payload())
        elif kind == "text/plain":
            plain.append(part_text(part))
        elif kind == "text/html":
            html_parts.append(html.unescape(_TAGS.sub("", _BREAKS.sub("\n", part_text(part)))))
    return "\n".join(plain or html_parts).replace("\r\n", "\n")


def _from_text(message: Message) -> Bounce | None:
    text = _plain(message)
    copy = _COPY_MARK.search(text)
    own = text[:copy.start()] if copy else text  # the report's own words, without the returned email
    if _DELAY_WORDS.search(text) and not _EXCHANGE_REASON.search(text):
        return None
    fields: dict[str, str] = {}
    for name, value in _TEXT_FIELD.findall(text):
        fields.setdefault(name.lower(), " ".join(value.split()))
    if fields.get("action", "").lower() in ("delayed", "delivered", "relayed", "expanded"):
        return None
    failed_header = header_text(message, "X-Failed-Recipients")
    exchange_to = _EXCHANGE_RECIPIENT.search(own)
    block = _ADDRESS_BLOCK.search(own)
    temporary, permanent = _flufl(message)
    if temporary and not permanent and not fields and not failed_header and exchange_to is None:
        return None  # flufl.bounce's temporary failures are delay warnings
    recipient = (_typed_address(fields.get("final-recipient")) or _typed_address(fields.get("original-recipient"))
                 or (exchange_to and (exchange_to.group(1) or exchange_to.group(2)))
                 or (failed_header.split(",")[0].strip() if failed_header else None)
                 or (block.group(1) if block else None)
                 or next(iter(sorted(permanent)), None))
    diagnostic = None
    for pattern in (_EXCHANGE_REASON, _SMTP_LINE, _SAID, _FULL_LINE):
        found = pattern.search(own)
        if found:
            diagnostic = " ".join(found.group(1).split())
            break
    if diagnostic is None and block is not None:
        diagnostic = " ".join(block.group(2).split())
    if fields.get("diagnostic-code"):
        diagnostic = _strip_type(fields["diagnostic-code"])
    status = _status_code(fields.get("status")) or _status_code(diagnostic) or _status_code(own)
    kind = severity(status, diagnostic or own[:2000])
    if kind is None:
        if not (permanent or failed_header or exchange_to or fields.get("action", "").lower() == "failed"):
            return None
        kind = Severity.SOFT if _MAILBOX_FULL.search(own) else Severity.HARD
    if recipient is None and not fields:
        return None
    form = "X-Failed-Recipients" if failed_header else ("Exchange" if exchange_to or _EXCHANGE_REASON.search(own)
                                                        else "plain text")
    return Bounce(recipient, _ids_of(message, [fields], text), status, diagnostic, kind, form)


def _flufl(message: Message) -> tuple[set[str], set[str]]:
    """flufl.bounce's temporary and permanent failures, as lower-case addresses."""
    try:
        temporary, permanent = flufl.bounce.all_failures(message)
    except Exception:  # a detector choking on a strange message must not stop the sync
        return set(), set()

    def text(found: Iterable[bytes | str]) -> set[str]:
        out = set()
        for address in found:
            value = address.decode("utf-8", "replace") if isinstance(address, bytes) else str(address)
            value = value.strip().strip("<>").lower()
            if "@" in value:
                out.add(value)
        return out

    return text(temporary), text(permanent)
