"""`cadence campaign import` and `cadence contacts import`."""
from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import Text, bindparam, cast, insert, select, update

from cadence.app import App
from cadence.services.errors import UserError
from cadence.services.sequences import follow_zone_changes
from core.contacts import ContactsFileError, Rejection, parse_contacts
from core.definition import (
    MAX_BODY_BYTES,
    MAX_FILE_CHARS,
    BodyFileError,
    DefinitionError,
    campaign_warnings,
    parse_campaign,
)
from core.vocabulary import CampaignState
from store.bulk import IN_LIST, among
from store.campaigns import find_campaign, read_spec, write_spec
from store.models import Campaign, Contact, Rep

EDITABLE_STATES = {CampaignState.DRAFT, CampaignState.PREPARED, CampaignState.FAILED}


def load_campaign_file(path: Path):
    """Read and validate a campaign file; `body_file` paths are relative to it (see `read_body_file`)."""
    try:
        size = path.stat().st_size
        if not stat.S_ISREG(path.stat().st_mode):
            raise UserError(f"{path}: the campaign file is not a regular file")
        if size > MAX_FILE_CHARS * 4:
            raise UserError(f"{path}: the campaign file is over {MAX_FILE_CHARS:,} characters; keep long bodies in "
                            "body_file")
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: the campaign file is not UTF-8 text (byte {exc.start + 1}); save it as UTF-8") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read the campaign file ({exc.strerror or type(exc).__name__})") from None

    try:
        return parse_campaign(text, source=str(path), read_file=lambda relative: read_body_file(path, relative))
    except DefinitionError as exc:
        raise UserError(str(exc)) from None


def read_body_file(campaign_file: Path, relative: str) -> str:
    """A `body_file`'s text, confined to the campaign file's folder.

    Refused (BodyFileError): an absolute path; a path that resolves (`..`, symlinks) outside the
    folder; anything but a regular file (FIFO, device, directory), checked on the opened file
    descriptor so a swap after the check changes nothing; more than MAX_BODY_BYTES. Opened
    non-blocking, so a FIFO cannot hang the import. A leading UTF-8 BOM is dropped. Raises
    UnicodeDecodeError for non-UTF-8 text.
    """
    if "\x00" in relative or Path(relative).is_absolute() or relative.startswith("~"):
        raise BodyFileError("must be a path relative to the campaign file's folder")
    folder = campaign_file.parent.resolve()
    try:
        target = (folder / relative).resolve(strict=True)
    except FileNotFoundError:
        raise BodyFileError("does not exist (paths are relative to the campaign file's folder)") from None
    except (OSError, RuntimeError):  # a symlink loop
        raise BodyFileError("cannot be resolved (a symlink loop?)") from None
    if not target.is_relative_to(folder):
        raise BodyFileError("is outside the campaign file's folder")
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise BodyFileError(f"cannot be opened ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise BodyFileError("is not a regular file")
        if info.st_size > MAX_BODY_BYTES:
            raise BodyFileError(f"is over {MAX_BODY_BYTES:,} bytes")
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(MAX_BODY_BYTES + 1)
    if len(data) > MAX_BODY_BYTES:
        raise BodyFileError(f"is over {MAX_BODY_BYTES:,} bytes")
    return data.decode("utf-8-sig")  # a BOM an editor wrote is no text of the email


def load_campaign_data(data: bytes, *, source: str):
    """Read and validate an uploaded campaign file (its bytes; `source` names it in errors). An upload
    has no folder, so a `body_file` is refused: keep the bodies inline or import it from the CLI."""
    if len(data) > MAX_FILE_CHARS * 4:
        raise UserError(f"{source}: the campaign file is over {MAX_FILE_CHARS:,} characters; keep long bodies in "
                        "body_file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{source}: the campaign file is not UTF-8 text (byte {exc.start + 1}); save it as UTF-8") \
            from None

    def no_files(relative: str) -> str:
        raise BodyFileError("cannot be read from an uploaded file; put the body inline or import the campaign "
                            "with `cadence campaign import`")

    try:
        return parse_campaign(text, source=source, read_file=no_files)
    except DefinitionError as exc:
        raise UserError(str(exc)) from None


def import_campaign(app: App, path: Path) -> tuple[str, bool]:
    """Create the campaign, or update one not yet launched. Returns (name, created)."""
    spec = load_campaign_file(path)
    return store_campaign(app, spec, source=str(path.resolve()), label=str(path))


def import_campaign_data(app: App, data: bytes, *, source: str, may_create: bool = True,
                         may_change: Callable[[int], bool] | None = None) -> tuple[str, bool]:
    """`import_campaign` of an uploaded file's bytes (the web app). `may_create`: whether a new
    campaign may be added; `may_change(campaign_id)`: whether an existing one may be replaced.
    UserError (naming `source`, and line and field for a bad file) and nothing written otherwise."""
    spec = load_campaign_data(data, source=source)
    return store_campaign(app, spec, source=f"upload:{source}", label=source, may_create=may_create,
                          may_change=may_change)


def store_campaign(app: App, spec, *, source: str, label: str, may_create: bool = True,
                   may_change: Callable[[int], bool] | None = None) -> tuple[str, bool]:
    """Store a validated campaign: create it, or update one not yet launched. Returns (name, created)."""
    now = app.clock.now()
    with app.db.session() as session:
        campaign = find_campaign(session, spec.name)
        created = campaign is None
        if created:
            if not may_create:
                raise UserError(f"{label}: there is no campaign {spec.name!r} of yours to update, and only an admin "
                                "may add a new one")
            campaign = Campaign(name=spec.name, state=CampaignState.DRAFT.value, options={}, created_at=now,
                                updated_at=now, source=source)
            session.add(campaign)
            session.flush()
        else:
            if may_change is not None and not may_change(campaign.id):
                raise UserError(f"{label}: campaign {spec.name!r} is not yours to change")
            if CampaignState(campaign.state) not in EDITABLE_STATES or campaign.started_at is not None:
                raise UserError(f"{label}: campaign {campaign.name!r} is {campaign.state} and was already launched; "
                                "it can no longer be changed (import it under a new name)")
            if read_spec(session, campaign) == spec:
                return campaign.name, False
            campaign.content_version += 1
            if campaign.state != CampaignState.DRAFT.value:
                campaign.state = CampaignState.DRAFT.value  # the preparation no longer matches
        write_spec(session, campaign, spec)
        campaign.updated_at = now
        campaign.source = source
        return campaign.name, created


@dataclass
class ContactsReport:
    imported: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    written: bool = True
    emails: list[str] = field(default_factory=list)  # the file's valid rows' addresses, in file order
    # with `want_ids`: address -> (contact id, its time zone after the import) of the rows written
    contacts: dict[str, tuple[int, str | None]] = field(default_factory=dict)


def import_contacts(app: App, path: Path, *, strict: bool = False, encoding: str = "utf-8",
                    progress: Callable[[int, int], None] | None = None, want_ids: bool = False) -> ContactsReport:
    """Upsert contacts by email. Bad rows are reported and skipped; `strict`: nothing written if any.
    `encoding`: the file's text encoding (UTF-8 with or without BOM by default). `progress(done,
    total)` is called every few hundred rows. `want_ids`: fill `report.contacts` (what `enroll`
    needs of each person, without looking them up again)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read the contacts file ({exc.strerror})") from None
    return import_contacts_data(app, data, source=str(path), strict=strict, encoding=encoding, progress=progress,
                                want_ids=want_ids)


def import_contacts_data(app: App, data: bytes, *, source: str, strict: bool = False, encoding: str = "utf-8",
                         salesforce_ids: dict[str, str] | None = None,
                         progress: Callable[[int, int], None] | None = None,
                         owners_allowed: Callable[[int], bool] | None = None,
                         want_ids: bool = False) -> ContactsReport:
    """`import_contacts` on a file's bytes; `salesforce_ids` (email → Contact/Lead Id) are kept.
    `owners_allowed(rep_id)`: a row whose `owner` fails it is rejected (the web app: a rep may give
    contacts only to their own team)."""
    try:
        parsed = parse_contacts(data, source=source, encoding=encoding)
    except ContactsFileError as exc:
        raise UserError(str(exc)) from None
    report = ContactsReport(rejected=list(parsed.rejections), emails=[row.email for row in parsed.rows])
    now = app.clock.now()
    with app.db.session() as session:
        owners = {r.email: r.id for r in session.scalars(select(Rep)).all()}
        rows = []
        for row in parsed.rows:
            owner = row.fields.get("owner")
            if owner and owner not in owners:
                report.rejected.append(Rejection(row.line, "owner", f"no rep with email {owner}"))
                continue
            if owner and owners_allowed is not None and not owners_allowed(owners[owner]):
                report.rejected.append(Rejection(row.line, "owner", f"{owner} is not in your team"))
                continue
            rows.append(row)
        report.rejected.sort(key=lambda r: r.line)
        if strict and report.rejected:
            report.written = False
            return report
        existing = _existing_contacts(session, [r.email for r in rows])
        moved_zones: dict[int, str] = {}
        new_rows: list[dict] = []
        changes: list[dict] = []
        for done, row in enumerate(rows):
            if progress is not None and done % 250 == 0:
                progress(done, len(rows))
            values = {k: v for k, v in row.fields.items() if k != "owner"}
            values["owner_id"] = owners.get(row.fields.get("owner")) if row.fields.get("owner") else None
            if salesforce_ids and row.email in salesforce_ids:
                values["salesforce_id"] = salesforce_ids[row.email]
            stored = existing.get(row.email)
            if stored is None:
                new_rows.append({**dict.fromkeys(UPSERTED), **values, "email": row.email, "custom": row.custom,
                                 "created_at": now, "updated_at": now})
                continue
            if values.get("timezone") and values["timezone"] != stored.timezone:
                moved_zones[stored.id] = values["timezone"]
            if want_ids:
                report.contacts[row.email] = (stored.id, values.get("timezone") or stored.timezone)
            change = {k: v for k, v in values.items() if v is not None and getattr(stored, k) != v}
            if row.custom:
                # merged into the stored custom columns (decoded only here; a stored text equal to
                # the file's columns, the common case of a file imported again, needs no decoding)
                if stored.custom != json.dumps(row.custom):
                    custom = _stored_custom(stored.custom)
                    merged = {**(custom or {}), **row.custom}
                    if merged != custom:
                        change["custom"] = merged
            elif _stored_custom(stored.custom) is None:
                change["custom"] = {}
            if change:
                kept = {**{k: getattr(stored, k) for k in UPSERTED}, "custom": _stored_custom(stored.custom),
                        **change, "updated_at": now}
                changes.append({"contact_id": stored.id, **{f"new_{k}": v for k, v in kept.items()}})
        report.imported, report.updated = len(new_rows), len(changes)
        report.unchanged = len(rows) - len(new_rows) - len(changes)
        _write_contacts(session, new_rows, changes)
        if want_ids and new_rows:
            table = Contact.__table__
            new = [r["email"] for r in new_rows]
            for start in range(0, len(new), IN_LIST):
                report.contacts.update((email, (cid, zone)) for cid, email, zone in session.execute(
                    select(table.c.id, table.c.email, table.c.timezone).where(
                        among(session, table.c.email, new[start:start + IN_LIST]))))
        follow_zone_changes(session, app.clock, moved_zones, now)
    return report


# The columns an import may set, besides email, custom and the times; rows written in bulk all carry
# each of them (an executemany binds the same names in every row).
UPSERTED = ("first_name", "last_name", "company", "title", "timezone", "country", "owner_id", "salesforce_id")
BATCH = 5000  # rows per executemany


def _existing_contacts(session, emails: list[str]) -> dict[str, Any]:
    """{email: row (.id, .custom and the UPSERTED columns)} of the stored contacts among `emails`,
    one query per IN_LIST addresses (plain rows: no ORM object per contact)."""
    table = Contact.__table__
    # `custom` as its stored JSON text, decoded only when the file brings custom columns to merge
    columns = [table.c.id, table.c.email, cast(table.c.custom, Text).label("custom"),
               *(table.c[name] for name in UPSERTED)]
    found: dict[str, Any] = {}
    for start in range(0, len(emails), IN_LIST):
        rows = session.execute(select(*columns).where(among(session, table.c.email, emails[start:start + IN_LIST])))
        found.update((row.email, row) for row in rows.all())  # one fetch, not one call per row
    return found


def _stored_custom(text: str | None):
    """A contact's `custom` column read as JSON text (see `_existing_contacts`), decoded; None for
    SQL NULL or JSON null. An empty object, the common case, is not parsed."""
    if text is None or text == "null":
        return None
    return {} if text == "{}" else json.loads(text)


def _write_contacts(session, new_rows: list[dict], changes: list[dict]) -> None:
    """New contacts by executemany INSERT, changed ones by executemany UPDATE of every importable
    column (`changes`: {"contact_id", "new_<column>"…}, the stored value where nothing changed)."""
    table = Contact.__table__
    for start in range(0, len(new_rows), BATCH):
        session.execute(insert(table), new_rows[start:start + BATCH])
    if changes:
        statement = (update(table).where(table.c.id == bindparam("contact_id"))
                     .values({name: bindparam(f"new_{name}") for name in (*UPSERTED, "custom", "updated_at")}))
        for start in range(0, len(changes), BATCH):
            session.execute(statement, changes[start:start + BATCH])


def campaign_warnings_for(app: App, name: str) -> list[str]:
    """`core.definition.campaign_warnings` of the stored campaign `name` (none if unknown)."""
    with app.db.session() as session:
        campaign = find_campaign(session, name)
        return [] if campaign is None else campaign_warnings(read_spec(session, campaign))
