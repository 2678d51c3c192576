"""`cadence contacts import --salesforce "SOQL"`: Contacts or Leads from the connected org,
through the same validation and upsert as a contacts file (same report)."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

import pycountry

from cadence.app import App
from cadence.services.crm import CONNECTED, NEEDS_SIGN_IN, find_connection, mark_disconnected, org_for
from cadence.services.errors import UserError
from cadence.services.imports import ContactsReport, import_contacts_data
from core.contacts import normalize_email
from crm import records
from crm.errors import CrmError, Disconnected


@dataclass
class SalesforceImport:
    """The CSV import's report, plus the Salesforce record behind each row."""

    report: ContactsReport
    object: str
    records_by_line: dict[int, tuple[int, str]] = field(default_factory=dict)  # line → (number, Id)

    def where(self, line: int) -> str:
        """'record 3 (003…)' for a report line (records are numbered from 1 in query order)."""
        number, record_id = self.records_by_line.get(line, (line - 1, ""))
        return f"record {number}" + (f" ({record_id})" if record_id else "")


def _country_code(name: str) -> str:
    if len(name) == 2 and name.isalpha():
        return name.upper()
    try:
        return pycountry.countries.lookup(name).alpha_2
    except LookupError:
        return name


def import_from_salesforce(app: App, soql: str, *, strict: bool = False) -> SalesforceImport:
    """Run the query (every page, through queryMore) and upsert the people it returns.

    Raises UserError for a query over anything but Contact or Lead, when Salesforce is not
    connected, or when Salesforce refuses the query (its message included).
    """
    try:
        sobject = records.import_object(soql)
    except records.QueryError as bad:
        raise UserError(str(bad)) from None
    with app.db.session() as session:
        connection = find_connection(session)
    if connection is None or connection.health != CONNECTED:
        raise UserError(f"Salesforce is not connected; {NEEDS_SIGN_IN}")
    try:
        found = list(org_for(app, connection).query(soql))
    except Disconnected as problem:
        mark_disconnected(app, problem.reason)
        raise UserError(f"--salesforce: {problem.reason}") from None
    except CrmError as problem:
        raise UserError(f"--salesforce: {problem.reason}") from None
    chunks = [",".join(records.IMPORT_COLUMNS) + "\n"]
    line = 2  # the line the next record starts on (a quoted value may span lines)
    result = SalesforceImport(ContactsReport(), sobject)
    ids: dict[str, str] = {}
    for number, record in enumerate(found, start=1):
        row = records.import_row(record, _country_code)
        text = io.StringIO()
        csv.DictWriter(text, fieldnames=records.IMPORT_COLUMNS, lineterminator="\n").writerow(row)
        chunks.append(text.getvalue())
        record_id = str(record.get("Id") or "")
        result.records_by_line[line] = (number, record_id)
        line += text.getvalue().count("\n")
        try:
            ids.setdefault(normalize_email(row["email"]), record_id)
        except ValueError:
            pass  # refused by the import with its reason
    result.report = import_contacts_data(app, "".join(chunks).encode("utf-8"), source="salesforce", strict=strict,
                                         salesforce_ids=ids)
    return result
