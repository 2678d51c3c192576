"""`/slack/events` on `cadence serve`: bolt's Starlette adapter, with a few checks in front.

Nothing from the request is parsed before its v0 signature holds (Slack's "Verifying requests from
Slack" page): a timestamp that is not 1 to 12 digits or a signature that is not `v0=` and 64 hex
digits answers 401 at once (a 400-digit timestamp would overflow the window check); then the body
(at most 1 MB, enforced while it streams by `cadence.guard`) is checked against the signature and
the 5-minute window; only a verified body is decoded and handed to bolt (which verifies again).

A request whose acknowledgement is an empty 200 whatever follows (`bot.app.acked_before_dispatch`:
/cadence, task buttons, App Home opened) is answered at once from the event loop; bolt dispatches
it afterwards on a thread of its own (its ack is then a no-op, its lazy listeners do the work), once
Slack requests pause (`AcksFirst`), so that the work does not hold the GIL while the next
acknowledgements are due. Anything else (view submissions, URL verification, unknown kinds) is
dispatched first, on the thread pool (`App.dispatch` is synchronous), and answered with bolt's
response.
"""
from __future__ import annotations

import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import slack_bolt
from slack_bolt import BoltRequest, BoltResponse
from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
from slack_sdk.signature import SignatureVerifier
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cadence.app import App

log = logging.getLogger("cadence.slack.http")

MAX_BODY = 1_000_000
PATH = "/slack/events"


SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
TIMESTAMP = re.compile(r"[0-9]{1,12}")


class AcksFirst:
    """Holds the work after an acknowledgement back while Slack requests keep coming in.

    The work (bolt's dispatch and its lazy listeners) competes with the acknowledgements still to
    send for the event loop's GIL; Slack wants each ack within 3 s, while an answer on a response
    URL may take minutes. So a dispatch waits until no Slack request has come in, nor been
    acknowledged, for `quiet` seconds, but never past `longest` seconds after its own ack (steady
    traffic delays each piece of work by at most that, and never stops it).
    """

    def __init__(self, quiet: float = 0.05, longest: float = 0.5, monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.quiet, self.longest, self._now, self._sleep = quiet, longest, monotonic, sleep
        self.last = float("-inf")  # written on the event loop, read by the dispatch thread
        self.stopping = False

    def touch(self) -> float:
        """A Slack request came in or was acknowledged (event loop); returns the time."""
        self.last = now = self._now()
        return now

    def wait_turn(self, acked_at: float) -> None:
        """Wait (dispatch thread) until `quiet` seconds without requests, or `longest` after `acked_at`."""
        while not self.stopping:
            now = self._now()
            until = min(self.last + self.quiet, acked_at + self.longest)
            if now >= until:
                return
            self._sleep(until - now)


FAILED = "Something went wrong on Cadence's side; the error is logged."


def _tell(bolt_request: BoltRequest, text: str) -> None:
    """Post `text` (ephemeral) to the request's response URL, when it has one (commands, message
    buttons); a failure to do so is logged."""
    body = bolt_request.body if isinstance(bolt_request.body, dict) else {}
    url = body.get("response_url")
    if not isinstance(url, str) or not url:
        return
    from slack_sdk.webhook import WebhookClient

    try:
        WebhookClient(url, timeout=10).send(text=text, response_type="ephemeral", replace_original=False)
    except Exception:  # noqa: BLE001 - nothing more can reach the person
        log.exception("telling the person on the response URL failed")


def slack_endpoint(bolt: slack_bolt.App, signing_secret: str, turns: AcksFirst | None = None):
    """The endpoint; its `drain()` waits for the dispatches and the lazy work already acknowledged."""
    from bot.app import acked_before_dispatch, drain

    verifier = SignatureVerifier(signing_secret)
    turns = turns or AcksFirst()
    # One thread: a dispatch after the ack is short (middleware, ack no-op, lazy work handed on).
    after_ack = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cadence-slack-dispatch")

    def dispatch_acknowledged(bolt_request: BoltRequest, acked_at: float) -> None:
        turns.wait_turn(acked_at)
        try:
            answer = bolt.dispatch(bolt_request)
        except Exception:  # noqa: BLE001 - acknowledged already: the log and the response URL are left
            log.exception("Slack request acknowledged, then failed in dispatch")
            _tell(bolt_request, FAILED)
            return
        if answer.status != 200 or answer.body:
            log.warning("Slack request acknowledged before bolt answered it %s: %s", answer.status,
                        str(answer.body)[:200])
            # What Slack would have shown had this been the answer (bolt's sentence, e.g. "reinstall
            # this app" when auth.test fails) goes to the person by the request's response URL.
            _tell(bolt_request, str(answer.body) if answer.status == 200 else FAILED)

    async def endpoint(request: Request) -> Response:
        turns.touch()
        timestamp = request.headers.get("x-slack-request-timestamp", "")
        signature = request.headers.get("x-slack-signature", "")
        if not TIMESTAMP.fullmatch(timestamp) or not SIGNATURE.fullmatch(signature):
            return JSONResponse({"error": "invalid request"}, status_code=401)
        body = await request.body()
        if len(body) > MAX_BODY:
            return JSONResponse({"error": "request too large"}, status_code=413)
        if not verifier.is_valid(body, timestamp, signature):
            return JSONResponse({"error": "invalid request"}, status_code=401)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            return JSONResponse({"error": "invalid request"}, status_code=400)
        bolt_request = to_bolt_request(request, body)
        if acked_before_dispatch(bolt_request.body):
            try:  # queued before the ack goes out, so a drain after the ack includes it
                after_ack.submit(dispatch_acknowledged, bolt_request, turns.touch())
            except RuntimeError:  # drained: the server is stopping
                return JSONResponse({"error": "the server is stopping"}, status_code=503)
            return to_starlette_response(BoltResponse(status=200, body=""))  # what ack() answers
        bolt_response = await run_in_threadpool(bolt.dispatch, bolt_request)
        return to_starlette_response(bolt_response)

    def drain_all() -> None:
        turns.stopping = True  # what was acknowledged is done now, without waiting for quiet
        after_ack.shutdown(wait=True)
        drain(bolt)

    endpoint.drain = drain_all  # type: ignore[attr-defined]  # see slack_drain
    return endpoint


def slack_routes_for(app: App) -> list[Route]:
    """The Slack route for `cadence serve`; [] when SLACK_SIGNING_SECRET or SLACK_BOT_TOKEN is unset."""
    settings = app.settings
    if not settings.slack_signing_secret or not settings.slack_bot_token:
        log.info("Slack is not configured (SLACK_SIGNING_SECRET, SLACK_BOT_TOKEN): no %s", PATH)
        return []
    from bot.app import build_bolt_app

    bolt = build_bolt_app(app)
    endpoint = slack_endpoint(bolt, settings.slack_signing_secret)
    return [Route(PATH, endpoint, methods=["POST"])]


def slack_drain(routes: list[Route]) -> None:
    """For the server's shutdown: wait until the Slack work already acknowledged is done."""
    for route in routes:
        finish = getattr(route.endpoint, "drain", None)
        if finish is not None:
            finish()
