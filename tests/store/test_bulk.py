"""store.bulk writes what SQLAlchemy's own bulk forms write, on SQLite and PostgreSQL: the same
values, datetimes in UTC, a JSON column's None as JSON null, rows of different keys each right."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import insert, select, text, update

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
