"""`cadence serve`'s HTTP app on a real socket (uvicorn in a thread on 127.0.0.1, ephemeral port)."""
from __future__ import annotations

import re
import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import uvicorn

PIXEL = re.compile(r'<img src="https://cadence\.test(/t/o/[A-Za-z0-9_-]+)"')
CLICK = re.compile(r'href="https://cadence\.test(/t/c/[A-Za-z0-9_-]+)"')


@contextmanager
def serving(app, http_app=None, **config) -> Iterator[str]:
    """Serve `create_http_app(app)` (or `http_app`) with `cadence serve`'s uvicorn settings until
    the block ends (its shutdown writes the queued hits); yields the base URL."""
    from cadence.guard import server_config
    from cadence.http import create_http_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    http_app = http_app if http_app is not None else create_http_app(app)
    server = uvicorn.Server(uvicorn.Config(**server_config(http_app, log_level="warning", lifespan="on", **config)))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60  # a start on a loaded machine; returns as soon as it is up
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the HTTP server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def html_of(message) -> str:
    return message.get_body(("html",)).get_content()


def tracking_paths(message) -> tuple[str, list[str]]:
    """The open pixel's path and the click paths, in link order, of a sent email."""
    html = html_of(message)
    pixel = PIXEL.search(html)
    return (pixel.group(1) if pixel else ""), CLICK.findall(html)
