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


def _trimmed_end(text: str) -> str:
    """Without a closing quote the URL did not open, and without a final colon ("see https://…/page:")."""
    while text and text[-1] in _QUOTE_PAIRS or text.endswith(":"):
        if text.endswith(":"):
            text = text[:-1]
            continue
        opener = _QUOTE_PAIRS[text[-1]]
        inside = text[:-1]
        if opener == text[-1]:
            if inside.count(opener) % 2 == 1:
                break
        elif inside.count(opener) > inside.count(text[-1]):
            break
        text = inside
    return text


def find_urls(text: str) -> list[FoundUrl]:
    """The http(s) and `www.` URLs in `text`, in order; mailto:, ftp: and bare domains are left as text."""
    if "://" not in text and "www." not in text.lower():
        return []
    found = []
    for match in _linkifier().match(text) or ():
        if match.schema.lower() not in ("http:", "https:", ""):
            continue
        written = _trimmed_end(text[match.index:match.last_index])
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
