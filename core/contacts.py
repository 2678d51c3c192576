"""Contacts CSV → validated rows and line-numbered rejections. Pure: bytes in, decisions out."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pycountry
from email_validator import EmailNotValidError, validate_email

from core.headers import HeaderInjection, check_header_value

KNOWN_COLUMNS = ("email", "first_name", "last_name", "company", "title", "timezone", "country", "owner")


@dataclass(frozen=True)
class ContactRow:
    line: int
    email: str  # normalized, lower-case
    fields: dict[str, str | None]  # the known columns but email
    custom: dict[str, str]


@dataclass(frozen=True)
class Rejection:
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.message}"


@dataclass
class ParsedContacts:
    rows: list[ContactRow] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


class ContactsFileError(ValueError):
    """The file as a whole cannot be read (encoding, header)."""


def normalize_email(address: str) -> str:
    """Syntax check only (no DNS); returns the normalized, lower-cased address or raises ValueError."""
    try:
        return validate_email(address.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None


def parse_contacts(data: bytes, *, source: str) -> ParsedContacts:
    """UTF-8 with or without BOM, comma or semicolon separated, header row required."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ContactsFileError(f"{source}: not UTF-8 (byte {exc.start})") from None
    first_line = text.split("\n", 1)[0]
    delimiter = ";" if first_line.count(";") > first_line.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise ContactsFileError(f"{source}: the file is empty; a header row with an email column is required") from None
    if "email" not in header:
        raise ContactsFileError(f"{source}, line 1: header: no email column (found: {', '.join(header)})")
    duplicates = {h for h in header if header.count(h) > 1}
    if duplicates:
        raise ContactsFileError(f"{source}, line 1: header: column {sorted(duplicates)[0]!r} appears twice")
    result = ParsedContacts()
    seen: dict[str, int] = {}
    while True:
        line = reader.line_num + 1  # where the record starts: a quoted value may span lines
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise ContactsFileError(f"{source}, line {line}: not valid CSV ({exc})") from None
        if not any(v.strip() for v in values):
            continue
        if len(values) > len(header):
            result.rejections.append(Rejection(line, "row", f"{len(values)} values for {len(header)} columns"))
            continue
        record = {h: (values[i].strip() if i < len(values) else "") for i, h in enumerate(header)}
        row = _row(line, record, result.rejections)
        if row is None:
            continue
        if row.email in seen:
            result.rejections.append(Rejection(line, "email", f"{row.email} already given on line {seen[row.email]}"))
            continue
        seen[row.email] = line
        result.rows.append(row)
    return result


def _row(line: int, record: dict[str, str], rejections: list[Rejection]) -> ContactRow | None:
    try:
        email = normalize_email(record["email"])
    except ValueError as exc:
        rejections.append(Rejection(line, "email", f"{record['email']!r} is not a valid address ({exc})"))
        return None
    zone = record.get("timezone") or None
    if zone:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            rejections.append(Rejection(line, "timezone", f"{zone!r} is not an IANA time zone"))
            return None
    country = (record.get("country") or "").upper() or None
    if country and (len(country) != 2 or pycountry.countries.get(alpha_2=country) is None):
        rejections.append(Rejection(line, "country", f"{country!r} is not an ISO 3166 alpha-2 code"))
        return None
    owner = record.get("owner") or None
    if owner:
        try:
            owner = normalize_email(owner)
        except ValueError:
            rejections.append(Rejection(line, "owner", f"{owner!r} is not a valid rep address"))
            return None
    for name in ("first_name", "last_name", "company", "title"):
        try:
            check_header_value(name, record.get(name) or "")
        except HeaderInjection as refused:
            rejections.append(Rejection(line, name, f"{refused} (names may end up in headers)"))
            return None
    fields = {k: (record.get(k) or None) for k in KNOWN_COLUMNS if k != "email"}
    fields.update(timezone=zone, country=country, owner=owner)
    custom = {k: v for k, v in record.items() if k not in KNOWN_COLUMNS}
    return ContactRow(line, email, fields, custom)
