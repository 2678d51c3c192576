"""The bolt app: `/cadence`, task buttons, the edit modal and App Home, on top of the services.

Handlers are thin: acknowledge at once, find who is asking, call a service, render Block Kit
(`bot.views`). Bolt runs with `process_before_response=True` and lazy listeners: the ack function
answers Slack inside the request (no waiting on a worker thread), the work runs after it. Only the
edit modal's submission does its work before answering, because its answer carries the errors.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

import slack_bolt
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot import views
from bot.access import Directory, parse_id, refuse
from bot.commands import Command, parse_command
from bot.replay import ReplayGuard
from bot.slack import Messenger, slack_error, web_client
from cadence.app import App
from cadence.services.campaigns import pause_campaign, resume_campaign
from cadence.services.crm import crm_disconnected
from cadence.services.errors import UserError
from cadence.services.signin import LINK_MINUTES, create_link
from cadence.services.reads.people import (
    CampaignRef,
    Viewer,
    campaign_for_control,
    find_campaign,
    rep_by_id,
    visible_campaigns,
)
from cadence.services.reads.status import campaign_status_by_id
from cadence.services.reads.tasks import open_tasks, task_detail, task_owner_id
from cadence.services.tasks import edit_task, send_task, skip_task

log = logging.getLogger("cadence.slack")

STATUS_CAMPAIGNS = 10
HOME_CAMPAIGNS = 5
# Work after the ack runs on this many threads. Few on purpose: the acks of new requests compete
# with this work for the GIL, and Slack needs every ack within 3 s.
WORKERS = 4
HOME_KPI_SECONDS = 30.0


class Bot:
    """What the Slack handlers do, given who is asking. One per bolt app."""

    def __init__(self, app: App, client: WebClient):
        self.app, self.client = app, client
        self.directory = Directory(app, client)
        self.messenger = Messenger(app, client)
        # SQLite: the services read, then write, inside one deferred transaction; two such at once
        # fail with "database is locked". The bot's own changes are therefore made one at a time.
        self.writing = threading.Lock() if app.db.is_sqlite else nullcontext()
        self._home_kpis: dict[int, tuple[float, dict]] = {}
        self._home_lock = threading.Lock()

    # -- /cadence ------------------------------------------------------------------------------
    def answer(self, viewer: Viewer, command: Command) -> dict:
        """The ephemeral answer to a parsed command; UserError becomes a one-line warning."""
        try:
            if command.name == "status":
                return self.status(viewer, command.argument)
            if command.name == "tasks":
                return self.tasks(viewer)
            if command.name in ("pause", "resume"):
                return self.control(viewer, command.name, command.argument)
            if command.name == "digest":
                return self.digest(viewer)
            if command.name == "web":
                return self.web_link(viewer)
            return views.help_message(command.problem)
        except UserError as refused:
            return views.error_message(str(refused))

    def status(self, viewer: Viewer, name: str) -> dict:
        if name.strip():
            campaign = find_campaign(self.app, viewer, name)
            return views.with_notice(views.status_message(self._statuses([campaign])), crm_disconnected(self.app))
        campaigns = visible_campaigns(self.app, viewer)
        shown = campaigns[:STATUS_CAMPAIGNS]
        return views.with_notice(views.status_message(self._statuses(shown), len(campaigns) - len(shown)),
                                 crm_disconnected(self.app))

    def _statuses(self, campaigns: list[CampaignRef]) -> list[dict]:
        found = (campaign_status_by_id(self.app, c.id) for c in campaigns)
        return [status for status in found if status is not None]

    def tasks(self, viewer: Viewer, note: str | None = None) -> dict:
        page = open_tasks(self.app, viewer.rep_ids, limit=views.LIST_TASKS)
        return views.tasks_message(page.tasks, page.total, note)

    def control(self, viewer: Viewer, verb: str, name: str) -> dict:
        campaign_name = campaign_for_control(self.app, viewer, name, verb).name
        with self.writing:
            changed = (pause_campaign if verb == "pause" else resume_campaign)(self.app, campaign_name)
        log.info("%s %s campaign %r from Slack", viewer.email, "paused" if verb == "pause" else "resumed",
                 campaign_name)
        return views.note_message(f"\u201c{changed.name}\u201d is now {changed.state}.")

    def digest(self, viewer: Viewer) -> dict:
        from bot.digest import post_digest

        if not viewer.gets_digest:
            return views.note_message("Digests are for managers: you have no reps reporting to you.")
        post_digest(self.app, self.messenger, viewer.rep_id, viewer.slack_id)
        return views.note_message("Your digest is in your direct messages with me.")

    def web_link(self, viewer: Viewer) -> dict:
        url = create_link(self.app, viewer.email)
        self.messenger.post(viewer.slack_id, views.web_link_message(url, LINK_MINUTES))
        log.info("%s asked for a web sign-in link from Slack", viewer.email)
        return views.note_message("I sent you a sign-in link to the web app in a direct message. It works once, "
                                  f"for {LINK_MINUTES} minutes.")

    # -- App Home ------------------------------------------------------------------------------
    def publish_home(self, slack_user_id: str, viewer: Viewer | None, note: str | None = None) -> None:
        if viewer is None:
            self.client.views_publish(user_id=slack_user_id, view=views.unknown_home_view())
            return
        page = open_tasks(self.app, [viewer.rep_id], limit=views.HOME_TASKS)
        campaigns = visible_campaigns(self.app, viewer)
        statuses = [s for s in (self.home_status(c) for c in campaigns[:HOME_CAMPAIGNS]) if s is not None]
        view = views.home_view(viewer.name or viewer.email, page.tasks, page.total, statuses,
                               len(campaigns) - len(statuses), note)
        self.client.views_publish(user_id=slack_user_id, view=view)

    def home_status(self, campaign: CampaignRef) -> dict | None:
        """The KPIs App Home shows, at most HOME_KPI_SECONDS old: a home is republished after every
        task action, and a 100k-people campaign's figures are not worth recomputing each time."""
        now = time.monotonic()
        with self._home_lock:
            cached = self._home_kpis.get(campaign.id)
        if cached is not None and cached[0] > now:
            return cached[1]
        status = campaign_status_by_id(self.app, campaign.id)
        with self._home_lock:
            self._home_kpis[campaign.id] = (now + HOME_KPI_SECONDS, status)
        return status

    def refresh_home_of_rep(self, rep_id: int, note: str | None = None, skip: str | None = None) -> None:
        """Republish the App Home of a rep who has a Slack account (their queue changed)."""
        rep = rep_by_id(self.app, rep_id)
        slack_id = rep.slack_id if rep else None
        if not slack_id or slack_id == skip:
            return
        viewer = self.directory.viewer(slack_id)
        try:
            self.publish_home(slack_id, viewer, note)
        except SlackApiError as error:
            log.warning("could not refresh the App Home of %s: %s", slack_id, slack_error(error))

    # -- task buttons --------------------------------------------------------------------------
    def allowed_task(self, viewer: Viewer | None, slack_user: str, task_value: object, verb: str) -> int | None:
        """The task id when the viewer may act on it; None (logged) otherwise."""
        task_id = parse_id(task_value)
        owner = task_owner_id(self.app, task_id) if task_id is not None else None
        if viewer is None or owner is None or not viewer.may_act_for(owner):
            refuse(viewer, slack_user, verb, f"task {task_value!r}")
            return None
        return task_id

    def act_on_task(self, viewer: Viewer, task_id: int, action_id: str) -> tuple[bool, str]:
        """Send or skip; (done, what to tell the user)."""
        detail = task_detail(self.app, task_id)
        try:
            with self.writing:
                if action_id == "task_send":
                    send_task(self.app, task_id)
                    outcome = f":white_check_mark: Sent to {detail.view.contact}"
                else:
                    skip_task(self.app, task_id)
                    outcome = f":fast_forward: Skipped {detail.view.contact}"
        except UserError as refused:
            return False, f":warning: {refused}"
        log.info("%s: task %s %s from Slack", viewer.email, task_id, "sent" if action_id == "task_send" else "skipped")
        return True, outcome


def _ack(ack) -> None:
    ack()


# What is registered below with `ack=_ack`: bolt's answer to these is always an empty 200, so the
# HTTP endpoint may send it before dispatching (`acked_before_dispatch`).
LAZY_COMMANDS = frozenset({"/cadence"})
LAZY_ACTIONS = frozenset({"task_send", "task_skip", "task_edit", "task_open"})
LAZY_EVENTS = frozenset({"app_home_opened"})


def acked_before_dispatch(body: object) -> bool:
    """Whether a parsed Slack request body (bolt's `BoltRequest.body`) is one whose acknowledgement
    is an empty 200 whatever happens after (a /cadence command, task buttons, App Home opened);
    False for everything else (view submissions answer with their errors, URL verification with
    its challenge, unknown commands and actions with bolt's own answer)."""
    if not isinstance(body, dict):
        return False
    if "command" in body:
        return body.get("command") in LAZY_COMMANDS
    kind = body.get("type")
    if kind == "block_actions":
        actions = body.get("actions")
        return (isinstance(actions, list) and bool(actions)
                and all(isinstance(a, dict) and a.get("action_id") in LAZY_ACTIONS for a in actions))
    if kind == "event_callback":
        event = body.get("event")
        return isinstance(event, dict) and event.get("type") in LAZY_EVENTS
    return False


def build_bolt_app(app: App, *, socket_mode: bool = False, client: WebClient | None = None) -> slack_bolt.App:
    """The bolt App for `app`, with request verification on (HTTP) and every handler registered."""
    settings = app.settings
    if not socket_mode and not settings.slack_signing_secret:
        raise UserError("SLACK_SIGNING_SECRET is not set; Slack requests could not be verified")
    client = client or web_client(settings)
    bolt = slack_bolt.App(
        client=client,
        signing_secret=settings.slack_signing_secret or "unused-in-socket-mode",
        request_verification_enabled=True,
        # `cadence serve` must start (tracking links!) even while Slack is unreachable; bolt checks
        # the token with auth.test on the first request instead.
        token_verification_enabled=False,
        process_before_response=True,
        listener_executor=ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="cadence-slack"),
        name="cadence",
    )
    bot = Bot(app, client)
    guard = ReplayGuard()
    bolt.use(guard.middleware)
    _register(bolt, bot)
    return bolt


def drain(bolt: slack_bolt.App) -> None:
    """Wait for the work started after acknowledgements (for a graceful stop); no new work after."""
    bolt.listener_runner.listener_executor.shutdown(wait=True)


def _register(bolt: slack_bolt.App, bot: Bot) -> None:
    def run_command(command, respond) -> None:
        user = command.get("user_id", "")
        try:
            viewer = bot.directory.viewer(user)
            if viewer is None:
                answer = views.unknown_user_message()
            else:
                answer = bot.answer(viewer, parse_command(command.get("text")))
        except Exception:  # the user gets a sentence, the log gets the trace
            log.exception("/cadence %r from %s failed", command.get("text"), user)
            answer = views.error_message("Something went wrong on Cadence's side; the error is logged.")
        respond(response_type="ephemeral", replace_original=False, **answer)

    def run_task_action(body, action, respond) -> None:
        user = body.get("user", {}).get("id", "")
        action_id = action.get("action_id", "")
        surface = str(action.get("block_id", "")).split(":")[1:2] or ["list"]
        in_view = body.get("container", {}).get("type") == "view"
        viewer = bot.directory.viewer(user)
        task_id = bot.allowed_task(viewer, user, action.get("value"), action_id.removeprefix("task_"))
        if task_id is None:
            text = "I don't know your Slack account yet." if viewer is None else "You may not act on this task."
            if respond is not None:
                respond(response_type="ephemeral", replace_original=False, **views.error_message(text))
            elif in_view:
                bot.publish_home(user, viewer, text)
            return
        try:
            owner = task_owner_id(bot.app, task_id)
            done, outcome = bot.act_on_task(viewer, task_id, action_id)
            if in_view or respond is None:
                bot.publish_home(user, viewer, outcome)
            elif surface[0] == "single" and done:
                respond(replace_original=True, **views.task_closed_message(task_detail(bot.app, task_id).view, outcome))
            elif surface[0] == "single":
                respond(response_type="ephemeral", replace_original=False, **views.error_message(outcome))
            else:
                respond(replace_original=True, **bot.tasks(viewer, outcome))
            if not in_view:
                bot.refresh_home_of_rep(viewer.rep_id)
            if owner is not None and owner != viewer.rep_id:
                bot.refresh_home_of_rep(owner, skip=user)
        except Exception:
            log.exception("task action %s on %s by %s failed", action_id, task_id, user)
            if respond is not None:
                respond(response_type="ephemeral", replace_original=False,
                        **views.error_message("Something went wrong on Cadence's side; the error is logged."))

    def open_editor(body, action, client, respond) -> None:
        user = body.get("user", {}).get("id", "")
        viewer = bot.directory.viewer(user)
        task_id = bot.allowed_task(viewer, user, action.get("value"), "edit")
        detail = task_detail(bot.app, task_id) if task_id is not None else None
        if detail is None or detail.view.state != "open":
            text = ("You may not act on this task." if task_id is None
                    else "This task is no longer open; nothing to edit.")
            if respond is not None:
                respond(response_type="ephemeral", replace_original=False, **views.error_message(text))
            else:
                bot.publish_home(user, viewer, text)
            return
        client.views_open(trigger_id=body["trigger_id"], view=views.edit_modal(detail.view, detail.body))

    def save_edit(ack, body, view) -> None:
        user = body.get("user", {}).get("id", "")
        viewer = bot.directory.viewer(user)
        try:
            task_value = json.loads(view.get("private_metadata") or "{}").get("task")
        except (ValueError, AttributeError):
            task_value = None
        task_id = bot.allowed_task(viewer, user, task_value, "edit")
        if task_id is None:
            ack(response_action="errors", errors={"subject": "You may not edit this task."})
            return
        values = view.get("state", {}).get("values", {})
        subject = (values.get("subject", {}).get("subject", {}) or {}).get("value")
        text = (values.get("body", {}).get("body", {}) or {}).get("value")
        errors = views.edit_errors(subject, text)
        if errors:
            ack(response_action="errors", errors=errors)
            return
        try:
            with bot.writing:
                edit_task(bot.app, task_id, subject=subject.strip(), body=text)
        except UserError as refused:
            ack(response_action="errors", errors={"body": str(refused)})
            return
        log.info("%s edited the draft of task %s from Slack", viewer.email, task_id)
        ack()

    def refresh_after_edit(body) -> None:
        user = body.get("user", {}).get("id", "")
        viewer = bot.directory.viewer(user)
        if viewer is not None:
            bot.publish_home(user, viewer)

    def home_opened(event) -> None:
        if event.get("tab", "home") != "home":
            return
        user = event.get("user", "")
        bot.publish_home(user, bot.directory.viewer(user))

    bolt.command("/cadence")(ack=_ack, lazy=[run_command])  # LAZY_COMMANDS
    bolt.action("task_send")(ack=_ack, lazy=[run_task_action])  # LAZY_ACTIONS, these four
    bolt.action("task_skip")(ack=_ack, lazy=[run_task_action])
    bolt.action("task_edit")(ack=_ack, lazy=[open_editor])
    bolt.action("task_open")(_ack)  # a link button: Slack opens the URL, we only acknowledge
    bolt.view(views.EDIT_CALLBACK)(ack=save_edit, lazy=[refresh_after_edit])
    bolt.event("app_home_opened")(ack=_ack, lazy=[home_opened])  # LAZY_EVENTS

    @bolt.error
    def on_error(error, body) -> None:  # noqa: ARG001 - bolt injects by name
        log.error("Slack request failed: %s", error, exc_info=error)


__all__ = ["Bot", "acked_before_dispatch", "build_bolt_app"]
