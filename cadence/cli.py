"""The `cadence` command line (see the interface page). Thin: parse, call a service, print."""
from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Optional
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.table import Table

from cadence.app import App
from cadence.commands.crm import register as register_crm
from cadence.services.errors import UserError
from cadence.settings import Settings
from core.clock import Clock, FixedClock, SystemClock

app_cli = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                      help="Cadence: multi-day email campaigns, rep tasks as drafts, a Slack bot.")
rep_cli = typer.Typer(no_args_is_help=True, help="Sales reps and managers.")
mailbox_cli = typer.Typer(no_args_is_help=True, help="Sending mailboxes.")
contacts_cli = typer.Typer(no_args_is_help=True, help="Contacts.")
campaign_cli = typer.Typer(no_args_is_help=True, help="Campaign definitions.")
task_cli = typer.Typer(no_args_is_help=True, help="Act on one task.")
app_cli.add_typer(rep_cli, name="rep")
app_cli.add_typer(mailbox_cli, name="mailbox")
app_cli.add_typer(contacts_cli, name="contacts")
app_cli.add_typer(campaign_cli, name="campaign")
app_cli.add_typer(task_cli, name="task")
register_crm(app_cli, lambda: build_app())

out = Console()
err = Console(stderr=True)


def parse_instant(value: str, field: str, settings: Settings) -> datetime:
    """ISO 8601; a time without an offset is in CADENCE_TIMEZONE."""
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError:
        raise UserError(f"{field}: {value!r} is not an ISO date-time such as 2026-11-23T09:30 or "
                        "2026-11-23T14:30:00Z") from None
    return at if at.tzinfo else at.replace(tzinfo=ZoneInfo(settings.timezone))


def build_app(now: str | None = None) -> App:
    settings = Settings()
    clock: Clock = SystemClock()
    stamp = now or os.environ.get("CADENCE_NOW")
    if stamp:
        clock = FixedClock(parse_instant(stamp, "--now" if now else "CADENCE_NOW", settings))
    return App.from_settings(settings, clock=clock)


def fail(message: str, code: int = 1) -> None:
    err.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


# -- init / demo -------------------------------------------------------------------------------

@app_cli.command()
def init() -> None:
    """Create or upgrade the database (idempotent)."""
    app = build_app()
    out.print(f"database ready: {app.db.engine.url.render_as_string(hide_password=True)}")


@app_cli.command()
def demo(keep: Optional[Path] = typer.Option(None, help="use this folder as CADENCE_HOME instead of a temporary one")) -> None:
    """Run a whole campaign offline on the embedded defaults and print what happened."""
    from cadence.demo import run_demo

    run_demo(out, home=keep)


# -- reps and mailboxes ------------------------------------------------------------------------

@rep_cli.command("add")
def rep_add(email: str = typer.Option(..., "--email"), name: Optional[str] = typer.Option(None, "--name"),
            slack_id: Optional[str] = typer.Option(None, "--slack-id"),
            manager: Optional[str] = typer.Option(None, "--manager"),
            role: str = typer.Option("rep", "--role", help="rep | manager | admin"),
            timezone: Optional[str] = typer.Option(None, "--timezone", help="IANA zone, for digests"),
            digest_schedule: Optional[str] = typer.Option(
                None, "--digest-schedule", help="when a manager's digest goes out, e.g. 'mon 08:00' (the default)")
            ) -> None:
    """Register a sales rep or manager."""
    from cadence.services.directory import add_rep

    rep = add_rep(build_app(), email=email, name=name, slack_id=slack_id, manager=manager, role=role,
                  timezone=timezone, digest_schedule=digest_schedule)
    out.print(f"rep {rep.email} ({rep.role})")


@mailbox_cli.command("add")
def mailbox_add(provider: str = typer.Option(..., "--provider", help="gmail | outlook | maildir"),
                address: str = typer.Option(..., "--address"), owner: str = typer.Option(..., "--owner"),
                refresh_token_file: Optional[Path] = typer.Option(None, "--refresh-token-file"),
                path: Optional[Path] = typer.Option(None, "--path")) -> None:
    """Register a sending mailbox for a rep; credentials are stored encrypted."""
    from cadence.services.directory import add_mailbox

    credentials = None
    if refresh_token_file is not None:
        try:
            token = refresh_token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UserError(f"--refresh-token-file: cannot read {refresh_token_file} ({exc.strerror})") from None
        if not token:
            raise UserError(f"--refresh-token-file: {refresh_token_file} is empty")
        credentials = {"refresh_token": token}
    row = add_mailbox(build_app(), provider=provider, address=address, owner=owner, credentials=credentials,
                      path=str(path) if path else None)
    out.print(f"mailbox {row.address} ({row.provider}) for {owner}" + (f" at {row.path}" if row.path else ""))


@mailbox_cli.command("list")
def mailbox_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Mailboxes with provider, owner, health and today's send count."""
    from cadence.services.directory import list_mailboxes

    rows = list_mailboxes(build_app())
    if as_json:
        return print_json(rows)
    table = Table("address", "provider", "owner", "health", "sent today")
    for r in rows:
        health = r["health"] + (f" ({r['reason']})" if r["reason"] else "")
        table.add_row(r["address"], r["provider"], r["owner"], health, str(r["sent_today"]))
    out.print(table)


@mailbox_cli.command("connect")
def mailbox_connect(provider: str = typer.Argument(..., help="gmail | outlook"),
                    owner: str = typer.Option(..., "--owner"),
                    device_code: bool = typer.Option(False, "--device-code", help="Outlook: sign in on another device"),
                    port: int = typer.Option(0, "--port", help="local port for the OAuth redirect (0: any free one)"),
                    link: bool = typer.Option(False, "--link", help="print a signed link to `cadence serve` instead")
                    ) -> None:
    """Interactive OAuth sign-in (browser or device code) that ends in `mailbox add`."""
    from cadence.connect import connect_mailbox

    connect_mailbox(build_app(), provider, owner=owner, device_code=device_code, port=port, console=out, link=link)


# -- contacts and campaigns --------------------------------------------------------------------

@contacts_cli.command("import")
def contacts_import(file: Optional[Path] = typer.Argument(None), strict: bool = typer.Option(False, "--strict"),
                    encoding: str = typer.Option("utf-8", "--encoding",
                                                 help="the file's text encoding, e.g. cp1252 for Excel on Windows"),
                    salesforce: Optional[str] = typer.Option(None, "--salesforce", help="SOQL over Contact or Lead")
                    ) -> None:
    """Upsert contacts by email; report imported / updated / rejected with line numbers."""
    from cadence.services.imports import import_contacts

    if salesforce is not None or file is None:  # `contacts import --salesforce "SELECT …"`: cadence/commands/crm.py
        from cadence.commands.crm import import_from_salesforce

        return import_from_salesforce(build_app(), salesforce, strict=strict) if salesforce else \
            fail("give a contacts FILE or --salesforce \"SOQL\"")

    report = import_contacts(build_app(), file, strict=strict, encoding=encoding)
    for rejection in report.rejected:
        err.print(f"{file}, {rejection}", markup=False, highlight=False, soft_wrap=True)
    if not report.written:
        fail(f"{file}: {len(report.rejected)} bad row(s); --strict: nothing was written")
    out.print(f"imported {report.imported}, updated {report.updated}, unchanged {report.unchanged}, "
              f"rejected {len(report.rejected)}")
    if report.rejected:
        raise typer.Exit(1)


@campaign_cli.command("import")
def campaign_import(file: Path = typer.Argument(...)) -> None:
    """Create a campaign, or update one that has not been launched; print its name."""
    from cadence.services.imports import campaign_warnings_for, import_campaign

    app = build_app()
    name, _created = import_campaign(app, file)
    for warning in campaign_warnings_for(app, name):
        err.print(f"warning: {file}: {warning}", markup=False, highlight=False, soft_wrap=True)
    out.print(name, markup=False, highlight=False)


@campaign_cli.command("list")
def campaign_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Campaigns with state and headline KPIs."""
    from cadence.services.reporting import list_campaigns

    rows = list_campaigns(build_app())
    if as_json:
        return print_json(rows)
    table = Table("campaign", "state", "to deliver", "sent", "delivered %", "opens %", "clicks %", "replies",
                  "open tasks", "next due")
    for s in rows:
        d = s["delivery"]
        table.add_row(s["campaign"], s["state"], str(s["preparation"]["to_deliver"]), str(d["sent"]),
                      f"{d['delivered_pct']}", f"{d['opens_pct']}", f"{d['clicks_pct']}", str(d["replies"]),
                      str(d["tasks_open"]), s["next_due"] or "-")
    out.print(table)


@app_cli.command()
def enroll(campaign: str = typer.Argument(...), contacts: Optional[Path] = typer.Option(None, "--contacts"),
           emails: Optional[str] = typer.Option(None, "--emails"), everyone: bool = typer.Option(False, "--all"),
           mailbox: str = typer.Option(..., "--mailbox"),
           send_at: Optional[str] = typer.Option(None, "--send-at", help="'YYYY-MM-DD HH:MM' in the contact's zone")) -> None:
    """Add people to a campaign (launch it for them)."""
    from cadence.services.audience import enroll as enroll_people

    report = enroll_people(build_app(), campaign, mailbox=mailbox, contacts_file=contacts,
                           emails=emails.split(",") if emails is not None else None, everyone=everyone,
                           send_at=send_at)
    out.print(f"{report.campaign}: enrolled {report.enrolled}, already enrolled {report.already}")


# -- prepare and send --------------------------------------------------------------------------

@app_cli.command()
def prepare(campaign: str = typer.Argument(...), as_json: bool = typer.Option(False, "--json")) -> None:
    """Compute the target, apply exclusion rules, render every message; print the KPIs."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

    from cadence.services.preparing import PreparationStopped, prepare as run_prepare

    app = build_app()
    try:
        if as_json:
            result = run_prepare(app, campaign)
        else:
            with Progress(TextColumn("preparing"), BarColumn(), TaskProgressColumn(),
                          TextColumn("{task.completed}/{task.total}"), console=err, transient=True) as bar:
                task = bar.add_task("prepare", total=None)
                result = run_prepare(app, campaign, progress=lambda done, total: bar.update(task, completed=done,
                                                                                            total=total))
    except (KeyboardInterrupt, PreparationStopped):
        fail(f"preparation of {campaign!r} stopped; nothing was sent; the campaign is back to draft: "
             "prepare it again", 130)
    kpis = result.kpis()
    if as_json:
        print_json({"campaign": result.campaign, "state": result.state.value, **kpis, "error_messages": result.errors})
    else:
        out.print(f"{result.campaign}: {result.state.value}")
        out.print(f"  targeted   {kpis['targeted']}\n  to deliver {kpis['to_deliver']}\n  to exclude {kpis['to_exclude']}")
        for cause, count in sorted(kpis["exclusions"].items()):
            out.print(f"    {cause}: {count}")
        for error in result.errors:
            err.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
        out.print(f"  {len(result.errors)} error(s)")
    if result.errors:
        raise typer.Exit(1)


@app_cli.command()
def send(campaign: str = typer.Argument(...), at: Optional[str] = typer.Option(None, "--at")) -> None:
    """Start sending now or at a scheduled time."""
    from cadence.services.campaigns import send_campaign

    app = build_app()
    row = send_campaign(app, campaign, parse_instant(at, "--at", app.settings) if at else None)
    when = f" at {row.send_at.isoformat()}" if row.state == "scheduled" else ""
    out.print(f"{row.name}: {row.state}{when}")


def _state_command(verb: str):
    def command(campaign: str = typer.Argument(...)) -> None:
        from cadence.services import campaigns

        row = getattr(campaigns, f"{verb}_campaign")(build_app(), campaign)
        out.print(f"{row.name}: {row.state}")

    command.__doc__ = {"pause": "Pause sending.", "resume": "Resume sending.",
                       "stop": "Stop for good (a preparation in progress is stopped instead)."}[verb]
    return command


for _verb in ("pause", "resume", "stop"):
    app_cli.command(_verb)(_state_command(_verb))


@app_cli.command()
def status(campaign: str = typer.Argument(...), as_json: bool = typer.Option(False, "--json")) -> None:
    """State, preparation KPIs, delivery KPIs, per-step breakdown, next due time."""
    from cadence.services.reporting import campaign_status

    data = campaign_status(build_app(), campaign)
    if as_json:
        return print_json(data)
    p, d = data["preparation"], data["delivery"]
    out.print(f"[bold]{data['campaign']}[/bold]: {data['state']}   next due: {data['next_due'] or '-'}")
    progress = f", preparing {p['progress_pct']}%" if data["state"] == "preparing" else ""
    out.print(f"preparation: targeted {p['targeted']}, to deliver {p['to_deliver']}, to exclude {p['to_exclude']}"
              f"{'' if p['current'] else ' (stale: prepare again)'}{progress}")
    out.print(f"delivery: sent {d['sent']}, delivered {d['delivered']} ({d['delivered_pct']}%), opens {d['opens']} "
              f"({d['opens_pct']}%), clicks {d['clicks']} ({d['clicks_pct']}%), replies {d['replies']}, bounces "
              f"{d['bounces']}, unsubscribes {d['unsubscribes']}, tasks open {d['tasks_open']} / done {d['tasks_done']}")
    if d.get("deferred") or d.get("in_doubt"):
        out.print(f"held back: deferred {d.get('deferred', 0)} (see `cadence logs`), in doubt {d.get('in_doubt', 0)} "
                  "(a person must check the mailbox's Sent folder)")
    table = Table("step", "sent", "delivered", "opens", "clicks", "replies", "open tasks")
    for s in data["steps"]:
        table.add_row(*(str(s[k]) for k in ("position", "sent", "delivered", "opens", "clicks", "replies", "tasks_open")))
    out.print(table)


@app_cli.command()
def logs(campaign: str = typer.Argument(...), errors: bool = typer.Option(False, "--errors")) -> None:
    """The preparation and delivery log, exclusions with their causes."""
    from cadence.services.reporting import campaign_logs

    rows = campaign_logs(build_app(), campaign, errors_only=errors)
    for r in rows:
        who = f" {r['contact']}" if r["contact"] and r["contact"] not in r["detail"] else ""
        sys.stdout.write(f"{r['at']} {r['level']:<7} {r['kind']:<20}{who} {r['detail']}\n")
    error_count = sum(1 for r in rows if r["level"] == "error")
    sys.stdout.write(f"{len(rows)} line(s), {error_count} error(s)\n")


@app_cli.command()
def tasks(rep: Optional[str] = typer.Option(None, "--rep"), as_json: bool = typer.Option(False, "--json")) -> None:
    """Open "I'll send it myself" tasks with their draft links."""
    from cadence.services.tasks import list_tasks

    views = list_tasks(build_app(), rep=rep)
    if as_json:
        return print_json([v.as_dict() for v in views])
    table = Table("id", "rep", "campaign", "step", "contact", "subject", "draft")
    for v in views:
        table.add_row(str(v.id), v.rep, v.campaign, str(v.position), v.contact, v.subject, v.draft_link or "-")
    out.print(table)


@task_cli.command("send")
def task_send(task_id: int = typer.Argument(..., metavar="ID")) -> None:
    """Send the task's draft now."""
    from cadence.services.tasks import send_task

    out.print(send_task(build_app(), task_id))


@task_cli.command("skip")
def task_skip(task_id: int = typer.Argument(..., metavar="ID")) -> None:
    """Skip the task; the sequence moves on."""
    from cadence.services.tasks import skip_task

    out.print(skip_task(build_app(), task_id))


# -- running -----------------------------------------------------------------------------------

@app_cli.command()
def worker(once: bool = typer.Option(False, "--once", help="one full pass, then exit"),
           now: Optional[str] = typer.Option(None, "--now", help="the clock for that pass (ISO)")) -> None:
    """Run due work: dispatch, sync mailboxes, send due digests."""
    app = build_app(now)
    if once:
        from cadence.worker.passes import run_pass

        report = run_pass(app)
        out.print(f"launched {report.launched}, sent {report.sent}, drafted {report.drafted}, deferred "
                  f"{report.deferred}, failed {report.failed}, in doubt {report.in_doubt}, replies {report.replies}, "
                  f"bounces {report.bounces}, tasks done {report.tasks_done}"
                  + (f"; finished: {', '.join(report.finished)}" if report.finished else ""))
        return
    if now:
        fail("--now only goes with --once")
    from cadence.worker.runtime import run_worker

    run_worker(app)


@app_cli.command()
def serve(host: str = typer.Option("127.0.0.1", "--host"), port: int = typer.Option(8080, "--port"),
          no_scheduler: bool = typer.Option(False, "--no-scheduler")) -> None:
    """HTTP server: Slack events, tracking, unsubscribe, OAuth callbacks, /healthz."""
    from cadence.http import serve as run_server

    run_server(build_app(), host=host, port=port, scheduler=not no_scheduler)


@app_cli.command()
def slack() -> None:
    """Run the Slack bot alone over Socket Mode (needs SLACK_APP_TOKEN); `serve` runs it too."""
    app = build_app()
    if not app.settings.slack_app_token:
        raise UserError("SLACK_APP_TOKEN is not set; see docs/slack.md")
    from bot.socket import run_socket_mode

    run_socket_mode(app)


@app_cli.command()
def digest(manager: str = typer.Option(..., "--manager"), post: bool = typer.Option(False, "--post")) -> None:
    """Render a manager's KPI digest; --post delivers it in Slack."""
    from bot.digest import run_digest_command

    run_digest_command(build_app(), manager, post=post, console=out)


from cadence.commands.web import make_web_cli  # noqa: E402
app_cli.add_typer(make_web_cli(build_app), name="web")


def main(argv: list[str] | None = None) -> None:
    """Entry point; `argv` lets tests run the real command line in-process."""
    from sqlalchemy.exc import OperationalError

    try:
        app_cli(args=argv, prog_name="cadence")
    except UserError as exc:
        _exit_with(str(exc))
    except OperationalError as exc:
        _exit_with(f"database error: {str(exc.orig).strip().splitlines()[0]} (CADENCE_DATABASE_URL)")


def _exit_with(message: str, code: int = 1) -> None:
    err.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise SystemExit(code)


if __name__ == "__main__":
    main()
