"""The facts of sent messages behind the tracking routes (`cadence.tracking_http.FactsLoader` over
`engagement.sent_messages_facts`): read off the event loop, the misses of one turn of the loop in
one read, each sent message's facts read once, a message not sent never cached, and a database
error given to every request waiting on that read. On SQLite and PostgreSQL.
"""
from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from tests.support.prepare import database, sent_campaign
from tests.support.tracking import LINKS


def _world(cli):
    """(App, ids of three sent messages, id of one not sent) of a campaign sent to four people."""
    from cadence.app import App

    sent_campaign(cli, LINKS, people=4)
    engine = database(cli)
    with engine.begin() as connection:
        ids = list(connection.execute(text("SELECT id FROM messages WHERE state = 'sent' ORDER BY id")).scalars())
        assert len(ids) == 4
        # the last one as if it had not gone out yet: its tracking URL must find nothing
        connection.execute(text("UPDATE messages SET state = 'scheduled' WHERE id = :id"), {"id": ids[-1]})
    engine.dispose()
    return App.from_settings(), ids[:3], ids[-1]


class Reads:
    """`sent_messages_facts` of the app, with the ids of every read it was asked for."""

    def __init__(self, app):
        self.app, self.calls = app, []

    def __call__(self, ids: list[int]):
        from cadence.services.engagement import sent_messages_facts

        self.calls.append(sorted(ids))
        return sent_messages_facts(self.app, ids)


def test_misses_of_one_turn_are_read_together_and_each_sent_message_once(cli):
    from cadence.services.engagement import sent_message_facts
    from cadence.tracking_http import FactsLoader

    app, sent, unsent = _world(cli)
    reads = Reads(app)
    loader = FactsLoader(reads)

    async def run():
        first = await asyncio.gather(*(loader.load(i) for i in [*sent, sent[0], unsent, 10**9]))
        again = await asyncio.gather(*(loader.load(i) for i in [*sent, unsent]))
        return first, again

    first, again = asyncio.run(run())
    app.db.dispose()
    expected = [sent_message_facts(app, i) for i in sent]
    assert all(facts is not None for facts in expected)
    assert first == [*expected, expected[0], None, None]
    assert again == [*expected, None]
    # one read for the first turn (each id once); the second turn reads only what is not sent
    assert reads.calls == [sorted({*sent, unsent, 10**9}), [unsent]]
    assert [loader.known(i) for i in sent] == expected and loader.known(unsent) is None


def test_a_database_error_reaches_every_request_of_the_read_and_the_next_read_works(cli, caplog):
    from cadence.tracking_http import FactsLoader

    app, sent, _unsent = _world(cli)
    reads = Reads(app)
    loader = FactsLoader(reads)
    engine = database(cli)
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE messages RENAME TO messages_away"))

    async def run():
        return await asyncio.gather(*(loader.load(i) for i in sent), return_exceptions=True)

    try:
        failed = asyncio.run(run())
    finally:
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE messages_away RENAME TO messages"))
        engine.dispose()
    assert len(failed) == 3 and all(isinstance(error, Exception) for error in failed)
    assert len(reads.calls) == 1
    assert asyncio.run(loader.load(sent[0])) is not None  # nothing was cached from the failed read
    app.db.dispose()
    assert "never retrieved" not in caplog.text


def test_a_request_that_goes_away_does_not_cancel_the_read_the_others_wait_for(cli):
    from cadence.tracking_http import FactsLoader

    app, sent, _unsent = _world(cli)
    loader = FactsLoader(Reads(app))

    async def run():
        leaving = asyncio.ensure_future(loader.load(sent[0]))
        staying = asyncio.ensure_future(loader.load(sent[0]))
        await asyncio.sleep(0)
        leaving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leaving
        return await staying

    facts = asyncio.run(run())
    app.db.dispose()
    assert facts is not None and loader.known(sent[0]) == facts
