"""Time zone names: accept every IANA name, legacy ones included, and store the canonical one.

The zone rules come from the `tzdata` package whenever the operating system lacks a name (Debian
13 and Ubuntu 23.10+ ship `US/Eastern`-style links only in `tzdata-legacy`), so `ZoneInfo` finds
every name the IANA database knows. Which name is canonical is the IANA database's own answer:
the names listed in `zone.tab` / `zone1970.tab` (one or more per country) plus `UTC` and `Etc/*`;
any other name is a link (`L target name` in `tzdata.zi`) and is followed to its target. Both
tables are read from the `pytz` package, which ships them unchanged with every tz release.
"""
from __future__ import annotations

from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pytz


class UnknownZone(ValueError):
    """The name is not an IANA time zone (message: one sentence, without the field name)."""


def _read(name: str) -> str:
    """A file of pytz's zoneinfo folder as text, closed once read."""
    with pytz.open_resource(name) as resource:
        return resource.read().decode("utf-8")


@lru_cache(maxsize=1)
def _tables() -> tuple[frozenset[str], dict[str, str]]:
    listed: set[str] = set()
    for table in ("zone1970.tab", "zone.tab"):
        for line in _read(table).splitlines():
            if line and not line.startswith("#"):
                listed.add(line.split("\t")[2])
    links: dict[str, str] = {}
    for line in _read("tzdata.zi").splitlines():
        if line.startswith("L "):
            _, target, name = line.split()
            links[name] = target
    return frozenset(listed), links


def canonical_zone(name: str) -> str:
    """The canonical IANA name for `name` (`US/Eastern` → `America/New_York`,
    `Asia/Calcutta` → `Asia/Kolkata`, `Europe/Oslo` stays). Raises `UnknownZone`."""
    text = (name or "").strip()
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise UnknownZone(f"{text!r} is not an IANA time zone (for example Europe/Berlin)") from None
    listed, links = _tables()
    seen = {text}
    current = text
    while current not in listed and not _fixed(current) and current in links:
        current = links[current]
        if current in seen:  # pragma: no cover - the database has no link cycles
            break
        seen.add(current)
    return current


def _fixed(name: str) -> bool:
    return name == "UTC" or name.startswith("Etc/")


def zone(name: str) -> ZoneInfo:
    """`ZoneInfo` for any IANA name, legacy ones included. Raises `UnknownZone`."""
    return ZoneInfo(canonical_zone(name))
