"""Unauthenticated input never answers 5xx nor shows a traceback (issue #12 item 2).

A bounded fuzz run sends a few thousand random requests (paths, methods, headers, query strings and
bodies, shaped after what each route reads) to every route of `cadence serve`'s app, served by
uvicorn on a loopback socket with the server's own settings. Seeded: a failure names its seed and
request so it can be replayed (`CADENCE_FUZZ_SEED`, `CADENCE_FUZZ_REQUESTS`).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import random
import time
from urllib.parse import quote

import pytest
from starlette.routing import Mount, Route

from tests.http.rawhttp import request
from tests.support.http import serving

REQUESTS = int(os.environ.get("CADENCE_FUZZ_REQUESTS", "2500"))
SEED = int(os.environ.get("CADENCE_FUZZ_SEED", "20261130"))
TIME_BUDGET = 240.0  # seconds; the run stops early (and says so) on a very loaded machine

WEIRD_TEXT = ["", "0", "-1", "9" * 400, "1e309", "nan", "..", "../../etc/passwd", "%00", "\x00", "é", "😀",
              "a" * 3000, "<script>alert(1)</script>", "${jndi:x}", "{{7*7}}", "'", '"', "\\", "%", "%%", "%zz",
              "a.b", ".", "a.", ".a", "YWJj.ZGVm", "Z21haWx8cml0YXwxMjM.x", "null", "[]", "{}", "true", " ",
              "\r\nX-Injected: 1", "١٢٣", "\ud800".encode("utf-8", "surrogatepass").decode("latin-1")]
METHODS = ["GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "FOO"]
CONTENT_TYPES = ["application/x-www-form-urlencoded", "application/json", "multipart/form-data",
                 "multipart/form-data; boundary=", "multipart/form-data; boundary=zz", "text/plain",
                 "application/x-www-form-urlencoded; charset=utf-16", "image/gif", "", "*/*;;;"]
HEADER_NAMES = ["X-Slack-Request-Timestamp", "X-Slack-Signature", "X-Slack-Retry-Num", "Cookie", "Referer",
                "Origin", "Accept", "Accept-Encoding", "Accept-Language", "Authorization", "User-Agent",
                "X-Forwarded-For", "X-Forwarded-Proto", "Range", "If-None-Match", "Host", "Forwarded"]
QUERY_KEYS = ["t", "state", "code", "error", "error_description", "session_state", "client_info", "id_token",
              "next", "redirect", "csrf", "token", "page", "level", "cause", "scope", "x"]


def _text(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.45:
        return rng.choice(WEIRD_TEXT)
    if kind < 0.75:
        return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789-_.~|=+/") for _ in range(rng.randint(0, 80)))
    if kind < 0.9:
        return base64.urlsafe_b64encode(rng.randbytes(rng.randint(0, 120))).decode().rstrip("=")
    return "".join(chr(rng.randint(0x20, 0x2FFF)) for _ in range(rng.randint(1, 30)))


def _segment(rng: random.Random) -> str:
    return quote(_text(rng), safe="") or "x"


def _header_value(rng: random.Random, name: str) -> bytes:
    if name == "X-Slack-Request-Timestamp" and rng.random() < 0.5:
        value = rng.choice([str(int(time.time())), "9" * rng.randint(11, 400), "-" + "1" * rng.randint(1, 30),
                            str(int(time.time())) + ".0", "0"])
    elif name == "X-Slack-Signature" and rng.random() < 0.5:
        value = "v0=" + rng.randbytes(32).hex() + rng.choice(["", "0", "zz"])
    elif name == "Cookie":
        value = "; ".join(f"{_text(rng)[:20] or 'c'}={_text(rng)[:60]}" for _ in range(rng.randint(1, 4)))
    else:
        value = _text(rng)
    raw = value.encode("utf-8", "surrogatepass")
    return bytes(b for b in raw if b not in (0, 10, 13))  # framing stays valid: the app is under test


def _body(rng: random.Random, content_type: str) -> bytes:
    kind = rng.random()
    if kind < 0.2:
        return b""
    if kind < 0.4:
        return rng.randbytes(rng.randint(1, 4096))
    if kind < 0.6:
        fields = [(rng.choice(QUERY_KEYS + ["payload", "command", "text", "user_id"]), _text(rng))
                  for _ in range(rng.randint(1, 6))]
        return "&".join(f"{quote(k)}={quote(v, safe='') if rng.random() < 0.8 else v}" for k, v in fields).encode(
            "utf-8", "surrogatepass")
    if kind < 0.75:
        return rng.choice([b"{", b"[]", b"null", b'{"type":"url_verification","challenge":"x"}',
                           b'payload={"type":"block_actions"}', b'payload=%7B%22type%22%3A1%7D', b"\xff\xfe\x00"])
    if kind < 0.9:
        return (b"--zz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"../../x.yml\"\r\n\r\n"
                + rng.randbytes(rng.randint(0, 2000)) + rng.choice([b"\r\n--zz--\r\n", b"", b"--zz"]))
    return b"x" * rng.randint(60_000, 300_000)  # over some routes' limits, under others'


def _targets(http_app) -> list[tuple[str, list[str]]]:
    found = []
    for route in http_app.routes:
        if isinstance(route, Route):
            found.append((route.path, sorted(route.methods or ["GET"])))
        elif isinstance(route, Mount):
            found.append((route.path.rstrip("/") + "/{rest}", ["GET"]))
    return found


def _path(rng: random.Random, template: str) -> str:
    parts = []
    for piece in template.split("/"):
        if piece.startswith("{") and piece.endswith("}"):
            parts.append(_segment(rng) if rng.random() < 0.9 else str(rng.randint(-5, 10 ** rng.randint(1, 30))))
        else:
            parts.append(piece)
    path = "/".join(parts) or "/"
    if rng.random() < 0.1:
        path += "/" + _segment(rng)
    if rng.random() < 0.05:
        path = "/" + _segment(rng) + rng.choice(["", "/..", "/%2e%2e/", "//x"])
    return path


def _query(rng: random.Random) -> str:
    if rng.random() < 0.3:
        return ""
    pairs = [f"{quote(rng.choice(QUERY_KEYS))}={quote(_text(rng), safe='') if rng.random() < 0.85 else _segment(rng)}"
             for _ in range(rng.randint(1, 6))]
    if rng.random() < 0.1:
        pairs.append(rng.choice(["&&&", "=", "a=%", "t", "%FF%FE=%C0"]))
    return "?" + "&".join(pairs)


def test_thousands_of_random_requests_to_every_route_never_answer_5xx_or_a_traceback(full_app, caplog):
    app, http_app = full_app
    targets = _targets(http_app)
    paths = {t for t, _ in targets}
    assert {"/slack/events", "/oauth/gmail/start", "/oauth/gmail/callback", "/oauth/outlook/start",
            "/oauth/outlook/callback", "/t/o/{token}", "/t/c/{token}", "/u/{token}", "/healthz"} <= paths
    rng = random.Random(SEED)
    failures, statuses, sent = [], {}, 0
    started = time.monotonic()
    with caplog.at_level(logging.ERROR), serving(app, http_app) as base:
        for number in range(REQUESTS):
            if time.monotonic() - started > TIME_BUDGET:
                break
            template, methods = rng.choice(targets)
            method = rng.choice(methods) if rng.random() < 0.8 else rng.choice(METHODS)
            target = _path(rng, template) + _query(rng)
            content_type = rng.choice(CONTENT_TYPES)
            body = _body(rng, content_type) if method not in ("GET", "HEAD") or rng.random() < 0.1 else b""
            headers = [f"Host: {rng.choice(['127.0.0.1', 'evil.example', 'x' * 200])}".encode(),
                       b"Connection: close", f"Content-Type: {content_type}".encode(),
                       f"Content-Length: {len(body)}".encode()]
            for name in rng.sample(HEADER_NAMES, rng.randint(0, 6)):
                if name != "Host":
                    headers.append(name.encode() + b": " + _header_value(rng, name))
            head = f"{method} {target} HTTP/1.1".encode("utf-8", "surrogatepass") + b"\r\n" + b"\r\n".join(headers)
            answer = request(base, head, [body] if body else (), timeout=30)
            sent += 1
            statuses[answer.status] = statuses.get(answer.status, 0) + 1
            text = answer.body.decode("utf-8", "replace")
            if (answer.status is not None and answer.status >= 500) or "Traceback" in text or 'File "' in text:
                failures.append((number, method, target[:200], answer.status, text[:300]))
    server_errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert sent >= min(REQUESTS, 500), f"only {sent} requests in {TIME_BUDGET} s"
    assert not failures, f"seed {SEED}: {len(failures)} bad answers, first: {failures[:5]}"
    assert not server_errors, [r.getMessage() for r in server_errors][:5]
    assert None not in statuses or statuses[None] < sent // 20, statuses  # the server answered nearly all
    assert len([s for s in statuses if s is not None]) >= 4, statuses  # the routes were really reached


def _signed(app, payload: bytes) -> str:
    key = app.settings.secret_keys[0]
    signature = base64.urlsafe_b64encode(hmac.new(key, payload, hashlib.sha256).digest()[:18]).decode()
    return base64.urlsafe_b64encode(payload).decode().rstrip("=") + "." + signature


FAR = b"4102444800"  # 2100-01-01: unexpired (and the test ids stay the same in every worker)


@pytest.mark.parametrize("provider", ["gmail", "outlook"])
@pytest.mark.parametrize("payload", [
    b"gmail|rita@acme.example|abc", b"gmail|rita@acme.example|", b"gmail|rita@acme.example|" + b"9" * 400,
    b"gmail|rita@acme.example|-1", "gmail|rita@acme.example|١٢٣".encode(), b"gmail|rita@acme.example",
    b"gmail|a|b|" + FAR, b"\xff\xfe|rita|" + FAR, b"", b"|||", b"gmail|rita@acme.example|1e12",
    b"gmail|rita@acme.example| " + FAR,
])
def test_a_signed_connect_link_with_malformed_fields_is_refused_with_403(full_app, provider, payload):
    """Links signed with the server's key but whose fields are malformed (issue #12 item 2)."""
    app, http_app = full_app
    token = _signed(app, payload.replace(b"gmail", provider.encode(), 1))
    with serving(app, http_app) as base:
        answer = request(base, f"GET /oauth/{provider}/start?t={token} HTTP/1.1\r\nHost: x\r\nConnection: close".encode())
    assert answer.status == 403, answer
    assert b"Traceback" not in answer.body


@pytest.mark.parametrize("token", ["", ".", "x.", ".y", "%%%.x", "é.x", "a" * 5000 + ".b", "YWJj", "YWJj.",
                                   "!!!!.????", "Z21haWx8cml0YXwxMjM=.AAAA", "a.b.c.d"])
def test_junk_connect_links_are_refused_with_403(full_app, token):
    app, http_app = full_app
    with serving(app, http_app) as base:
        answer = request(base, f"GET /oauth/gmail/start?t={quote(token)} HTTP/1.1\r\nHost: x\r\nConnection: close"
                         .encode())
    assert answer.status == 403, answer
