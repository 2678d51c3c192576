"""Signed tracking tokens (open pixel, click redirect, unsubscribe) and link handling in HTML.

A token names a message (and, for a click, a link stored at render time); it never carries a
destination URL, so the click redirect cannot be turned into an open redirect. Tokens are
HMAC-SHA256 signed with a key derived from the secret key; several keys may verify (rotation).
"""
from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
from dataclasses import dataclass
from html import escape
from typing import Callable, Sequence
from urllib.parse import urlsplit

from core.anchors import anchors
from core.links import ascii_url

__all__ = ["TrackingToken", "add_open_pixel", "extract_links", "rewrite_links", "sign_token", "verify_token"]

KINDS = {"o": "open", "c": "click", "u": "unsubscribe"}
_DOMAIN = b"cadence/tracking/v1"
_MAC_BYTES = 16  # 128-bit tag: plenty against forgery, keeps tokens short
_ID_BYTES = 8
_MAX_ID = 2 ** (8 * _ID_BYTES) - 1
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_-]+")
_TOKEN_LENGTHS = frozenset(len(base64.urlsafe_b64encode(bytes(n)).rstrip(b"=")) for n in (
    1 + _ID_BYTES + _MAC_BYTES, 1 + 2 * _ID_BYTES + _MAC_BYTES))


@dataclass(frozen=True)
class TrackingToken:
    kind: str  # "o" open, "c" click, "u" unsubscribe
    message_id: int
    link_id: int | None  # set for clicks only


@functools.lru_cache(maxsize=32)
def _tracking_key(key: bytes) -> bytes:
    # A key of its own, so a tag made here can never be mistaken for any other use of the secret.
    return hmac.new(key, _DOMAIN, hashlib.sha256).digest()


def _tag(key: bytes, payload: bytes) -> bytes:
    return hmac.new(_tracking_key(key), payload, hashlib.sha256).digest()[:_MAC_BYTES]


def _valid_id(value: object) -> bool:
    return type(value) is int and 0 <= value <= _MAX_ID


def sign_token(key: bytes, kind: str, message_id: int, link_id: int | None = None) -> str:
    """A url-safe token for (kind, message, link). Clicks need a link id; opens and unsubscribes
    must not have one (for "u", `message_id` names the message whose contact unsubscribes)."""
    if not isinstance(key, (bytes, bytearray)) or not key:
        raise ValueError("the tracking key must be non-empty bytes")
    if kind not in KINDS:
        raise ValueError(f"tracking kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if not _valid_id(message_id):
        raise ValueError(f"message_id must be an integer from 0 to {_MAX_ID}, not {message_id!r}")
    if (kind == "c") != (link_id is not None):
        raise ValueError("a click token needs a link_id and other tokens must not have one")
    if link_id is not None and not _valid_id(link_id):
        raise ValueError(f"link_id must be an integer from 0 to {_MAX_ID}, not {link_id!r}")
    payload = kind.encode("ascii") + message_id.to_bytes(_ID_BYTES, "big")
    if link_id is not None:
        payload += link_id.to_bytes(_ID_BYTES, "big")
    return base64.urlsafe_b64encode(payload + _tag(bytes(key), payload)).rstrip(b"=").decode("ascii")


def verify_token(keys: Sequence[bytes], token: str) -> TrackingToken | None:
    """The token's content when any of `keys` signed it (newest first), else None. Tampered,
    truncated, malformed and foreign tokens all give None; tags are compared in constant time."""
    if not isinstance(token, str) or len(token) not in _TOKEN_LENGTHS or not _TOKEN_CHARS.fullmatch(token):
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    # Base64 leaves spare bits in the last character; only the canonical spelling is accepted.
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != token:
        return None
    payload, tag = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    if not any(hmac.compare_digest(_tag(bytes(key), payload), tag) for key in keys if key):
        return None
    kind = chr(payload[0])
    message_id = int.from_bytes(payload[1 : 1 + _ID_BYTES], "big")
    link_id = int.from_bytes(payload[1 + _ID_BYTES :], "big") if len(payload) > 1 + _ID_BYTES else None
    if kind not in KINDS or (kind == "c") != (link_id is not None):
        return None
    return TrackingToken(kind=kind, message_id=message_id, link_id=link_id)


# --- links in HTML -------------------------------------------------------------------------------

_C0_AND_SPACE = "".join(chr(i) for i in range(0x21))
_TAB_OR_NEWLINE = re.compile(r"[\t\n\r]")
_ATTRIBUTE_NAME = re.compile(r"[A-Za-z_:][-A-Za-z0-9_:.]*")


def trackable_url(href: str | None) -> str | None:
    """The absolute http(s) URL a browser would open for this href, written in ASCII (core.links.ascii_url:
    IDNA host, percent-encoded UTF-8), or None for anything else (mailto:, tel:, '#', javascript:,
    data:, relative and protocol-relative links, a host that is no valid domain name)."""
    if href is None:
        return None
    # What browsers do before parsing: trim C0 controls and spaces, drop tabs and newlines.
    url = _TAB_OR_NEWLINE.sub("", href.strip(_C0_AND_SPACE))
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc or "\\" in parts.netloc:
        return None
    try:
        return ascii_url(url)  # the redirect goes where a browser would: an IDN host in its IDNA form
    except ValueError:
        return None


def _href(attrs: list[tuple[str, str | None]]) -> str | None:
    for name, value in attrs:
        if name == "href":
            return value  # browsers use the first one
    return None


def extract_links(html: str) -> list[str]:
    """The http(s) hrefs of <a> tags in document order, each once."""
    seen: dict[str, None] = {}
    for _, _, attrs in anchors(html):
        url = trackable_url(_href(attrs))
        if url is not None:
            seen.setdefault(url, None)
    return list(seen)


def _anchor_tag(attrs: list[tuple[str, str | None]], href: str) -> str:
    parts = ["<a"]
    href_written = False
    for name, value in attrs:
        if name == "href":
            if not href_written:
                parts.append(f' href="{escape(href, quote=True)}"')
                href_written = True
        elif _ATTRIBUTE_NAME.fullmatch(name):
            parts.append(f" {name}" if value is None else f' {name}="{escape(value, quote=True)}"')
    return "".join(parts) + ">"


def rewrite_links(html: str, url_for: Callable[[str], str | None]) -> str:
    """Replace the href of every <a> whose link is trackable with `url_for(url)`; a None answer, a
    non-http link and everything else in the document are left exactly as they were."""
    out: list[str] = []
    done = 0
    for start, source, attrs in anchors(html):
        url = trackable_url(_href(attrs))
        if url is None:
            continue
        replacement = url_for(url)
        if replacement is None:
            continue
        if start < done or html[start : start + len(source)] != source:
            continue  # never guess: a tag we cannot locate exactly is left alone
        out.append(html[done:start])
        out.append(_anchor_tag(attrs, replacement))
        done = start + len(source)
    out.append(html[done:])
    return "".join(out)


_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


def add_open_pixel(html: str, pixel_url: str) -> str:
    """`html` with a 1x1 image loading `pixel_url`, placed before </body> (or at the end)."""
    pixel = (f'<img src="{escape(pixel_url, quote=True)}" width="1" height="1" alt="" '
             'style="display:block;width:1px;height:1px;border:0">')
    ends = list(_BODY_END.finditer(html))
    if not ends:
        return html + pixel
    at = ends[-1].start()
    return html[:at] + pixel + html[at:]


def add_unsubscribe_footer(html: str, text: str, url: str) -> tuple[str, str]:
    """A visible unsubscribe link below automatic emails, in both parts (some providers, such as
    Graph, cannot carry the List-Unsubscribe header, and people look for the link anyway)."""
    from html import escape

    footer = (f'<p style="font-size:12px;color:#888">Not interested? '
              f'<a href="{escape(url, quote=True)}">Unsubscribe</a>.</p>')
    closing = html.lower().rfind("</body>")
    html = html[:closing] + footer + html[closing:] if closing != -1 else html + footer
    return html, f"{text.rstrip()}\n\n--\nNot interested? Unsubscribe: {url}\n"
