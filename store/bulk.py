"""Many rows in one statement: set membership, updates by id and inserts for a whole batch.

On PostgreSQL a batch of any size is one statement: ids are written into the SQL text, rows travel
as one JSON document read by `json_to_recordset`. One round trip, one run of a statement trigger,
and the values are encoded by the json module instead of one driver call per value.
SQLite runs in process: ids as one JSON array (`json_each`), and one statement per row, as
SQLAlchemy's bulk forms do.
Values are stored as SQLAlchemy would store them (column types' bind processing; a JSON column's
None is JSON null).
"""
from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any, Iterable

from sqlalchemy import JSON, Integer, String, Text, bindparam, cast, column, func, insert, literal, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def among(session: Session, col, values: Iterable) -> ColumnElement:
    """`col IN values` as a condition. Integer values never travel as one parameter each: on
    PostgreSQL they are written into the SQL text (`IN (1, 2, …)`), so the server plans the
    statement for these very values (a prepared plan would guess how many there are); on SQLite
    they are one JSON array read by `json_each` (`IN (SELECT value FROM json_each(?))`, SQLite's
    JSON functions, built in since 3.38), so the statement's text is the same for any number of
    values and is compiled once, not once per batch with a placeholder per value; SQLite's plan
    still searches `col`'s index for each value. Text values of a text column go the same way on
    SQLite. Anything else (another type, a value of another type: None, a float …; on SQLite a bool too):
    a plain `IN`."""
    values = list(values)
    if not _postgres(session):
        if isinstance(col.type, Integer) and all(type(v) is int for v in values):
            array = "[" + ",".join(map(str, values)) + "]"
        elif isinstance(col.type, String) and all(type(v) is str for v in values):
            array = json.dumps(values)  # \u escapes: any text binds, as SQLite reads them back
        else:
            return col.in_(values)
        return col.in_(select(column("value")).select_from(func.json_each(bindparam(None, array, unique=True))))
    if not isinstance(col.type, Integer) or not all(isinstance(v, int) for v in values):
        return col.in_(values)  # int() would make 1.5 find 1, and refuse None, where IN finds nothing
    # an anonymous, unique name: two `among` of one column in one statement keep their own values
    return col.in_(bindparam(None, [int(v) for v in values], expanding=True, literal_execute=True, unique=True))


def update_by_id(session: Session, model, rows: list[dict[str, Any]], **same: Any) -> None:
    """For each row, `UPDATE <model> SET <its other keys> WHERE id = row["id"]`, plus the columns
    `same` sets on every row. Rows with different keys are written in one statement per key set;
    an id must not appear twice. Session objects are not refreshed (as with
    `synchronize_session=False`).
    """
    if not rows:
        return
    table = model.__table__
    for keys, group in _by_keys(rows):
        if not _postgres(session):
            session.execute(update(table).where(table.c.id == bindparam("row_id")).values(
                {**{k: bindparam(f"row_{k}", type_=table.c[k].type) for k in keys if k != "id"}, **same}),
                [{f"row_{k}": v for k, v in row.items()} for row in group])
            continue
        names = ["id", *(k for k in keys if k != "id")]
        values, read = _recordset(session, table, names, group)
        session.execute(update(table).where(table.c.id == values.c.id)
                        .values({**{k: read[k] for k in names[1:]}, **same}))


def insert_rows(session: Session, model, rows: list[dict[str, Any]]) -> None:
    """INSERT the rows; on PostgreSQL one statement per set of keys the rows have."""
    if not rows:
        return
    table = model.__table__
    if not _postgres(session):
        session.execute(insert(table), rows)
        return
    for keys, group in _by_keys(rows):
        names = list(keys)
        _, read = _recordset(session, table, names, group)
        session.execute(insert(table).from_select(names, select(*[read[k] for k in names])))


CHUNK = 5000  # rows per statement on PostgreSQL: one JSON document stays a few MB at most
IN_LIST = 900  # values per bound IN (...) list, under SQLite's bound-parameter limit


def _by_keys(rows: list[dict[str, Any]]) -> list[tuple[tuple[str, ...], list[dict[str, Any]]]]:
    """The rows grouped by their keys, in chunks of at most CHUNK rows."""
    groups: dict[tuple[str, ...], list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    return [(keys, group[start:start + CHUNK]) for keys, group in groups.items()
            for start in range(0, len(group), CHUNK)]


def _recordset(session: Session, table, names: list[str], rows: list[dict[str, Any]]):
    """`json_to_recordset(:rows) AS v(name type, …)` and, per name, the expression reading it.

    A JSON column's value is written into the document as it is (so its text is what json.dumps
    makes of it, as SQLAlchemy stores it) and its None is read as JSON null, as SQLAlchemy writes it.
    """
    dialect = session.get_bind().dialect
    processed = []
    for name in names:
        kind = table.c[name].type
        process = None if isinstance(kind, JSON) else kind.bind_processor(dialect)
        if process is not None:
            processed.append((name, process))
    document = []
    for row in rows:
        item = {name: row[name] for name in names}
        for name, process in processed:
            value = process(item[name])
            item[name] = value.isoformat() if isinstance(value, (datetime, date)) else value
        document.append(item)
    text = json.dumps(document, default=_json_default)
    values = func.json_to_recordset(cast(bindparam("rows", text, type_=Text), JSON)).table_valued(
        *[column(n, table.c[n].type) for n in names]).render_derived(name="v", with_types=True)
    read = {n: func.coalesce(values.c[n], cast(literal("null"), JSON)) if isinstance(table.c[n].type, JSON)
            else values.c[n] for n in names}
    return values, read


def _json_default(value: Any) -> str:
    raise TypeError(f"{type(value).__name__} cannot be written in bulk")
