"""/healthz of the real `cadence serve` on PostgreSQL reached through a TCP proxy: it answers 503
without the database's words while the database is away (one warning each way in the log), and a
probe (or a tracking lookup) waiting on a database that never answers holds up no other request."""
from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor

import httpx
import pytest

from tests.support.tcp_proxy import TcpProxy

FAILING = "health probe: the database is unavailable"
BACK = "health probe: the database works again"


def _held(proxy: TcpProxy) -> None:
    """Wait until the server has sent the stalled database something (its query is under way)."""
    deadline = time.monotonic() + 60
    while proxy.held < 1:
        assert time.monotonic() < deadline, "the server sent the database nothing"
        time.sleep(0.02)


def _log_lines(server, text: str) -> list[str]:
    return [line for line in server.output().splitlines() if text in line]


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_healthz_answers_503_without_detail_while_the_database_is_away_and_200_once_it_is_back(proxied):
    server, proxy, _app = proxied
    with httpx.Client(base_url=server.base, timeout=60) as client:
        proxy.outage(float("inf"))  # every connection cut, new ones closed unanswered
        answers = [client.get("/healthz") for _ in range(3)]
        proxy.back()
        healthy = [client.get("/healthz") for _ in range(2)]
    for answer in answers:
        assert answer.status_code == 503
        assert answer.json() == {"ok": False, "database": "unavailable"}
        assert answer.text.replace(" ", "") == '{"ok":false,"database":"unavailable"}'  # not a word more
        assert answer.headers["cache-control"] == "no-store, private"
    for answer in healthy:
        assert answer.status_code == 200
        assert answer.json()["ok"] is True and answer.json()["time"]
    failing, back = _log_lines(server, FAILING), _log_lines(server, BACK)
    assert len(failing) == 1 and len(back) == 1, server.output()
    assert "WARNING" in failing[0] and "WARNING" in back[0]
    assert "OperationalError" in failing[0]  # the database's error is in the log, and only there
    assert "Traceback" not in server.output()


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_requests_that_need_no_database_are_answered_while_a_lookup_waits_on_a_stalled_one(proxied):
    from core.tracking import sign_token

    server, proxy, app = proxied
    key = app.settings.secret_keys[0]
    opened, clicked = sign_token(key, "o", 987_654), sign_token(key, "c", 987_654, 0)  # signed: read from the database
    with httpx.Client(base_url=server.base, timeout=120) as client, ThreadPoolExecutor(2) as pool:
        for pending_path, after in (("/healthz", 200), (f"/t/o/{opened}", 404), (f"/t/c/{clicked}", 404)):
            proxy.stall()
            pending: Future = pool.submit(client.get, pending_path)
            _held(proxy)  # the server's query reached the database, which holds it
            others = [client.get("/t/o/not-a-token"), client.get("/static/cadence.css")]
            assert not pending.done(), pending_path  # still waiting on the database, and nothing else did
            assert [o.status_code for o in others] == [404, 200], pending_path
            proxy.resume()
            assert pending.result().status_code == after, pending_path
    assert not _log_lines(server, FAILING)  # slow is not down: no probe failed
