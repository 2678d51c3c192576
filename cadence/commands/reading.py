"""What a campaign did and what waits: `status`, `logs`, `tasks`, `task send|skip`."""
from __future__ import annotations

import sys
from typing import Optional

import typer

from cadence.commands.common import build_app, err, out, print_json, print_table

task_cli = typer.Typer(no_args_is_help=True, help="Act on one task.")

CAMPAIGN = typer.Argument(..., metavar="CAMPAIGN", help="the campaign's name")
JSON = typer.Option(False, "--json", help="one JSON document instead of text")


def status(campaign: str = CAMPAIGN, as_json: bool = JSON) -> None:
    """State, preparation KPIs, delivery KPIs, per-step breakdown, next due time, what is held back."""
    from cadence.services.reads.status import campaign_status

    data = campaign_status(build_app(access="read"), campaign)  # one document for the text and --json
    if as_json:
        return print_json(data)
    p, d = data["preparation"], data["delivery"]
    due = data["next_due"] or "-"
    if data["send_at"] and data["next_due"] == data["send_at"]:
        due += " (sending starts)"
    out.print(f"{data['campaign']}: {data['state']}   next due: {due}")
    progress = (f", preparing {p['progress_pct']}%" if data["state"] == "preparing" and p.get("progress_pct") is not None
                else "")
    stale = " (stale: prepare again)" if p["stale"] else ""
    out.print(f"preparation: targeted {p['targeted']}, to deliver {p['to_deliver']}, to exclude {p['to_exclude']}"
              f"{stale}{progress}")
    out.print(f"delivery: sent {d['sent']}, delivered {d['delivered']} ({d['delivered_pct']}%), opens {d['opens']} "
              f"({d['opens_pct']}%), clicks {d['clicks']} ({d['clicks_pct']}%), replies {d['replies']}, bounces "
              f"{d['bounces']}, unsubscribes {d['unsubscribes']}, tasks open {d['tasks_open']} / done {d['tasks_done']}")
    if d.get("deferred") or d.get("in_doubt"):
        causes = ", ".join(f"{cause} {n}" for cause, n in d["deferred_by_cause"].items())
        out.print(f"held back: deferred {d.get('deferred', 0)}{f' ({causes})' if causes else ''}, in doubt "
                  f"{d.get('in_doubt', 0)} (a person must check the mailbox's Sent folder); see `cadence logs "
                  f"--summary`")
    for entry in data["backlog"]:
        if entry["per_day"] and entry["sending_days"] and entry["sending_days"] > 1:
            out.print(f"backlog: {entry['pending']} automatic email(s) from {entry['mailbox']} at {entry['per_day']} "
                      f"a day clear in {entry['sending_days']} sending days, on {entry['clears_on']}")
    print_table(("step", "sent", "delivered", "opens", "clicks", "replies", "open tasks"),
                [[s[k] for k in ("position", "sent", "delivered", "opens", "clicks", "replies", "tasks_open")]
                 for s in data["steps"]])


def logs(campaign: str = CAMPAIGN,
         errors: bool = typer.Option(False, "--errors", help="only errors"),
         cause: Optional[str] = typer.Option(None, "--cause", help="only this exclusion or deferral cause, "
                                                                   "e.g. opted_out, daily_limit"),
         contact: Optional[str] = typer.Option(None, "--contact", help="only this person (email address)"),
         since: Optional[str] = typer.Option(None, "--since", help="only from this time on (ISO date-time or date)"),
         summary: bool = typer.Option(False, "--summary", help="counts by event and cause instead of lines"),
         every: bool = typer.Option(False, "--every", help="every line, repeats not collapsed"),
         as_json: bool = JSON) -> None:
    """The preparation and delivery log, exclusions with their causes; repeats collapsed."""
    from cadence.commands.common import parse_instant
    from cadence.services.reads.logs import collapse, read_log, summarize

    app = build_app(access="read")
    start = parse_instant(since, "--since", app.settings) if since else None  # a date alone is its midnight
    lines = read_log(app, campaign, errors_only=errors, cause=cause, contact=contact, since=start)
    error_count = sum(1 for line in lines if line.level == "error")
    if cause is not None and not lines:  # a cause mistyped reads like "nothing happened": say which exist
        known = sorted({line.cause for line in read_log(app, campaign) if line.cause})
        err.print(f"note: no line has the cause {cause.strip()!r}; causes in this log: "
                  f"{', '.join(known) if known else 'none'}")
    if summary:
        rows = summarize(lines)
        if as_json:
            return print_json(rows)
        print_table(("count", "level", "event", "cause", "first", "last"),
                    [(r["count"], r["level"], r["kind"], r["cause"] or "-", r["first"], r["last"]) for r in rows])
        sys.stdout.write(f"{len(lines)} line(s), {error_count} error(s)\n")
        return
    shown = lines if every or contact else collapse(lines)
    if as_json:
        return print_json([line.as_dict() for line in shown])
    for line in shown:
        who = f" {line.contact}" if line.contact and line.contact not in line.detail else ""
        more = (f" (and {line.repeats} more alike until {line.until.isoformat().replace('+00:00', 'Z')})"
                if line.repeats else "")
        at = line.at.isoformat().replace("+00:00", "Z")
        # the stored cause code, for grep and `--cause`, unless the text already says it as "(cause)"
        tag = f" [{line.cause}]" if line.cause and f"({line.cause})" not in line.detail else ""
        sys.stdout.write(f"{at} {line.level:<7} {line.kind:<20}{tag}{who} {line.detail}{more}\n")
    sys.stdout.write(f"{len(lines)} line(s), {error_count} error(s)\n")


def explain(campaign: str = CAMPAIGN,
            contact: str = typer.Option(..., "--contact", help="the person's email address"),
            as_json: bool = JSON) -> None:
    """For each step of one person: state, due time and every rule, window, holiday, cap or exclusion
    that decided it."""
    from cadence.services.reads.explain import explain_contact

    name, person, steps = explain_contact(build_app(access="read"), campaign, contact)
    if as_json:
        return print_json({"campaign": name, "contact": person.email, "sequence": person.enrollment_state,
                           "steps": [s.as_dict() for s in steps]})
    out.print(f"{name}: {person.email} ({person.enrollment_state}), from {person.mailbox}")
    for step in steps:
        due = step.due_at.isoformat().replace("+00:00", "Z") if step.due_at else "-"
        out.print(f"step {step.position}: {step.state}, due {due}")
        for reason in step.why:
            out.print(f"  - {reason}")


def tasks(rep: Optional[str] = typer.Option(None, "--rep", help="only this rep's tasks (their email)"),
          state: str = typer.Option("open", "--state", metavar="STATE",
                                    help="open (default), done, skipped, stale, or all"),
          as_json: bool = JSON) -> None:
    """Open "I'll send it myself" tasks with their draft links (`--state stale`: those whose
    sequence ended first, and why)."""
    from cadence.services.directory import rep_exists
    from cadence.services.errors import UserError
    from cadence.services.tasks import list_tasks
    from core.vocabulary import TaskState

    wanted = state.strip().lower()
    if wanted != "all" and wanted not in {s.value for s in TaskState}:
        raise UserError(f"--state: {state!r} is not one of open, done, skipped, stale, all")
    states = tuple(TaskState) if wanted == "all" else (TaskState(wanted),)
    app = build_app(access="read")
    if rep is not None and not rep_exists(app, rep):
        raise UserError(f"--rep: no rep with email {rep.strip()}; see `cadence rep list`")
    views = list_tasks(app, rep=rep, states=states)
    if as_json:
        return print_json([v.as_dict() for v in views])
    if states == (TaskState.OPEN,):
        print_table(("id", "rep", "campaign", "step", "contact", "subject", "draft"),
                    [(v.id, v.rep, v.campaign, v.position, v.contact, v.subject, v.draft_link or "-") for v in views])
        return
    print_table(("id", "state", "rep", "campaign", "step", "contact", "subject", "draft", "why"),
                [(v.id, v.state, v.rep, v.campaign, v.position, v.contact, v.subject, v.draft_link or "-",
                  v.reason or "-") for v in views])


@task_cli.command("send")
def task_send(task_id: int = typer.Argument(..., metavar="ID", help="the task's id (see `cadence tasks`)")) -> None:
    """Send the task's draft now."""
    from cadence.services.tasks import send_task

    out.print(send_task(build_app(access="existing"), task_id))


@task_cli.command("skip")
def task_skip(task_id: int = typer.Argument(..., metavar="ID", help="the task's id (see `cadence tasks`)")) -> None:
    """Skip the task; the sequence moves on."""
    from cadence.services.tasks import skip_task

    out.print(skip_task(build_app(access="existing"), task_id))


def register(cli: typer.Typer) -> None:
    for command in (status, logs, explain, tasks):
        cli.command()(command)
    cli.add_typer(task_cli, name="task")
