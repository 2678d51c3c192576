"""The Slack Web API client and the few calls every part of the bot shares (DMs, user lookup)."""
from __future__ import annotations

import logging
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError
from cadence.app import App
from cadence.services.directory import remember_slack_id
from cadence.services.errors import UserError
from cadence.services.reads.people import rep_by_id
from cadence.settings import Settings

log = logging.getLogger("cadence.slack")

# Errors that say "try again later", as opposed to "this recipient cannot be reached".
TRANSIENT_ERRORS = frozenset({
    "ratelimited", "rate_limited", "service_unavailable", "internal_error", "fatal_error", "request_timeout",
    # a broken configuration is fixed by the operator; the work waits for it rather than being dropped
    "not_authed", "invalid_auth", "account_inactive", "token_revoked", "token_expired", "missing_scope",
})


def api_url(settings: Settings) -> str:
    """CADENCE_SLACK_API_URL with the trailing slash WebClient needs to join method names."""
    url = settings.slack_api_url.strip()
    return url if url.endswith("/") else url + "/"


def web_client(settings: Settings) -> WebClient:
    """The real WebClient with the bot token; UserError when SLACK_BOT_TOKEN is not set."""
    if not settings.slack_bot_token:
        raise UserError("SLACK_BOT_TOKEN is not set; Slack is not configured")
    return WebClient(token=settings.slack_bot_token, base_url=api_url(settings), timeout=10)


def is_transient(error: Exception) -> bool:
    """True when a failed Slack call should be tried again later rather than given up."""
    if isinstance(error, SlackApiError):
        status = getattr(error.response, "status_code", 200)
        code = (error.response.get("error") if error.response is not None else None) or ""
        return status == 429 or status >= 500 or code in TRANSIENT_ERRORS
    return isinstance(error, (SlackRequestError, URLError, OSError, TimeoutError))


def slack_error(error: Exception) -> str:
    if isinstance(error, SlackApiError) and error.response is not None:
        return str(error.response.get("error") or error)
    return str(error)


class Messenger:
    """Direct messages to reps: finds a rep's Slack user, opens the DM (im:write), posts into it.

    A rep without `slack_id` is looked up by email (users.lookupByEmail) and the id is stored on
    the rep, so the next message needs no lookup. Channel ids are cached for the Messenger's life.
    """

    def __init__(self, app: App, client: WebClient):
        self.app, self.client = app, client
        self._channels: dict[str, str] = {}

    def slack_id_of(self, rep_id: int) -> str | None:
        rep = rep_by_id(self.app, rep_id)
        if rep is None:
            return None
        if rep.slack_id:
            return rep.slack_id
        email = rep.email
        try:
            found = self.client.users_lookupByEmail(email=email)
        except SlackApiError as error:
            if slack_error(error) == "users_not_found":
                log.info("no Slack user has the email %s; %s gets no Slack messages", email, email)
                return None
            raise
        user_id = found["user"]["id"]
        remember_slack_id(self.app, rep_id, user_id)
        return user_id

    def dm_channel(self, slack_user_id: str) -> str:
        channel = self._channels.get(slack_user_id)
        if channel is None:
            opened = self.client.conversations_open(users=slack_user_id)
            channel = self._channels[slack_user_id] = opened["channel"]["id"]
        return channel

    def post(self, slack_user_id: str, message: dict) -> str:
        """Post `message` ({"text", "blocks"}) into the user's DM with the bot; returns the ts."""
        channel = self.dm_channel(slack_user_id)
        posted = self.client.chat_postMessage(channel=channel, text=message["text"],
                                              blocks=message.get("blocks"), unfurl_links=False)
        return posted["ts"]

    def upload_png(self, slack_user_id: str, data: bytes, *, filename: str, title: str, comment: str | None = None):
        """Upload a PNG into the user's DM with files_upload_v2 (files:write)."""
        return self.client.files_upload_v2(channel=self.dm_channel(slack_user_id), file=data, filename=filename,
                                           title=title, initial_comment=comment)
