"""Socket Mode: the same bolt app over Slack's WebSocket, no public URL needed (SLACK_APP_TOKEN).

The app-level token (`xapp-…`, scope connections:write) asks `apps.connections.open` on
CADENCE_SLACK_API_URL for a WebSocket URL; bolt's built-in handler keeps the connection open and
reconnects once connected. Envelopes carry no signature: the WebSocket itself is authenticated by
that token.

Two ways to run it: `run_socket_mode(app)` blocks (a `cadence slack` command), and
`socket_mode_hooks(app)` gives start/stop callables for a process that does other things
(`cadence serve`), where the first connection is retried in the background until it succeeds.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

from slack_bolt.adapter.socket_mode import SocketModeHandler

from bot.app import drain
from cadence.app import App
from cadence.services.errors import UserError

log = logging.getLogger("cadence.slack.socket")

FIRST_RETRY_SECONDS = 2.0
MAX_RETRY_SECONDS = 60.0


def build_socket_handler(app: App) -> SocketModeHandler:
    """A Socket Mode handler, not yet connected; UserError when a token is missing."""
    settings = app.settings
    if not settings.slack_app_token:
        raise UserError("SLACK_APP_TOKEN is not set; Socket Mode needs an app-level token (xapp-…)")
    if not settings.slack_bot_token:
        raise UserError("SLACK_BOT_TOKEN is not set; Slack is not configured")
    from bot.app import build_bolt_app

    bolt = build_bolt_app(app, socket_mode=True)
    return SocketModeHandler(bolt, app_token=settings.slack_app_token)


def run_socket_mode(app: App) -> None:
    """Connect to Slack over Socket Mode and serve until the process is stopped (blocks)."""
    handler = build_socket_handler(app)
    log.info("Slack Socket Mode: connecting")
    handler.start()


def socket_mode_hooks(app: App, *, first_retry: float = FIRST_RETRY_SECONDS,
                      max_retry: float = MAX_RETRY_SECONDS) -> tuple[Callable[[], None], Callable[[], None]] | None:
    """(start, stop) running Socket Mode beside other work; None when SLACK_APP_TOKEN is unset.

    `start` returns at once: a background thread connects, retrying with a doubling wait (from
    `first_retry` to `max_retry` seconds) while Slack cannot be reached. `stop` ends it all.
    """
    if not app.settings.slack_app_token:
        return None
    handler = build_socket_handler(app)
    stopping = threading.Event()

    def connect() -> None:
        wait = first_retry
        while not stopping.is_set():
            try:
                handler.connect()
                log.info("Slack Socket Mode: connected")
                return
            except Exception as error:  # unreachable, bad token …: logged, tried again
                log.error("Slack Socket Mode: could not connect (%s); next try in %.0f s", error, wait)
            if stopping.wait(wait):
                return
            wait = min(wait * 2, max_retry)

    thread = threading.Thread(target=connect, name="cadence-slack-socket", daemon=True)

    def start() -> None:
        thread.start()

    def stop() -> None:
        stopping.set()
        handler.client.auto_reconnect_enabled = False
        if thread.is_alive():
            thread.join(timeout=10)
        try:
            handler.close()
        except Exception as error:  # slack_sdk can race with a connection Slack is closing right now
            log.debug("Slack Socket Mode: closing: %s", error)
        drain(handler.app)

    return start, stop
