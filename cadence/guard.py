"""What `cadence serve` does before any route sees a request: bounded bodies, bounded waits, no tracebacks.

`RequestGuard` is an ASGI middleware placed in front of the whole Starlette app (outside its
error middleware), so it covers every route, the Slack events, OAuth callbacks, tracking,
unsubscribe and the web app alike:

- **Body size.** Each path prefix has a limit in bytes (`BODY_LIMITS`, the longest matching prefix
  wins, `DEFAULT_BODY_LIMIT` otherwise). A request whose `Content-Length` is over the limit, or is
  not a number, is answered 413 (400) before a byte of its body is read; a body that streams past
  the limit (chunked, or longer than announced) is answered 413 as soon as it does, and the app
  sees a disconnected client. A refusal closes the connection (`Connection: close`), so the rest
  of an upload is never read: memory stays bounded by the limit, whatever the client sends.
- **Head size.** Request line and headers over `MAX_HEAD_BYTES` answer 431 (RFC 6585 §5).
- **Slow bodies.** While a request body is still arriving, each read waits at most
  `body_timeout` seconds; a client that stalls gets 408 and is disconnected. (Once the body is
  complete, reads are passed through untouched: streaming responses wait on them for a disconnect.)
- **Errors.** An exception that escapes a route is logged here with its traceback and answered
  with a plain `500 Internal Server Error` (text, no traceback, no detail), whatever Starlette's
  debug setting; after a refusal the app's own late answers are dropped.
- **Timing.** Every answer but those to mail readers (tracking `/t/`, unsubscribe `/u/`: nothing
  beyond what they need, and the same bytes as the tracking fast path) carries
  `Server-Timing: app;dur=<ms>` (`timing()`): the time from the request reaching the app to its
  answer's head, which `bench.web` reports as server time.

`GuardedH11Protocol` is uvicorn's h11 protocol with a header timeout: a connection must deliver a
complete request head within `header_timeout` seconds of opening, or of the previous response
(uvicorn's own `timeout_keep_alive` only runs after a response, and nothing bounds a client that
trickles its headers). `server_config()` gathers the uvicorn settings `cadence serve` runs with.

Status codes: RFC 9110 §15.5.14 (413 Content Too Large), §15.5.9 (408 Request Timeout).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable

from starlette.applications import Starlette
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("cadence.http")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

KB = 1024
MB = 1024 * KB
# Longest matching prefix wins. Slack's payloads (slash commands, interactivity, events) are a few
# kB; Microsoft's form_post answer (code, state, id_token) a few kB; tracking and unsubscribe take
# at most RFC 8058's one-click form (`List-Unsubscribe=One-Click`).
BODY_LIMITS: dict[str, int] = {
    "/slack/": 1_000_000,
    "/oauth/": 64 * KB,
    "/t/": 1 * KB,
    "/u/": 4 * KB,
    "/healthz": 1 * KB,
    "/static/": 1 * KB,
}
# Everything else is the web app: forms and the campaign/contacts uploads (its own limit is 1 MB;
# this one leaves room for the multipart framing around it).
DEFAULT_BODY_LIMIT = 2 * MB
BODY_TIMEOUT = 30.0  # seconds between two pieces of a request body
UNTIMED = ("/t/", "/u/")  # path prefixes answered without a Server-Timing header (mail readers)
HEADER_TIMEOUT = 15.0  # seconds to deliver a whole request head
KEEP_ALIVE_TIMEOUT = 5  # seconds an idle keep-alive connection stays open (uvicorn's timeout_keep_alive)
MAX_HEAD_BYTES = 16 * KB  # request line and headers together (h11's max_incomplete_event_size)


def body_limit(path: str, limits: dict[str, int] | None = None, default: int = DEFAULT_BODY_LIMIT) -> int:
    """The body limit in bytes for a request path (longest matching prefix of `limits`)."""
    table = BODY_LIMITS if limits is None else limits
    best, size = default, -1
    for prefix, limit in table.items():
        if path.startswith(prefix) and len(prefix) > size:
            best, size = limit, len(prefix)
    return best


class _Refused(Exception):
    """Raised inside the guard's receive once it has answered for the app."""


async def _answer(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % len(body)),
                            (b"connection", b"close"), (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def timing(began: float) -> tuple[bytes, bytes]:
    """The Server-Timing header (W3C Server Timing) of an answer whose request reached the app at
    `began` (time.perf_counter()): `app;dur=<ms>`, the server's time up to the answer's head, as
    browsers' developer tools and bench.web read it."""
    return b"server-timing", b"app;dur=%.1f" % ((time.perf_counter() - began) * 1000)


class RequestGuard:
    """ASGI middleware: body limits, body read timeout, plain 500s (see the module docstring)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], *,
                 limits: dict[str, int] | None = None, default_limit: int = DEFAULT_BODY_LIMIT,
                 body_timeout: float = BODY_TIMEOUT):
        self.app = app
        self.limits = dict(BODY_LIMITS if limits is None else limits)
        self.default_limit = default_limit
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        head = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        head += sum(len(name) + len(value) + 4 for name, value in scope.get("headers", ()))
        if head > MAX_HEAD_BYTES:  # h11 bounds a head only while it is incomplete; bound a whole one too
            await _answer(send, 431, "request head too large")
            return
        limit = body_limit(scope.get("path", ""), self.limits, self.default_limit)
        declared = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                declared = value
                break
        if declared is not None:
            if not declared.isdigit() or len(declared) > 18:
                await _answer(send, 400, "Content-Length is not a number")
                return
            if int(declared) > limit:
                await _answer(send, 413, f"request body too large (limit {limit} bytes)")
                return

        began = None if scope.get("path", "").startswith(UNTIMED) else time.perf_counter()
        chunked = any(name == b"transfer-encoding" for name, _ in scope.get("headers", ()))
        expects_body = chunked or (declared is not None and declared != b"0")
        state = {"started": False, "complete": False, "answered": False, "received": 0,
                 "body_done": not expects_body}

        async def guarded_receive() -> Message:
            if state["answered"]:
                return {"type": "http.disconnect"}
            if state["body_done"]:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.body_timeout)
            except asyncio.TimeoutError:
                await refuse(408, "request body not received in time")
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > limit:
                    await refuse(413, f"request body too large (limit {limit} bytes)")
                    return {"type": "http.disconnect"}
                if not message.get("more_body", False):
                    state["body_done"] = True
            else:
                state["body_done"] = True
            return message

        async def refuse(status: int, text: str) -> None:
            state["answered"] = True
            if not state["started"]:
                state["started"] = True
                await _answer(send, status, text)

        async def guarded_send(message: Message) -> None:
            if state["answered"]:
                return  # we answered for the app already; its late answer goes nowhere
            if message["type"] == "http.response.start":
                state["started"] = True
                headers = [*message.get("headers", ())] + ([timing(began)] if began is not None else [])
                if not state["body_done"]:  # answered before reading the whole body: never read the rest
                    headers.append((b"connection", b"close"))
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                state["complete"] = True
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except Exception:
            if state["answered"]:
                return  # the app noticed the disconnect we gave it
            log.exception("unhandled error answering %s %s", scope.get("method"), scope.get("path"))
            if not state["started"]:
                state["answered"] = True
                await _answer(send, 500, "Internal Server Error")
            # Otherwise Starlette answered a plain 500 already (or the answer is half sent, and
            # uvicorn closes the connection): either way the traceback stays in this log.


class GuardedStarlette(Starlette):
    """Starlette with `RequestGuard` in front of everything, its error middleware included.

    `front`, when set before the first request, wraps the guarded app once more (the tracking fast
    path, `cadence.tracking_http.TrackingFast`, which answers only bodiless GETs whose head is
    within `MAX_HEAD_BYTES`, and passes everything else through the guard).
    """

    guard_options: dict[str, Any] = {}
    front: Callable[[Any], Any] | None = None

    def build_middleware_stack(self):  # type: ignore[override]
        guarded = RequestGuard(super().build_middleware_stack(), **self.guard_options)
        return guarded if self.front is None else self.front(guarded)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus: a request head must arrive within `HEADER_TIMEOUT` seconds."""

    header_timeout: float = HEADER_TIMEOUT

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_deadline: float | None = None
        super().connection_made(transport)
        self._arm_head_timer()

    # One timer per connection, moved lazily: arming and disarming on every request only set the
    # deadline; the timer, when it fires, re-arms itself for a later deadline or does nothing.
    def _arm_head_timer(self) -> None:
        self._head_deadline = self.loop.time() + self.header_timeout
        if getattr(self, "_head_timer", None) is None:
            self._head_timer = self.loop.call_at(self._head_deadline, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        deadline = self._head_deadline
        if deadline is None:
            return
        if deadline > self.loop.time():
            self._head_timer = self.loop.call_at(deadline, self._head_timed_out)
            return
        if not self.transport.is_closing():
            self.logger.info("closing a connection that sent no complete request in %.0f s", self.header_timeout)
            self.transport.close()

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and not self.cycle.response_complete:
            self._disarm_head_timer()  # a request is being answered: the body has its own timeout

    def on_response_complete(self) -> None:
        if not self.transport.is_closing():
            self._arm_head_timer()  # before super(): it may start the next pipelined request
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_deadline = None
        timer = getattr(self, "_head_timer", None)
        if timer is not None:
            timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)


def server_config(app: Any, **kwargs: Any) -> dict[str, Any]:
    """uvicorn.Config keyword arguments for `cadence serve` (header, idle and head-size limits)."""
    return {"app": app, "http": GuardedH11Protocol, "timeout_keep_alive": KEEP_ALIVE_TIMEOUT,
            "h11_max_incomplete_event_size": MAX_HEAD_BYTES, "access_log": False, **kwargs}
