"""A raw HTTP/1.1 client over a socket, for requests an ordinary client refuses to send
(oversized or endless bodies, trickled headers, junk header values)."""
from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field


@dataclass
class Answer:
    status: int | None  # None: the server closed without answering
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    sent: int = 0  # body bytes the server let us send
    closed: bool = False  # the server closed the connection after answering
    error: str = ""


def _read_answer(sock: socket.socket, deadline: float) -> tuple[int | None, dict[str, str], bytes, bool]:
    data = b""
    while b"\r\n\r\n" not in data:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            return None, {}, data, True
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    closed = False
    while len(rest) < length and time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            closed = True
            break
        rest += chunk
    if not closed and headers.get("connection", "").lower() == "close":
        try:
            sock.settimeout(max(0.01, min(2.0, deadline - time.monotonic())))
            closed = sock.recv(1) == b""
        except OSError:
            closed = True
    return status, headers, rest, closed


def request(base: str, head: bytes, body_chunks=(), *, timeout: float = 30.0, chunk_pause: float = 0.0) -> Answer:
    """Send `head` (request line and headers, without the final blank line) then the body chunks
    until the server answers or closes; return what it answered."""
    host, port = base.removeprefix("http://").split(":")
    deadline = time.monotonic() + timeout
    sent = 0
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * 1024)
        try:
            sock.sendall(head + b"\r\n\r\n")
            for chunk in body_chunks:
                if time.monotonic() > deadline:
                    break
                sock.setblocking(False)
                try:
                    early = sock.recv(65536, socket.MSG_PEEK)
                except BlockingIOError:
                    early = None
                finally:
                    sock.setblocking(True)
                if early is not None:
                    break  # the server answered (or closed) before the body was all sent
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                sock.sendall(chunk)
                sent += len(chunk)
                if chunk_pause:
                    time.sleep(chunk_pause)
        except OSError as exc:  # reset or broken pipe: the server stopped reading
            error = f"{type(exc).__name__}"
        else:
            error = ""
        try:
            status, headers, body, closed = _read_answer(sock, deadline)
        except OSError as exc:
            return Answer(None, sent=sent, closed=True, error=error or type(exc).__name__)
        return Answer(status, headers, body, sent, closed, error)


def chunked(total: int, piece: int = 64 * 1024):
    """A chunked body of `total` bytes (Transfer-Encoding: chunked framing), lazily."""
    block = b"x" * piece
    left = total
    while left > 0:
        size = min(piece, left)
        yield b"%x\r\n" % size + block[:size] + b"\r\n"
        left -= size
    yield b"0\r\n\r\n"


def plain(total: int, piece: int = 64 * 1024):
    block = b"x" * piece
    left = total
    while left > 0:
        size = min(piece, left)
        yield block[:size]
        left -= size
