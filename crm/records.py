"""Cadence activities ↔ Salesforce records. Pure: data in, records and SOQL out.

Field names are the standard Task fields (Object Reference: Task): WhoId (a Contact 003… or a
Lead 00Q…), OwnerId (a User 005…), Subject (255 characters), Status, ActivityDate (a date),
TaskSubtype ("Email", "Task"; set on create only), Description (32,000 characters).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable

SUBJECT_MAX = 255
COLLECTION_LIMIT = 200  # records per sObject Collections call
DESCRIPTION_MAX = 32000
NOT_STARTED, COMPLETED = "Not Started", "Completed"
CREATE_KINDS = ("task", "email", "reply", "bounce", "unsubscribe")
CLOSE_KINDS = ("task_done", "task_skipped")
CONTACT_PREFIX, LEAD_PREFIX = "003", "00Q"


@dataclass(frozen=True)
class Activity:
    """What Cadence writes: one Task about one person, owned by one Salesforce user."""

    kind: str  # task | email | reply | bounce | unsubscribe | task_done | task_skipped
    who_id: str
    owner_id: str
    subject: str  # the full Task Subject ("Email: …")
    activity_date: str  # YYYY-MM-DD
    description: str | None = None


_REPLY_PREFIX = re.compile(r"^\s*(?:re|aw|sv|antw|r)\s*(?:\[\d+\])?\s*:\s*", re.IGNORECASE)


def subject_for(kind: str, email_subject: str | None, address: str) -> str:
    """The Task Subject of an activity, cut to Salesforce's 255 characters.

    A reply's is "Reply: " and the conversation's subject, without the "Re: " its sender added.
    """
    subject = (email_subject or "").strip()
    if kind == "reply":
        while _REPLY_PREFIX.match(subject):
            subject = _REPLY_PREFIX.sub("", subject, count=1)
    subject = subject or "(no subject)"
    text = {"task": f"Email: {subject}", "email": f"Email: {subject}", "task_done": f"Email: {subject}",
            "task_skipped": f"Email: {subject}", "reply": f"Reply: {subject}",
            "bounce": f"Bounced: {subject}", "unsubscribe": f"Unsubscribed: {address}"}[kind]
    return text[:SUBJECT_MAX]


def status_for(kind: str) -> str:
    return NOT_STARTED if kind == "task" else COMPLETED


def _description(text: str | None) -> str | None:
    return text[:DESCRIPTION_MAX] if text else None


def task_to_create(activity: Activity) -> dict:
    """The sObject Collections record creating this activity's Task."""
    record = {"attributes": {"type": "Task"}, "WhoId": activity.who_id, "OwnerId": activity.owner_id,
              "Subject": activity.subject, "ActivityDate": activity.activity_date,
              "Status": status_for(activity.kind), "Priority": "Normal",
              "TaskSubtype": "Task" if activity.kind == "unsubscribe" else "Email"}
    description = _description(activity.description)
    if description:
        record["Description"] = description
    return record


def task_to_close(record_id: str, activity: Activity) -> dict:
    """The update completing (sent) or closing (skipped) an open task's Task."""
    record = {"attributes": {"type": "Task"}, "Id": record_id, "Status": COMPLETED, "Subject": activity.subject}
    description = _description(activity.description)
    if description:
        record["Description"] = description
    return record


_ESCAPES = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f",
            '"': '\\"'}


def quote(value: str) -> str:
    """A SOQL string literal (SOQL and SOSL Reference: "Quoted String Escape Sequences")."""
    return "'" + "".join(_ESCAPES.get(ch, ch) for ch in str(value)) + "'"


def in_list(values: Iterable[str]) -> str:
    return "(" + ", ".join(quote(v) for v in sorted(set(values))) + ")"


def same_task(found: dict, activity: Activity) -> bool:
    """Whether a Task read back is the one this activity would have created (standard fields only)."""
    return (found.get("WhoId") == activity.who_id and found.get("OwnerId") == activity.owner_id
            and found.get("Subject") == activity.subject and found.get("ActivityDate") == activity.activity_date)


def find_tasks_soql(who_ids: Iterable[str], subjects: Iterable[str]) -> str:
    """Tasks that may be ones we created but whose answer was lost (filtered by who and subject)."""
    return ("SELECT Id, WhoId, OwnerId, Subject, ActivityDate, Status FROM Task "
            f"WHERE WhoId IN {in_list(who_ids)} AND Subject IN {in_list(subjects)}")


def people_soql(kind: str, emails: Iterable[str]) -> str:
    """Contacts (or unconverted Leads) having one of these email addresses."""
    if kind == "Contact":
        return f"SELECT Id, Email FROM Contact WHERE Email IN {in_list(emails)}"
    return f"SELECT Id, Email FROM Lead WHERE Email IN {in_list(emails)} AND IsConverted = false"


def users_soql(emails: Iterable[str]) -> str:
    return f"SELECT Id, Email FROM User WHERE Email IN {in_list(emails)} AND IsActive = true"


def by_email(records: Iterable[dict]) -> dict[str, str]:
    """email (lower case) → Id; where several share an address, the smallest Id (stable)."""
    found: dict[str, str] = {}
    for record in sorted(records, key=lambda r: str(r.get("Id"))):
        email = str(record.get("Email") or "").strip().lower()
        if email and email not in found:
            found[email] = str(record["Id"])
    return found


# -- imports ------------------------------------------------------------------------------------

IMPORT_COLUMNS = ("email", "first_name", "last_name", "company", "title", "country")


class QueryError(ValueError):
    """A SOQL query `contacts import --salesforce` cannot use (one sentence naming the field)."""


def import_object(soql: str) -> str:
    """`Contact` or `Lead`: the object a SELECT reads (raises QueryError for anything else)."""
    words = soql.split()
    upper = [w.upper() for w in words]
    if not upper or upper[0] != "SELECT" or "FROM" not in upper:
        raise QueryError("--salesforce: the query must be a SOQL SELECT … FROM Contact or Lead")
    target = words[upper.index("FROM") + 1] if upper.index("FROM") + 1 < len(words) else ""
    for name in ("Contact", "Lead"):
        if target.lower() == name.lower():
            if "EMAIL" not in {w.strip(",").upper() for w in words[1:upper.index("FROM")]}:
                raise QueryError("--salesforce: the query must select Email")
            return name
    raise QueryError(f"--salesforce: FROM {target or '?'}: only Contact and Lead can be imported")


def _text(value) -> str:
    return "" if value is None else str(value).strip()


def import_row(record: dict, country_code: Callable[[str], str]) -> dict[str, str]:
    """One Contact or Lead record → a contacts-file row (the CSV import's columns).

    Contact: Email, FirstName, LastName, Title, Account.Name, MailingCountry;
    Lead: Email, FirstName, LastName, Title, Company, Country. A country name is turned into
    its ISO 3166 code by `country_code` (left as given when unknown, so the row is refused).
    """
    account = record.get("Account") if isinstance(record.get("Account"), dict) else {}
    company = _text(record.get("Company")) or _text((account or {}).get("Name"))
    country = _text(record.get("MailingCountry")) or _text(record.get("Country"))
    return {"email": _text(record.get("Email")), "first_name": _text(record.get("FirstName")),
            "last_name": _text(record.get("LastName")), "company": company, "title": _text(record.get("Title")),
            "country": country_code(country) if country else ""}

