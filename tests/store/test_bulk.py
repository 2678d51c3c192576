"""store.bulk writes what SQLAlchemy's own bulk forms write, on SQLite and PostgreSQL: the same
values, datetimes in UTC, a JSON column's None as JSON null, rows of different keys each right."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import delete, insert, or_, select, text, update

from store import bulk
from store.db import Database
from store.models import Event

AT = datetime(2026, 3, 29, 0, 30, tzinfo=timezone(timedelta(hours=2)))


def _rows(n: int) -> list[dict]:
    return [{"kind": "sent", "at": AT + timedelta(minutes=i), "detail": f"it's \"{i}\" \\ é\n",
             "level": "info", "data": None if i % 3 == 0 else {"due_at": AT.isoformat(), "list": [i, "x"]},
             "dedup_key": None} for i in range(n)]


def _table(session) -> list[tuple]:
    return [tuple(r) for r in session.execute(select(Event.kind, Event.at, Event.detail, Event.level, Event.data,
                                                     Event.hits).order_by(Event.id))]


def test_inserts_and_updates_write_what_the_orm_bulk_forms_write(database_url):
    db = Database(database_url)
    db.upgrade()
    try:
        with db.session() as session:
            bulk.insert_rows(session, Event, _rows(7))
            ours = _table(session)
            raw_nulls = session.execute(text("SELECT count(*) FROM events WHERE data IS NULL")).scalar()
            ids = [e for e in session.scalars(select(Event.id).order_by(Event.id))]
            bulk.update_by_id(session, Event, [{"id": ids[0], "detail": "first"}, {"id": ids[1], "data": [1]},
                                               {"id": ids[2], "detail": "third"}], level="warning")
            updated = _table(session)
            wanted = ids[2:4]
            found = sorted(session.scalars(select(Event.id).where(bulk.among(session, Event.id, wanted))))
            session.execute(text("DELETE FROM events"))
            session.execute(insert(Event), _rows(7))
            theirs = _table(session)
            their_nulls = session.execute(text("SELECT count(*) FROM events WHERE data IS NULL")).scalar()
            ids = [e for e in session.scalars(select(Event.id).order_by(Event.id))]
            session.execute(update(Event), [{"id": ids[0], "detail": "first", "level": "warning"},
                                            {"id": ids[1], "data": [1], "level": "warning"},
                                            {"id": ids[2], "detail": "third", "level": "warning"}])
            their_updates = _table(session)
    finally:
        db.dispose()
    assert ours == theirs and raw_nulls == their_nulls == 0
    assert ours[1][1] == AT + timedelta(minutes=1) and ours[0][4] is None and ours[1][4]["list"] == [1, "x"]
    assert updated == their_updates
    assert [r[2] for r in updated[:3]] == ["first", ours[1][2], "third"] and updated[1][4] == [1]
    assert [r[3] for r in updated] == ["warning"] * 3 + ["info"] * 4
    assert found == wanted


def test_among_finds_the_same_rows_as_a_plain_in_for_every_shape_of_values(database_url):
    """Integer ids and text values as one JSON array on SQLite (issue 17); whatever the shape, the
    rows found are the rows a plain IN finds."""
    from store.models import Contact

    db = Database(database_url)
    db.upgrade()
    names = ["ana@x.example", "o'brien@x.example", 'quo"te@x.example', "back\\slash@x.example",
             "zoë@ü.example", "emoji😀@x.example", "comma,semi;@x.example", "[bracket]@x.example"]
    try:
        with db.session() as session:
            for i, name in enumerate(names):
                session.execute(insert(Contact.__table__).values(email=name, created_at=AT, updated_at=AT,
                                                                 custom={}))
            ids = list(session.scalars(select(Contact.id).order_by(Contact.id)))
            shapes = {
                "no id": (Contact.id, []), "one id": (Contact.id, ids[:1]), "every id": (Contact.id, ids),
                "ids and unknown ids": (Contact.id, [*ids[::2], 2**31 - 1, -5, 0]),
                "repeated ids": (Contact.id, ids[:2] * 3), "2,000 ids": (Contact.id, [*range(-2000, 0), ids[3]]),
                "no text": (Contact.email, []), "every text": (Contact.email, names),
                "text with JSON's characters": (Contact.email, names[1:4] + ["nobody@x.example"]),
                "text outside ASCII": (Contact.email, names[4:6]),
                "text differing in case": (Contact.email, ["ANA@x.example"]),
            }
            for shape, (col, values) in shapes.items():
                found = sorted(session.scalars(select(Contact.id).where(bulk.among(session, col, values))))
                plain = sorted(session.scalars(select(Contact.id).where(col.in_(values)))) if values else []
                assert found == plain, shape
            both = sorted(session.scalars(select(Contact.id).where(
                bulk.among(session, Contact.id, ids[:4]), bulk.among(session, Contact.id, ids[2:]))))
            assert both == ids[2:4]  # twice in one statement, each with its own values
            session.execute(update(Contact.__table__).where(bulk.among(session, Contact.__table__.c.id, ids[:2]))
                            .values(company="Two"))
            assert sorted(session.scalars(select(Contact.id).where(Contact.company == "Two"))) == ids[:2]
    finally:
        db.dispose()


def _events(db, n: int) -> list[int]:
    with db.session() as session:
        bulk.insert_rows(session, Event, _rows(n))
        return list(session.scalars(select(Event.id).order_by(Event.id)))


AMONG_SHAPES = [  # (values given the ids 1..10 of the table, the ids `col IN values` finds)
    ("nothing", lambda ids: [], []),
    ("one", lambda ids: [ids[0]], [0]),
    ("repeated", lambda ids: [ids[1]] * 3, [1]),
    ("negative and unknown", lambda ids: [-1, -(2 ** 40), 10 ** 12, ids[2]], [2]),
    ("a set", lambda ids: {ids[3], ids[4]}, [3, 4]),
    ("a generator", lambda ids: (i for i in ids[5:7]), [5, 6]),
    ("True is 1", lambda ids: [True], [0]),
    ("100,000 ids", lambda ids: range(-50_000, 50_000), list(range(10))),
    ("None", lambda ids: [None], []),
    ("None and an id", lambda ids: [None, ids[4]], [4]),
    ("a fraction", lambda ids: [ids[0] + 0.5], []),
    ("a whole float", lambda ids: [float(ids[1])], [1]),
]


@pytest.mark.parametrize("shape, values, found", AMONG_SHAPES, ids=[s[0] for s in AMONG_SHAPES])
def test_among_finds_what_in_finds(database_url, shape, values, found):
    db = Database(database_url)
    db.upgrade()
    try:
        ids = _events(db, 10)
        with db.session(readonly=True) as session:
            got = sorted(session.scalars(select(Event.id).where(bulk.among(session, Event.id, values(ids)))))
            left = sorted(session.scalars(select(Event.id).where(~bulk.among(session, Event.id, values(ids)))))
    finally:
        db.dispose()
    assert got == [ids[i] for i in found]
    if shape not in ("None", "None and an id"):  # NOT IN a list holding NULL is never true, as SQL says
        assert left == [i for i in ids if i not in got]


def test_among_twice_in_one_statement_and_in_updates_deletes_and_calls_after_calls(database_url):
    db = Database(database_url)
    db.upgrade()
    try:
        ids = _events(db, 10)
        with db.session() as session:
            twice = sorted(session.scalars(select(Event.id).where(
                or_(bulk.among(session, Event.id, ids[:1]), bulk.among(session, Event.id, ids[5:6])))))
            both = sorted(session.scalars(select(Event.id).where(
                bulk.among(session, Event.id, ids[:4]), bulk.among(session, Event.id, ids[2:6]))))
            calls = [sorted(session.scalars(select(Event.id).where(bulk.among(session, Event.id, ids[k:k + 2]))))
                     for k in range(4)]  # the same statement, compiled once, with other values
            updated = session.execute(update(Event).where(bulk.among(session, Event.id, ids[:3]))
                                      .values(detail="updated")).rowcount
            deleted = session.execute(delete(Event).where(bulk.among(session, Event.id, ids[8:]))).rowcount
            details = list(session.execute(select(Event.id, Event.detail).order_by(Event.id)))
    finally:
        db.dispose()
    assert twice == [ids[0], ids[5]]
    assert both == ids[2:4]
    assert calls == [ids[k:k + 2] for k in range(4)]
    assert (updated, deleted) == (3, 2)
    assert [i for i, _ in details] == ids[:8]
    assert [d for _, d in details][:4] == ["updated"] * 3 + [_rows(4)[3]["detail"]]
