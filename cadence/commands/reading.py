"""What a campaign did and what waits: `status`, `logs`, `tasks`, `task send|skip`."""
from __future__ import annotations

import sys
from typing import Optional

import typer

from cadence.commands.common import build_app, out, print_json, print_table

task_cli = typer.Typer(no_args_is_help=True, help="Act on one task.")

CAMPAIGN = typer.Argument(..., metavar="CAMPAIGN", help="the campaign's name")
JSON = typer.Option(False, "--json", help="one JSON document instead of text")


def status(campaign: str = CAMPAIGN, as_json: bool = JSON) -> None:
    """State, preparation KPIs, delivery KPIs, per-step breakdown, next due time."""
    from cadence.services.reads.status import campaign_status

    data = campaign_status(build_app(access="read"), campaign)
    if as_json:
        return print_json(data)
    p, d = data["preparation"], data["delivery"]
    out.print(f"{data['campaign']}: {data['state']}   next due: {data['next_due'] or '-'}")
    preparing = data["state"] == "preparing"
    progress = f", preparing {p['progress_pct']}%" if preparing else ""
    stale = "" if p["current"] or preparing else " (stale: prepare again)"
    out.print(f"preparation: targeted {p['targeted']}, to deliver {p['to_deliver']}, to exclude {p['to_exclude']}"
              f"{stale}{progress}")
    out.print(f"delivery: sent {d['sent']}, delivered {d['delivered']} ({d['delivered_pct']}%), opens {d['opens']} "
              f"({d['opens_pct']}%), clicks {d['clicks']} ({d['clicks_pct']}%), replies {d['replies']}, bounces "
              f"{d['bounces']}, unsubscribes {d['unsubscribes']}, tasks open {d['tasks_open']} / done {d['tasks_done']}")
    if d.get("deferred") or d.get("in_doubt"):
        out.print(f"held back: deferred {d.get('deferred', 0)} (see `cadence logs`), in doubt {d.get('in_doubt', 0)} "
                  "(a person must check the mailbox's Sent folder)")
    print_table(("step", "sent", "delivered", "opens", "clicks", "replies", "open tasks"),
                [[s[k] for k in ("position", "sent", "delivered", "opens", "clicks", "replies", "tasks_open")]
                 for s in data["steps"]])


def logs(campaign: str = CAMPAIGN,
         errors: bool = typer.Option(False, "--errors", help="only errors")) -> None:
    """The preparation and delivery log, exclusions with their causes."""
    from cadence.services.reads.status import campaign_logs

    rows = campaign_logs(build_app(access="read"), campaign, errors_only=errors)
    for r in rows:
        who = f" {r['contact']}" if r["contact"] and r["contact"] not in r["detail"] else ""
        sys.stdout.write(f"{r['at']} {r['level']:<7} {r['kind']:<20}{who} {r['detail']}\n")
    error_count = sum(1 for r in rows if r["level"] == "error")
    sys.stdout.write(f"{len(rows)} line(s), {error_count} error(s)\n")


def tasks(rep: Optional[str] = typer.Option(None, "--rep", help="only this rep's tasks (their email)"),
          as_json: bool = JSON) -> None:
    """Open "I'll send it myself" tasks with their draft links."""
    from cadence.services.directory import rep_exists
    from cadence.services.errors import UserError
    from cadence.services.reads.tasks import list_tasks

    app = build_app(access="read")
    if rep is not None and not rep_exists(app, rep):
        raise UserError(f"--rep: no rep with email {rep.strip()}; see `cadence rep list`")
    views = list_tasks(app, rep=rep)
    if as_json:
        return print_json([v.as_dict() for v in views])
    print_table(("id", "rep", "campaign", "step", "contact", "subject", "draft"),
                [(v.id, v.rep, v.campaign, v.position, v.contact, v.subject, v.draft_link or "-") for v in views])


@task_cli.command("send")
def task_send(task_id: int = typer.Argument(..., metavar="ID", help="the task's id (see `cadence tasks`)")) -> None:
    """Send the task's draft now."""
    from cadence.services.tasks import send_task

    out.print(send_task(build_app(), task_id))


@task_cli.command("skip")
def task_skip(task_id: int = typer.Argument(..., metavar="ID", help="the task's id (see `cadence tasks`)")) -> None:
    """Skip the task; the sequence moves on."""
    from cadence.services.tasks import skip_task

    out.print(skip_task(build_app(), task_id))


def register(cli: typer.Typer) -> None:
    for command in (status, logs, tasks):
        cli.command()(command)
    cli.add_typer(task_cli, name="task")
