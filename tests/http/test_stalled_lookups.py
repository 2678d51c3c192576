"""Tracking lookups of the real `cadence serve` (PostgreSQL through a TCP proxy) while the
database stalls: however many uncached tokens come in, their reads hold one thread of Starlette's
pool, not one each. The pool (40 threads) also serves static files and the health probe: filled
with stalled reads, a static file waited until database connects timed out."""
from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest


LOOKUPS = 60  # more than Starlette's 40 threads


def _ask(port: int, path: str) -> socket.socket:
    """A GET of `path` sent on a connection of its own, its answer not read yet."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=300)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    return sock


def _answer(sock: socket.socket) -> bytes:
    chunks = []
    with sock:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
@pytest.mark.parametrize("kind", ["o", "c"])
def test_many_uncached_lookups_on_a_stalled_database_leave_the_threadpool_to_static_files(proxied, kind):
    from core.tracking import sign_token

    server, proxy, app = proxied
    key = app.settings.secret_keys[0]
    tokens = [sign_token(key, kind, 900_000 + i, 0 if kind == "c" else None) for i in range(LOOKUPS)]
    with httpx.Client(base_url=server.base, timeout=300) as client, ThreadPoolExecutor(LOOKUPS) as pool:
        proxy.stall()
        waiting = []
        for token in tokens:  # one at a time, each read by the server before the next is sent
            waiting.append(pool.submit(_answer, _ask(server.port, f"/t/{kind}/{token}")))
            assert client.get("/t/o/not-a-token").status_code == 404
        static = client.get("/static/cadence.css")
        answered_meanwhile = [w.result()[:12] for w in waiting if w.done()]
        proxy.resume()
        answers = [w.result() for w in waiting]
    assert static.status_code == 200
    # nothing freed a thread for the static file: the lookups were all still waiting on the database
    assert answered_meanwhile == []
    assert all(answer.startswith(b"HTTP/1.1 404") for answer in answers), {a[:12] for a in answers}


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_lookup_during_an_outage_answers_a_bare_500_and_the_next_one_after_it_reads_again(proxied):
    from core.tracking import sign_token

    server, proxy, app = proxied
    key = app.settings.secret_keys[0]
    paths = [f"/t/o/{sign_token(key, 'o', 800_000 + i)}" for i in range(3)] + \
        [f"/t/c/{sign_token(key, 'c', 800_100 + i, 0)}" for i in range(3)]
    with httpx.Client(base_url=server.base, timeout=120) as client, ThreadPoolExecutor(len(paths)) as pool:
        proxy.outage(float("inf"))
        during = list(pool.map(client.get, paths))
        proxy.back()
        after = list(pool.map(client.get, paths))
    for answer in during:
        assert answer.status_code == 500
        assert "location" not in answer.headers
        for word in ("psycopg", "OperationalError", "Traceback", "connection", "5432", str(proxy.port)):
            assert word not in answer.text, answer.text
    assert [a.status_code for a in after] == [404] * len(paths)  # unknown messages, read again
