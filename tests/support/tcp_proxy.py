"""A TCP forwarder on 127.0.0.1 that can cut every connection, as a database restart does, or
hold them, as a stalled server or network does.

Workers reach PostgreSQL through it; `outage(seconds)` closes every open connection at once and
turns new ones away (accepted, then closed unanswered) until the time is up or `back()`.
`stall()` keeps connections open and accepts new ones, but forwards nothing either way: what
arrives is held (`held` counts the chunks) until `resume()` sends it on, or `close()` drops it.
"""
from __future__ import annotations

import socket
import threading
import time


class TcpProxy:
    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._down_until = 0.0
        self._stopped = False
        self._flowing = threading.Event()
        self._flowing.set()
        self.cuts = 0
        self.held = 0  # chunks of data that arrived during the current stall and wait in it
        threading.Thread(target=self._accept, name="tcp-proxy", daemon=True).start()

    def outage(self, seconds: float) -> None:
        """Drop every connection now and refuse service for `seconds`."""
        with self._lock:
            self._down_until = time.monotonic() + seconds
            doomed, self._open = self._open, set()
            self.cuts += 1
        for sock in doomed:
            _close(sock)

    def back(self) -> None:
        """End an outage now: new connections are forwarded again."""
        with self._lock:
            self._down_until = 0.0

    def stall(self) -> None:
        """From now on, hold what arrives on every connection (open or new) instead of forwarding it."""
        with self._lock:
            self.held = 0
            self._flowing.clear()

    def resume(self) -> None:
        """End a stall: what was held is forwarded, in order, and data flows again."""
        self._flowing.set()

    def close(self) -> None:
        self._stopped = True
        self._flowing.set()  # held data is dropped: its pumps wake up to closed sockets
        with self._lock:
            doomed, self._open = self._open, set()
        for sock in doomed:
            _close(sock)
        _close(self._listener)

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if time.monotonic() < self._down_until:
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if not self._flowing.is_set():
                    with self._lock:
                        self.held += 1
                    self._flowing.wait()
                    if self._stopped:
                        break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(source)
                self._open.discard(sink)
            _close(source)
            _close(sink)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
