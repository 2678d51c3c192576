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


class GatedReads(Reads):
    """`Reads` whose reads wait for `gate` (a read under way, as on a slow database)."""

    def __init__(self, app):
        import threading

        super().__init__(app)
        self.gate = threading.Event()

    def __call__(self, ids: list[int]):
        self.calls.append(sorted(ids))
        self.gate.wait(300)
        from cadence.services.engagement import sent_messages_facts

        return sent_messages_facts(self.app, ids)


async def _read_started(reads, count: int) -> None:
    while len(reads.calls) < count:
        await asyncio.sleep(0.001)


def test_one_read_at_a_time_and_the_misses_meanwhile_make_the_next(cli):
    from cadence.tracking_http import FactsLoader

    app, sent, unsent = _world(cli)
    reads = GatedReads(app)
    loader = FactsLoader(reads)

    async def run():
        first = asyncio.ensure_future(loader.load(sent[0]))
        await _read_started(reads, 1)
        later = []
        for message_id in (sent[1], sent[0], unsent, sent[2]):  # each in a turn of its own
            later.append(asyncio.ensure_future(loader.load(message_id)))
            for _ in range(5):
                await asyncio.sleep(0)
        calls_while_reading = list(reads.calls)
        reads.gate.set()
        return calls_while_reading, await first, await asyncio.gather(*later)

    calls_while_reading, first, later = asyncio.run(asyncio.wait_for(run(), 300))
    app.db.dispose()
    assert calls_while_reading == [[sent[0]]]  # no second read (a second thread) while one is under way
    assert reads.calls == [[sent[0]], sorted([sent[1], unsent, sent[2]])]  # sent[0] joined the first read
    assert first is not None and later == [loader.known(sent[1]), first, None, loader.known(sent[2])]


@pytest.mark.parametrize("closes", ["before the read starts", "while the read is under way"])
def test_a_loader_whose_loop_closed_mid_read_still_answers_on_the_next_loop(cli, closes):
    from cadence.tracking_http import FactsLoader

    app, sent, _unsent = _world(cli)
    reads = GatedReads(app)
    loader = FactsLoader(reads)

    async def abandoned():
        asyncio.ensure_future(loader.load(sent[0]))
        if closes == "while the read is under way":
            await _read_started(reads, 1)
        # returning closes the loop: asyncio.run cancels what is left

    asyncio.run(abandoned())
    reads.gate.set()
    # a fresh loop (a test's next client, a restarted server's): same ids and new ones are read
    async def next_loop():
        return await asyncio.wait_for(asyncio.gather(loader.load(sent[0]), loader.load(sent[1])), 300)

    found = asyncio.run(next_loop())
    app.db.dispose()
    assert all(facts is not None for facts in found)
