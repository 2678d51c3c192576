"""`/slack/events` on `cadence serve`: bolt's Starlette adapter, with a few checks in front.

Nothing from the request is parsed before its v0 signature holds (Slack's "Verifying requests from
Slack" page): a timestamp that is not 1 to 12 digits or a signature that is not `v0=` and 64 hex
digits answers 401 at once (a 400-digit timestamp would overflow the window check); then the body
(at most 1 MB, enforced while it streams by `cadence.guard`) is checked against the signature and
the 5-minute window; only a verified body is decoded and handed to bolt (which verifies again).
`App.dispatch` is synchronous, so it runs in the thread pool rather than on the event loop.
"""
from __future__ import annotations

import logging
import re

import slack_bolt
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


def slack_endpoint(bolt: slack_bolt.App, signing_secret: str):
    verifier = SignatureVerifier(signing_secret)

    async def endpoint(request: Request) -> Response:
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
        bolt_response = await run_in_threadpool(bolt.dispatch, to_bolt_request(request, body))
        return to_starlette_response(bolt_response)

    return endpoint


def slack_routes_for(app: App) -> list[Route]:
    """The Slack route for `cadence serve`; [] when SLACK_SIGNING_SECRET or SLACK_BOT_TOKEN is unset."""
    settings = app.settings
    if not settings.slack_signing_secret or not settings.slack_bot_token:
        log.info("Slack is not configured (SLACK_SIGNING_SECRET, SLACK_BOT_TOKEN): no %s", PATH)
        return []
    from bot.app import build_bolt_app, drain

    bolt = build_bolt_app(app)
    endpoint = slack_endpoint(bolt, settings.slack_signing_secret)
    endpoint.drain = lambda: drain(bolt)  # type: ignore[attr-defined]  # see slack_drain
    return [Route(PATH, endpoint, methods=["POST"])]


def slack_drain(routes: list[Route]) -> None:
    """For the server's shutdown: wait until the Slack work already acknowledged is done."""
    for route in routes:
        finish = getattr(route.endpoint, "drain", None)
        if finish is not None:
            finish()
