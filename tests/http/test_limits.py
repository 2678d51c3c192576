"""Oversized, endless and slow requests against every route of `cadence serve`, over real sockets.

Issue #12 item 1: a 1 GB POST was read whole before any check. Now a body over its route's limit
is refused from `Content-Length` or as soon as it streams past the limit, the connection closes,
and eight such uploads at once leave the server's memory within 64 MB of where it was.
"""
from __future__ import annotations

import re
import threading
import time

import pytest
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from cadence.guard import BODY_LIMITS, DEFAULT_BODY_LIMIT, GuardedH11Protocol, body_limit
from tests.http.rawhttp import chunked, plain, request
from tests.support.http import serving

GB = 1024 ** 3

# (path, method) for every kind of route; the limit is looked up the way the server does.
ROUTES = [
    ("/slack/events", "POST"),
    ("/oauth/outlook/callback", "POST"),
    ("/oauth/gmail/callback", "POST"),
    ("/u/sometoken", "POST"),
    ("/t/o/sometoken", "POST"),
    ("/t/c/sometoken", "GET"),
    ("/healthz", "POST"),
    ("/", "POST"),  # the web app (and any path nobody serves) falls under the default limit
    ("/campaigns/1/upload", "POST"),
    ("/no/such/route", "PUT"),
]


def _head(method: str, path: str, *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers]
    return "\r\n".join(lines).encode()


def test_the_limit_table_covers_each_route_kind():
    assert body_limit("/slack/events") == BODY_LIMITS["/slack/"] == 1_000_000
    assert body_limit("/oauth/outlook/callback") == 64 * 1024
    assert body_limit("/u/x") == 4096 and body_limit("/t/c/x") == 1024
    assert body_limit("/campaigns/3/upload") == DEFAULT_BODY_LIMIT
    assert body_limit("/slack") == DEFAULT_BODY_LIMIT  # a prefix, not a substring match


@pytest.mark.parametrize("path,method", ROUTES)
@pytest.mark.parametrize("shape", ["declared 1 GB", "declared limit+1", "chunked past the limit",
                                   "Expect: 100-continue, declared 1 GB"])
def test_an_oversized_body_is_refused_before_it_is_read(full_app, path, method, shape):
    app, http_app = full_app
    limit = body_limit(path)
    with serving(app, http_app) as base:
        if shape == "declared 1 GB":
            answer = request(base, _head(method, path, f"Content-Length: {GB}"), plain(GB))
        elif shape == "declared limit+1":
            answer = request(base, _head(method, path, f"Content-Length: {limit + 1}"), plain(limit + 1))
        elif shape == "chunked past the limit":
            answer = request(base, _head(method, path, "Transfer-Encoding: chunked"), chunked(GB))
        else:
            answer = request(base, _head(method, path, f"Content-Length: {GB}", "Expect: 100-continue"))
    # Streamed past the limit, some routes answer before reading (401/404/405 …): either way the
    # server stops reading and closes, long before the gigabyte.
    assert answer.sent < limit + 8 * 1024 * 1024, (shape, answer)
    if shape.startswith("declared") or shape.startswith("Expect"):
        assert answer.status == 413, answer
        assert answer.sent < 8 * 1024 * 1024
    else:
        assert answer.status is None or answer.status in (401, 404, 405, 413), answer
    if answer.status is not None:
        assert answer.closed and answer.headers.get("connection") == "close", answer
        assert b"Traceback" not in answer.body


@pytest.mark.parametrize("path", ["/slack/events", "/oauth/outlook/callback", "/u/sometoken/echo", "/campaigns/1/x"])
def test_a_body_streaming_past_the_limit_of_a_route_that_reads_it_gets_413(server_env, path):
    """Routes that read their body: the limit is hit while streaming (chunked, no length)."""
    from cadence.app import App
    from cadence.http import create_http_app

    async def reads_everything(request):
        body = await request.body()
        return PlainTextResponse(f"read {len(body)}")

    app = App.from_settings()
    http_app = create_http_app(app, extra_routes=[Route(path, reads_everything, methods=["POST"])])
    limit = body_limit(path)
    with serving(app, http_app) as base:
        over = request(base, _head("POST", path, "Transfer-Encoding: chunked"), chunked(GB))
        within = request(base, _head("POST", path, "Transfer-Encoding: chunked"), chunked(limit))
    assert over.status in (413, None) and over.sent < limit + 8 * 1024 * 1024, over
    if over.status == 413:
        assert over.closed and b"too large" in over.body
    assert within.status == 200 and within.body == f"read {limit}".encode(), within


def test_a_stalled_body_gets_408_and_the_connection_closes(server_env):
    from cadence.app import App
    from cadence.http import create_http_app

    async def reads_everything(request):
        return PlainTextResponse(f"read {len(await request.body())}")

    app = App.from_settings()
    http_app = create_http_app(app, extra_routes=[Route("/echo", reads_everything, methods=["POST"])])
    http_app.guard_options = {"body_timeout": 0.5}
    with serving(app, http_app) as base:
        started = time.monotonic()
        answer = request(base, _head("POST", "/echo", "Content-Length: 100"), [b"x" * 10], timeout=10)
        waited = time.monotonic() - started
        complete = request(base, _head("POST", "/echo", "Content-Length: 3"), [b"abc"])
    assert answer.status == 408 and answer.closed and 0.4 < waited < 5, (answer, waited)
    assert complete.status == 200 and complete.body == b"read 3"


class _QuickHeads(GuardedH11Protocol):
    header_timeout = 0.5


@pytest.mark.parametrize("shape", ["connect and say nothing", "trickle a request line",
                                   "idle after one request"])
def test_slow_or_silent_clients_are_disconnected(full_app, shape):
    import socket

    app, http_app = full_app
    with serving(app, http_app, http=_QuickHeads, timeout_keep_alive=1) as base:
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            started = time.monotonic()
            if shape == "trickle a request line":
                for piece in (b"GET /hea", b"lthz HTTP/1.1\r\n", b"Host: x\r\n"):
                    sock.sendall(piece)
                    time.sleep(0.2)
            elif shape == "idle after one request":
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            data = b"x"
            while data:
                data = sock.recv(65536)  # b"" once the server closes
            waited = time.monotonic() - started
    assert waited < 5, (shape, waited)


def test_head_lines_over_16_kb_are_refused(full_app):
    app, http_app = full_app
    with serving(app, http_app) as base:
        answer = request(base, _head("GET", "/healthz", "X-Big: " + "a" * 20_000))
        fine = request(base, _head("GET", "/healthz", "X-Big: " + "a" * 8_000))
    assert answer.status in (400, 431, None) and b"Traceback" not in answer.body
    assert fine.status == 200


def test_an_unhandled_error_is_a_plain_500_and_logged_with_its_traceback(server_env, caplog):
    from cadence.app import App
    from cadence.http import create_http_app

    async def broken(request):
        raise RuntimeError("secret internals at /srv/cadence/thing.py")

    def broken_sync(request):
        {}["missing"]

    app = App.from_settings()
    http_app = create_http_app(app, extra_routes=[Route("/broken", broken), Route("/broken-sync", broken_sync)])
    with caplog.at_level("ERROR", logger="cadence.http"), serving(app, http_app) as base:
        answers = [request(base, _head("GET", path)) for path in ("/broken", "/broken-sync")]
    for answer in answers:
        assert answer.status == 500 and answer.body == b"Internal Server Error", answer
        assert answer.headers["content-type"].startswith("text/plain")
    logged = "\n".join(r.getMessage() + "\n" + (r.exc_text or "") for r in caplog.records)
    assert "unhandled error answering GET /broken" in logged
    assert any(r.exc_info and r.exc_info[0] is RuntimeError for r in caplog.records)
    assert any(r.exc_info and r.exc_info[0] is KeyError for r in caplog.records)


def test_eight_oversized_uploads_at_once_keep_the_server_within_64_mb(serve_process):
    """`cadence serve` in a subprocess; its peak resident memory (VmHWM) is read from /proc."""
    server = serve_process
    for path in ("/healthz", "/u/x", "/t/o/x", "/oauth/gmail/callback"):  # warm every route up
        request(server.base, _head("GET", path))
    request(server.base, _head("POST", "/slack/events", "Content-Length: 2"), [b"{}"])
    time.sleep(0.5)
    baseline = server.rss_kb()
    peak_resettable = server.reset_peak()
    samples = [baseline]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(server.rss_kb())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    shapes = [
        ("/slack/events", "Content-Length: %d" % GB, plain(GB)),
        ("/slack/events", "Transfer-Encoding: chunked", chunked(GB)),
        ("/oauth/outlook/callback", "Content-Length: %d" % (500 * 1024 ** 2), plain(500 * 1024 ** 2)),
        ("/oauth/outlook/callback", "Transfer-Encoding: chunked", chunked(GB)),
        ("/u/x", "Transfer-Encoding: chunked", chunked(GB)),
        ("/t/c/x", "Content-Length: %d" % GB, plain(GB)),
        ("/", "Transfer-Encoding: chunked", chunked(GB)),
        ("/campaigns/1/upload", "Content-Length: %d" % GB, plain(GB)),
    ]
    answers: list = [None] * len(shapes)

    def upload(index: int) -> None:
        path, header, body = shapes[index]
        answers[index] = request(server.base, _head("POST", path, header), body, timeout=60)

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(len(shapes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    time.sleep(0.2)
    stop.set()
    sampler.join()
    peak = max(samples + ([server.rss_kb("VmHWM")] if peak_resettable else []))
    growth_mb = (peak - baseline) / 1024
    assert all(a is not None and a.sent < 16 * 1024 ** 2 for a in answers), answers
    assert all(a.status in (None, 401, 404, 405, 413) for a in answers), answers
    assert growth_mb < 64, f"server memory grew by {growth_mb:.1f} MB"
    assert server.process.poll() is None
    health = request(server.base, _head("GET", "/healthz"))
    assert health.status == 200
    assert not re.search(r"Traceback|Exception in ASGI", server.output())
