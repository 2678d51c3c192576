"""Links in what the prospect reads: finding URLs in plain text as mail clients do, and writing a
URL the way it must travel (an IDNA host, percent-encoded UTF-8 elsewhere).

- `find_urls(text)`: the http(s) URLs in plain text, with their spans, found by linkify-it-py
  (the Python port of markdown-it's linkifier: every character RFC 3986 allows, balanced
  brackets, trailing punctuation left out), plus `www.` links without a scheme.
- `ascii_url(url)`: the URL with its host in IDNA (RFC 5891, UTS #46 mapping) and every other
  non-ASCII character percent-encoded as UTF-8 (RFC 3987 section 3.1), as browsers send it. Raises
  ValueError when the host is not a valid internationalised domain name.
"""
from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

import idna
from linkify_it import LinkifyIt

# Closing quotes linkify-it keeps when they end a URL; kept in the link only when the URL opened them.
_QUOTE_PAIRS = {"”": "“", "’": "‘", "»": "«", "›": "‹", "'": "'", '"': '"'}
# In a URL that holds non-ASCII characters, only those are encoded: every ASCII character stays as
# written (and "%" is never encoded twice), so the URL means what its author wrote.
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~-._\"<>\\^`{|} "


@dataclass(frozen=True)
class FoundUrl:
    start: int  # index of the first character in the text
    end: int  # index after the last character
    text: str  # as written in the text
    url: str  # what the link opens: the text, with http:// before a www. link


@functools.lru_cache(maxsize=1)
def _linkifier() -> LinkifyIt:
    return LinkifyIt(options={"fuzzy_email": False, "fuzzy_ip": False})


_OPENERS = {"(": ")", "[": "]", "{": "}", "<": ">", "“": "”", "‘": "’", "«": "»", "‹": "›", "'": "'", '"': '"',
            "`": "`", "*": "*", "「": "」", "『": "』", "（": "）", "【": "】"}
_TRAILING_PUNCTUATION = ".,;:!?*"


def _trimmed(text: str, opened_by: str) -> str:
    """The URL as a reader means it: cut at the first non-ASCII punctuation or space (a full-width
    bracket, 。, an em dash, …), without trailing punctuation, without the closing mark of whatever
    opened just before it, and without a closing quote it did not open itself."""
    for index, char in enumerate(text):
        if not char.isascii() and unicodedata.category(char)[0] in "PZ":
            text = text[:index]
            break
    while text:
        last = text[-1]
        if last in _TRAILING_PUNCTUATION:
            text = text[:-1]
        elif opened_by in _OPENERS and last == _OPENERS[opened_by] and _closes_outside(text, opened_by, last):
            text, opened_by = text[:-1], ""
        elif last in _QUOTE_PAIRS and not _opened_inside(text[:-1], last):
            text = text[:-1]
        else:
            break
    return text


def _closes_outside(text: str, opener: str, closer: str) -> bool:
    """True when the URL's last `closer` is left over once its own brackets or quotes are paired."""
    if opener == closer:
        return text.count(closer) % 2 == 0
    return text.count(closer) > text.count(opener)


def _opened_inside(inside: str, closer: str) -> bool:
    opener = _QUOTE_PAIRS[closer]
    if opener == closer:
        return inside.count(opener) % 2 == 1
    return inside.count(opener) > inside.count(closer)


def find_urls(text: str) -> list[FoundUrl]:
    """The http(s) and `www.` URLs in `text`, in order; mailto:, ftp: and bare domains are left as text."""
    if "://" not in text and "www." not in text.lower():
        return []
    found = []
    for match in _linkifier().match(text) or ():
        if match.schema.lower() not in ("http:", "https:", ""):
            continue
        written = _trimmed(text[match.index:match.last_index], text[match.index - 1] if match.index else "")
        if match.schema == "" and not written.lower().startswith("www."):
            continue  # a bare domain: mail clients differ, and a wrong guess would become a tracked link
        url = written if match.schema else "http://" + written
        found.append(FoundUrl(match.index, match.index + len(written), written, url))
    return found


def ascii_url(url: str) -> str:
    """`url` with an IDNA host and percent-encoded UTF-8 elsewhere; an ASCII URL comes back as it
    is. Raises ValueError for a host that is no valid internationalised domain name."""
    if url.isascii():
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if not netloc.isascii():
        userinfo, at, hostport = netloc.rpartition("@")
        host, colon, port = hostport.partition(":")
        if host.startswith("["):
            host, colon, port = hostport, "", ""
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise ValueError(f"{host!r} is not a valid domain name ({exc})") from None
        netloc = quote(userinfo, safe=_URL_SAFE) + at + host + colon + port
    return urlunsplit((parts.scheme, netloc, quote(parts.path, safe=_URL_SAFE),
                       quote(parts.query, safe=_URL_SAFE), quote(parts.fragment, safe=_URL_SAFE)))
