"""Block Kit for every surface of the bot. Pure functions of plain data: no I/O, no clock.

Messages are dicts `{"text": fallback, "blocks": [...]}`; views are Slack view payloads. Text from
contacts and emails is escaped (`&`, `<`, `>`), so it can never turn into a link or a mention.
"""
from __future__ import annotations

import json
from datetime import datetime

from cadence.services.reads.tasks import TaskView

MESSAGE_BLOCKS = 50  # Slack's limit for a message
VIEW_BLOCKS = 100  # and for a view
HOME_TASKS = 10
LIST_TASKS = 10

HELP = (
    "*Cadence in Slack*\n"
    "`/cadence status [campaign]`: the delivery dashboard of a campaign, or of all yours\n"
    "`/cadence tasks`: your open \u201cI'll send it myself\u201d tasks, with their drafts\n"
    "`/cadence pause <campaign>` \u00b7 `/cadence resume <campaign>`: stop and restart sending\n"
    "`/cadence digest`: your team's KPI digest now (managers)\n"
    "`/cadence web`: a one-time sign-in link to the web app, in a direct message\n"
    "`/cadence help`: this text\n"
    "Campaign names are not case-sensitive and may be shortened when that is unambiguous."
)


def esc(text: object) -> str:
    """Escape user-provided text for mrkdwn (Slack's three control characters)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "\u2026"


def slack_date(at: datetime | None, style: str = "{date_short_pretty} {time}") -> str:
    """A date Slack shows in each reader's own time zone, with a UTC fallback."""
    if at is None:
        return "\u2014"
    return f"<!date^{int(at.timestamp())}^{style}|{at:%Y-%m-%d %H:%M} UTC>"


def section(text: str, **extra) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": cut(text, 3000)}, **extra}


def context(text: str) -> dict:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": cut(text, 3000)}]}


def with_notice(answer: dict, notice: str | None) -> dict:
    """`answer` with a warning line after its blocks (e.g. the CRM needs sign-in again)."""
    if notice:
        answer.setdefault("blocks", []).append(context(f":warning: {esc(notice)}"))
    return answer


def header(text: str) -> dict:
    return {"type": "header", "text": {"type": "plain_text", "text": cut(text, 150), "emoji": True}}


def divider() -> dict:
    return {"type": "divider"}


def message(text: str, blocks: list[dict] | None = None) -> dict:
    return {"text": cut(text, 3000), "blocks": (blocks or [section(text)])[:MESSAGE_BLOCKS]}


# -- answers -----------------------------------------------------------------------------------

def help_message(problem: str | None = None) -> dict:
    blocks = ([section(f":grey_question: {esc(problem)}")] if problem else []) + [section(HELP)]
    return message((problem + "\n" if problem else "") + HELP, blocks)


def unknown_user_message() -> dict:
    return message("Hello! I don't know your Slack account yet, so there is nothing I can show you. "
                   "Ask your Cadence admin to link it (`cadence rep add --email you@company.com --slack-id "
                   "<your Slack member id>`).")


def error_message(text: str) -> dict:
    return message(f":warning: {text}", [section(f":warning: {esc(text)}")])


def web_link_message(url: str, minutes: int) -> dict:
    """The DM holding a one-time sign-in link (posted with link unfurling off: no preview uses it up)."""
    text = f"Your sign-in link to the Cadence web app (works once, for {minutes} minutes): {url}"
    return message(text, [section(f":key: <{url}|Open Cadence> — this link works once, for {minutes} minutes. "
                                  "Do not share it.")])


def note_message(text: str) -> dict:
    return message(text, [section(esc(text))])


# -- campaigns ---------------------------------------------------------------------------------

STATE_ICON = {"sending": ":arrow_forward:", "scheduled": ":alarm_clock:", "paused": ":double_vertical_bar:",
              "stopped": ":black_square_for_stop:", "finished": ":checkered_flag:", "failed": ":x:",
              "preparing": ":hourglass_flowing_sand:", "prepared": ":white_check_mark:", "draft": ":pencil2:"}


def _iso(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def status_blocks(status: dict) -> list[dict]:
    """The delivery dashboard of one campaign (the `cadence status --json` document)."""
    prep, delivery = status["preparation"], status["delivery"]
    icon = STATE_ICON.get(status["state"], "")
    fields = [
        f"*State*\n{icon} {status['state']}",
        f"*Targeted*\n{prep['targeted']} (to deliver {prep['to_deliver']} \u00b7 to exclude {prep['to_exclude']})",
        f"*Delivered*\n{delivery['delivered_pct']:.1f} % ({delivery['delivered']} of {delivery['sent']} sent)",
        f"*Opens*\n{delivery['opens_pct']:.1f} % ({delivery['opens']})",
        f"*Clicks*\n{delivery['clicks_pct']:.1f} % ({delivery['clicks']})",
        f"*Replies*\n{delivery['replies']}",
        f"*Bounces*\n{delivery['bounces']}",
        f"*Tasks open*\n{delivery['tasks_open']}",
        f"*Next due*\n{slack_date(_iso(status.get('next_due')))}",
    ]
    return [section(f"*{esc(status['campaign'])}*"),
            {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]}]


def status_message(statuses: list[dict], more: int = 0) -> dict:
    if not statuses:
        return note_message("You have no campaigns yet (none sends from your mailboxes).")
    blocks: list[dict] = []
    for i, status in enumerate(statuses):
        if i:
            blocks.append(divider())
        blocks += status_blocks(status)
    if more:
        blocks.append(context(f"and {more} more; `/cadence status <campaign>` shows any of them"))
    summary = "; ".join(f"{s['campaign']}: {s['state']}, {s['delivery']['sent']} sent, "
                        f"{s['delivery']['replies']} replies" for s in statuses)
    return message(summary, blocks)


# -- tasks -------------------------------------------------------------------------------------

def task_text(task: TaskView) -> str:
    who = f"*{esc(task.contact_name)}*" + (f" \u00b7 {esc(task.company)}" if task.company else "")
    lines = [f"{who} \u2014 {esc(task.campaign)}, step {task.position}",
             f"Due {slack_date(task.due_at)} \u00b7 from {esc(task.mailbox)} to {esc(task.contact)}",
             f"*{esc(cut(task.subject, 200))}*"]
    if task.preview:
        lines.append("> " + esc(cut(task.preview, 160)))
    return "\n".join(lines)


def _is_web(link: str | None) -> bool:
    return bool(link) and link.lower().startswith(("https://", "http://"))


def task_actions(task: TaskView, block_id: str) -> dict:
    value = str(task.id)
    elements = []
    if _is_web(task.draft_link):
        elements.append({"type": "button", "action_id": "task_open", "url": task.draft_link,
                         "text": {"type": "plain_text", "text": "Open draft"}, "value": value})
    elements += [
        {"type": "button", "action_id": "task_send", "style": "primary", "value": value,
         "text": {"type": "plain_text", "text": "Send now"},
         "confirm": {"title": {"type": "plain_text", "text": "Send this email?"},
                     "text": {"type": "mrkdwn", "text": cut(f"The draft to {esc(task.contact)} goes out now from "
                                                            f"{esc(task.mailbox)}.", 300)},
                     "confirm": {"type": "plain_text", "text": "Send"},
                     "deny": {"type": "plain_text", "text": "Not yet"}}},
        {"type": "button", "action_id": "task_edit", "value": value, "text": {"type": "plain_text", "text": "Edit"}},
        {"type": "button", "action_id": "task_skip", "style": "danger", "value": value,
         "text": {"type": "plain_text", "text": "Skip"},
         "confirm": {"title": {"type": "plain_text", "text": "Skip this step?"},
                     "text": {"type": "mrkdwn", "text": "The draft is deleted and the sequence moves on."},
                     "confirm": {"type": "plain_text", "text": "Skip"},
                     "deny": {"type": "plain_text", "text": "Keep it"}}},
    ]
    return {"type": "actions", "block_id": block_id, "elements": elements}


def task_blocks(task: TaskView, surface: str = "list") -> list[dict]:
    """A task card: who, campaign and step, due time, subject and first lines, and its buttons.

    `surface` ("list", "single", "home") goes into the actions block id so that a click knows
    which kind of message to redraw; it is never used for a permission decision.
    """
    blocks = [section(task_text(task))]
    if task.draft_link and not _is_web(task.draft_link):
        blocks.append(context(f"Draft: `{esc(cut(task.draft_link, 300))}`"))
    blocks.append(task_actions(task, f"task:{surface}:{task.id}"))
    return blocks


def tasks_message(tasks: list[TaskView], total: int, note: str | None = None) -> dict:
    blocks: list[dict] = [section(esc(note))] if note else []
    if not tasks:
        blocks.append(section(":tada: No open tasks."))
        return message((note + "\n" if note else "") + "No open tasks.", blocks)
    blocks.append(section(f"*{total} open task{'s' if total != 1 else ''}*"))
    for task in tasks[:LIST_TASKS]:
        blocks += task_blocks(task, "list")
    if total > len(tasks[:LIST_TASKS]):
        blocks.append(context(f"Showing the first {len(tasks[:LIST_TASKS])} of {total}."))
    fallback = f"{total} open tasks: " + "; ".join(f"{t.contact_name} ({t.campaign})" for t in tasks[:LIST_TASKS])
    return message(fallback, blocks)


def task_closed_message(task: TaskView, outcome: str) -> dict:
    text = f"{outcome}: {task.contact_name} \u2014 {task.campaign}, step {task.position}"
    return message(text, [section(f"{esc(outcome)}: *{esc(task.contact_name)}* \u2014 {esc(task.campaign)}, "
                                  f"step {task.position} \u00b7 _{esc(cut(task.subject, 150))}_")])


EDIT_CALLBACK = "task_edit_modal"
SUBJECT_MAX = 250
BODY_MAX = 3000  # Slack's limit for a plain_text_input


def edit_modal(task: TaskView, body: str) -> dict:
    return {
        "type": "modal", "callback_id": EDIT_CALLBACK,
        "private_metadata": json.dumps({"task": task.id}),
        "title": {"type": "plain_text", "text": "Edit the draft"},
        "submit": {"type": "plain_text", "text": "Save draft"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            context(f"To {esc(task.contact_name)} &lt;{esc(task.contact)}&gt; from {esc(task.mailbox)} \u00b7 "
                    f"{esc(task.campaign)}, step {task.position}"),
            {"type": "input", "block_id": "subject", "label": {"type": "plain_text", "text": "Subject"},
             "element": {"type": "plain_text_input", "action_id": "subject",
                         "initial_value": cut(task.subject, SUBJECT_MAX), "max_length": SUBJECT_MAX}},
            {"type": "input", "block_id": "body", "label": {"type": "plain_text", "text": "Body"},
             "element": {"type": "plain_text_input", "action_id": "body", "multiline": True,
                         "initial_value": cut(body, BODY_MAX), "max_length": BODY_MAX}},
            context("Saved into the draft in your mailbox; it is not sent until you press *Send now* "
                    "(or send it from your mail client)."),
        ],
    }


def edit_errors(subject: str | None, body: str | None) -> dict[str, str]:
    """Validation of the edit modal: block id → message (empty when the input is acceptable)."""
    from core.headers import HeaderInjection, check_header_value

    errors: dict[str, str] = {}
    subject = (subject or "").strip()
    if not subject:
        errors["subject"] = "The subject must not be empty."
    elif len(subject) > SUBJECT_MAX:
        errors["subject"] = f"The subject is longer than {SUBJECT_MAX} characters."
    else:
        try:
            check_header_value("subject", subject)
        except HeaderInjection as refused:
            errors["subject"] = str(refused)
    if not (body or "").strip():
        errors["body"] = "The body must not be empty."
    elif len(body or "") > BODY_MAX:
        errors["body"] = f"The body is longer than {BODY_MAX} characters."
    return errors


# -- App Home ----------------------------------------------------------------------------------

def home_view(name: str, tasks: list[TaskView], total: int, statuses: list[dict], more_campaigns: int = 0,
              note: str | None = None) -> dict:
    blocks: list[dict] = [header(f"Cadence \u00b7 {cut(name, 100)}")]
    if note:
        blocks.append(section(esc(note)))
    blocks.append(section(f"*Your tasks* ({total} open)"))
    if not tasks:
        blocks.append(context(":tada: Nothing to send by hand right now."))
    for task in tasks[:HOME_TASKS]:
        blocks += task_blocks(task, "home")
    if total > len(tasks[:HOME_TASKS]):
        blocks.append(context(f"Showing the first {len(tasks[:HOME_TASKS])} of {total}; `/cadence tasks` lists them."))
    blocks += [divider(), section("*Your campaigns*")]
    if not statuses:
        blocks.append(context("No campaign sends from your mailboxes yet."))
    for status in statuses:
        blocks += status_blocks(status)
    if more_campaigns:
        blocks.append(context(f"and {more_campaigns} more; `/cadence status` lists them."))
    return {"type": "home", "blocks": blocks[:VIEW_BLOCKS]}


def unknown_home_view() -> dict:
    return {"type": "home", "blocks": [header("Cadence"), section(unknown_user_message()["text"])]}


# -- notifications -----------------------------------------------------------------------------

def quote(text: str, lines: int = 4, limit: int = 600) -> str:
    kept = [line for line in (text or "").strip().splitlines() if line.strip()][:lines]
    return "\n".join("> " + esc(line) for line in cut("\n".join(kept), limit).splitlines())


def replied_message(contact: str, campaign: str, position: int | None, snippet: str, link: str | None) -> dict:
    step = f", step {position}" if position else ""
    text = f":speech_balloon: *{esc(contact)}* replied \u2014 {esc(campaign)}{step}. The sequence stopped for them."
    blocks = [section(text)]
    if snippet.strip():
        blocks.append(section(quote(snippet)))
    if _is_web(link):
        blocks.append(section(f"<{link}|Open the reply>"))
    return message(f"{contact} replied ({campaign}{step}): {cut(snippet.strip(), 200)}", blocks)


def bounced_message(address: str, campaign: str, reason: str) -> dict:
    text = f":warning: The email to *{esc(address)}* bounced \u2014 {esc(campaign)}."
    return message(f"The email to {address} bounced ({campaign}): {reason}",
                   [section(text), context(esc(cut(reason, 500)))])


def draft_ready_message(task: TaskView | None, fallback_detail: str) -> dict:
    if task is None:
        return message(f"A draft is ready: {fallback_detail}", [section(f":memo: {esc(fallback_detail)}")])
    blocks = [section(":memo: A draft is ready for you to send.")] + task_blocks(task, "single")
    return message(f"A draft to {task.contact} is ready ({task.campaign}, step {task.position})", blocks)


def draft_stale_message(contact: str, campaign: str, detail: str) -> dict:
    text = (f":hourglass: The draft to *{esc(contact)}* ({esc(campaign)}) is stale: {esc(detail)}. "
            "It left your task list and is withdrawn from your Drafts; don't send it.")
    return message(f"The draft to {contact} ({campaign}) is stale: {detail}", [section(text)])


def mailbox_disconnected_message(address: str, provider: str, reason: str) -> dict:
    text = (f":electric_plug: Your mailbox *{esc(address)}* ({esc(provider)}) is disconnected: "
            f"{esc(cut(reason, 300))}. "
            f"Nothing is sent from it until it is reconnected (`cadence mailbox connect {esc(provider)} "
            f"--owner \u2026`).")
    return message(f"Your mailbox {address} is disconnected: {reason}", [section(text)])
