"""A `cadence serve` world for the HTTP hardening tests: every route mounted (Slack, OAuth,
tracking, unsubscribe, health, and whatever else the server carries), on SQLite."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"

SERVER_ENV = {
    "SLACK_SIGNING_SECRET": SLACK_SECRET,
    "SLACK_BOT_TOKEN": "xoxb-test-token",
    "CADENCE_SLACK_API_URL": "http://127.0.0.1:9/api/",  # never reached: nothing here is signed
    "CADENCE_PUBLIC_URL": "http://127.0.0.1:8080",
    # Configured, so its start route answers links (403 for forged ones), not "not configured" (503).
    "CADENCE_SALESFORCE_CLIENT_ID": "fuzz-client",
    "CADENCE_SALESFORCE_CLIENT_SECRET": "fuzz-secret",
}


@pytest.fixture
def server_env(tmp_path, monkeypatch) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    env = {"CADENCE_HOME": str(home), "CADENCE_DATABASE_URL": f"sqlite:///{home / 'cadence.db'}", **SERVER_ENV}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("CADENCE_MS_CLIENT_ID", "CADENCE_GOOGLE_CLIENT_ID", "SLACK_APP_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return env


@pytest.fixture
def full_app(server_env):
    """(App, the Starlette app of `cadence serve` with every route, without the scheduler)."""
    from cadence.app import App
    from cadence.http import build_routes, create_http_app

    app = App.from_settings()
    slack_routes, extra, starts, stops = build_routes(app)
    return app, create_http_app(app, slack_routes=slack_routes, extra_routes=extra, on_startup=starts,
                                on_shutdown=stops)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServeProcess:
    """`cadence serve --no-scheduler` in a subprocess on 127.0.0.1."""

    def __init__(self, env: dict[str, str], cwd: Path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = cwd / "serve.log"
        self._log_file = open(self.log, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cadence.cli", "serve", "--no-scheduler", "--host", "127.0.0.1",
             "--port", str(self.port)], env={**os.environ, **env}, cwd=cwd, stdout=self._log_file,
            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"cadence serve did not start: {self.log.read_text()}")
            time.sleep(0.1)

    def rss_kb(self, field: str = "VmRSS") -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise AssertionError(f"no {field} for the server")

    def reset_peak(self) -> bool:
        """Reset VmHWM (Linux ≥ 4.0: writing 5 to clear_refs); False when not allowed."""
        try:
            Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    def output(self) -> str:
        self._log_file.flush()
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()


@pytest.fixture
def serve_process(server_env, tmp_path):
    from cadence.app import App

    App.from_settings()  # the database and its schema exist before the server starts
    server = ServeProcess(server_env, tmp_path)
    yield server
    server.stop()


@pytest.fixture
def start_server(server_env, tmp_path):
    """start(**env) runs a `ServeProcess` with `server_env` and `env` over it; each is stopped after the test."""
    started: list[ServeProcess] = []

    def start(**env: str) -> ServeProcess:
        started.append(ServeProcess({**server_env, **env}, tmp_path))
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def serve_for(tmp_path):
    """serve_for(cli, **env) runs a `ServeProcess` on the CLI's home and database (its secret
    key, so the tracking URLs of what the CLI sent resolve); each is stopped after the test."""
    started: list[ServeProcess] = []

    def start(cli, **env: str) -> ServeProcess:
        base = {"CADENCE_HOME": str(cli.home), "CADENCE_DATABASE_URL": cli.database_url, **SERVER_ENV}
        started.append(ServeProcess({**base, **env}, tmp_path))
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def proxied(start_server, database_url, monkeypatch):
    """(the `cadence serve` process, whose database is PostgreSQL through a TCP proxy that can cut
    or stall it (`tests.support.tcp_proxy`); the proxy; an App on the direct URL)."""
    from sqlalchemy.engine import make_url

    from cadence.app import App
    from tests.support.tcp_proxy import TcpProxy

    monkeypatch.setenv("CADENCE_DATABASE_URL", database_url)
    app = App.from_settings()  # the schema exists before the server starts
    url = make_url(database_url)
    proxy = TcpProxy(url.host, url.port)
    through = url.set(port=proxy.port).render_as_string(hide_password=False)
    try:
        server = start_server(CADENCE_DATABASE_URL=through)
        yield server, proxy, app
        proxy.resume()
        server.stop()  # before the proxy goes: the server's last writes reach the database
    finally:
        proxy.close()
        app.db.dispose()
