"""Contacts CSV → validated rows and line-numbered rejections. Pure: bytes in, decisions out."""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from functools import lru_cache

import holidays
import pycountry
from email_validator import EmailNotValidError, validate_email

from core.headers import HeaderInjection, check_header_value
from core.zones import UnknownZone, canonical_zone

KNOWN_COLUMNS = ("email", "first_name", "last_name", "company", "title", "timezone", "country", "owner")
FIELD_COLUMNS = KNOWN_COLUMNS[1:]  # a ContactRow's `fields`
NAME_COLUMNS = ("first_name", "last_name", "company", "title")
MAX_NAME_LENGTH = 200  # characters; real names and titles are far shorter, headers allow 998 per line


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
    """Syntax check only (no DNS); returns the normalized, lower-cased address or raises ValueError.

    An internationalized domain (`anna@münchen.example`) is accepted and kept in Unicode; headers
    carry its IDNA form (RFC 5890). A non-ASCII local part (`josé@…`) needs SMTPUTF8 (RFC 6531)
    end to end, which Gmail's API, Graph and most receiving servers do not offer, so it is refused
    here rather than retried for ever at send time.
    """
    text = address.strip()
    local = text.rpartition("@")[0]
    if local and not local.isascii():
        raise ValueError(
            "has non-ASCII characters before the @ (an SMTPUTF8 address, which mail providers cannot "
            "send to); ask the contact for an ASCII address")
    fast = _simple_address(text)
    if fast is not None:
        return fast
    try:
        return validate_email(text, check_deliverability=False, allow_smtputf8=False).normalized.lower()
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None


# An RFC 5322 dot-atom local part of ASCII atext: email-validator accepts it whole whenever its
# domain is valid and the lengths fit, so the domain alone is checked, once per distinct domain
# (a contacts file repeats a few hundred company domains over many thousand people).
_SIMPLE_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LOCAL_MAX, _ADDRESS_MAX, _DOMAINS_MAX = 64, 254, 50_000
_DOMAINS: dict[str, str | None] = {}  # domain as written -> its normalized form, None when refused


def _simple_address(text: str) -> str | None:
    """The normalized address when `text` is a simple ASCII address of a valid domain; None when
    email-validator must see the whole address (anything else, or a refused domain, so that its
    own sentence is the one reported)."""
    if not text.isascii() or text.count("@") != 1 or len(text) > _ADDRESS_MAX:
        return None
    local, domain = text.split("@")
    if len(local) > _LOCAL_MAX or not _SIMPLE_LOCAL.fullmatch(local):
        return None
    if domain not in _DOMAINS:
        try:
            normalized = validate_email(f"a@{domain}", check_deliverability=False,
                                        allow_smtputf8=False).normalized.rpartition("@")[2]
        except EmailNotValidError:
            normalized = None
        if normalized is not None and normalized.lower() != domain.lower():
            normalized = None  # written otherwise than it is normalized (IDNA …): the whole check decides
        if len(_DOMAINS) >= _DOMAINS_MAX:
            _DOMAINS.clear()
        _DOMAINS[domain] = normalized
    normalized = _DOMAINS[domain]
    return None if normalized is None else f"{local}@{normalized}".lower()


def check_country(value: str) -> str:
    """An ISO 3166-1 alpha-2 code (`DE`) or an ISO 3166-2 subdivision (`DE-BY`, `US-CA`, `ES-CT`),
    upper-cased. A subdivision must be one the `holidays` package knows for that country, so
    `skip_holidays` follows its regional calendar. Raises ValueError (one sentence)."""
    code = value.strip().upper()
    country, dash, subdivision = code.partition("-")
    if len(country) != 2 or (dash and not subdivision) or pycountry.countries.get(alpha_2=country) is None:
        raise ValueError(f"{value!r} is not an ISO 3166 country code (like DE) or subdivision (like DE-BY)")
    if subdivision:
        known = holidays.list_supported_countries().get(country, [])
        if subdivision not in known and pycountry.subdivisions.get(code=code) is None:
            raise ValueError(f"{value!r} is not an ISO 3166-2 subdivision of {country}")
    return code


def parse_contacts(data: bytes, *, source: str, encoding: str = "utf-8") -> ParsedContacts:
    """UTF-8 (with or without BOM) unless `encoding` names another codec; comma or semicolon
    separated; header row required. Raises ContactsFileError for a file that cannot be read as a
    whole (encoding, header), naming line and column."""
    try:
        text = data.decode("utf-8-sig" if encoding.replace("_", "-").lower() in ("utf-8", "utf8") else encoding)
    except LookupError:
        raise ContactsFileError(f"--encoding: {encoding!r} is not a known text encoding (try cp1252 or latin-1)") from None
    except UnicodeDecodeError as exc:
        raise ContactsFileError(_decode_problem(data, exc, source, encoding)) from None
    first_line = text.split("\n", 1)[0]
    delimiter = ";" if first_line.count(";") > first_line.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise ContactsFileError(f"{source}: the file is empty; a header row with an email column is required") from None
    if "email" not in header and first_line.count("\t") > max(first_line.count(","), first_line.count(";")):
        raise ContactsFileError(f"{source}, line 1: header: the file is tab-separated; save it as CSV "
                                "(comma or semicolon separated)")
    if "email" not in header:
        if delimiter == "," and "\t" in first_line:
            raise ContactsFileError(
                f"{source}, line 1: header: the file is tab-separated; save it as CSV (comma or semicolon separated)")
        raise ContactsFileError(f"{source}, line 1: header: no email column (found: {', '.join(header)})")
    duplicates = {h for h in header if header.count(h) > 1}
    if duplicates:
        raise ContactsFileError(f"{source}, line 1: header: column {sorted(duplicates)[0]!r} appears twice")
    result = ParsedContacts()
    seen: dict[str, int] = {}
    custom_names = [h for h in header if h not in KNOWN_COLUMNS]
    while True:
        line = reader.line_num + 1  # where the record starts: a quoted value may span lines
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise ContactsFileError(f"{source}, line {line}: not valid CSV ({exc})") from None
        stripped = [v.strip() for v in values]
        if not any(stripped):
            continue
        if len(values) > len(header):
            result.rejections.append(Rejection(line, "row", f"{len(values)} values for {len(header)} columns"))
            continue
        record = dict(zip(header, stripped + [""] * (len(header) - len(stripped))))
        row = _row(line, record, result.rejections, custom_names)
        if row is None:
            continue
        if row.email in seen:
            result.rejections.append(Rejection(line, "email", f"{row.email} already given on line {seen[row.email]}"))
            continue
        seen[row.email] = line
        result.rows.append(row)
    return result


# A file repeats a handful of zones and countries over all its rows: each distinct value is
# checked once (both are pure; a refusal is not cached and is raised again, with its sentence).
_canonical_zone = lru_cache(maxsize=1024)(canonical_zone)
_check_country = lru_cache(maxsize=1024)(check_country)


def _row(line: int, record: dict[str, str], rejections: list[Rejection], custom_names: list[str]) -> ContactRow | None:
    try:
        email = normalize_email(record["email"])
    except ValueError as exc:
        rejections.append(Rejection(line, "email", f"{record['email']!r} is not a valid address ({exc})"))
        return None
    zone = record.get("timezone") or None
    if zone:
        try:
            zone = _canonical_zone(zone)
        except UnknownZone as exc:
            rejections.append(Rejection(line, "timezone", str(exc)))
            return None
    country = record.get("country") or None
    if country:
        try:
            country = _check_country(country)
        except ValueError as exc:
            rejections.append(Rejection(line, "country", str(exc)))
            return None
    owner = record.get("owner") or None
    if owner:
        try:
            owner = normalize_email(owner)
        except ValueError:
            rejections.append(Rejection(line, "owner", f"{owner!r} is not a valid rep address"))
            return None
    for name in NAME_COLUMNS:
        value = record.get(name) or ""
        if len(value) > MAX_NAME_LENGTH:
            rejections.append(Rejection(
                line, name, f"{len(value)} characters is too long (at most {MAX_NAME_LENGTH})"))
            return None
        try:
            check_header_value(name, value)
        except HeaderInjection as refused:
            rejections.append(Rejection(line, name, f"{refused} (names may end up in headers)"))
            return None
    fields = {k: (record.get(k) or None) for k in FIELD_COLUMNS}
    fields.update(timezone=zone, country=country, owner=owner)
    custom = {k: record[k] for k in custom_names}
    return ContactRow(line, email, fields, custom)


def _decode_problem(data: bytes, exc: UnicodeDecodeError, source: str, encoding: str) -> str:
    """Where the first undecodable byte sits, as line and column, and what to do about it."""
    before = data[: exc.start]
    line = before.count(b"\n") + 1
    column = exc.start - (before.rfind(b"\n") + 1) + 1
    byte = data[exc.start: exc.start + 1].hex()
    return (f"{source}, line {line}, column {column}: byte 0x{byte} is not {encoding.upper()}; "
            "save the file as \"CSV UTF-8\" (Excel: File > Save As > CSV UTF-8), "
            "or give its encoding with --encoding (for example --encoding cp1252)")
