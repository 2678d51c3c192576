"""Contacts, campaigns, enrolment and the campaign's life: import, enroll, prepare, send, pause …"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

import typer

from cadence.commands.common import (build_app, err, fail, out, parse_instant, print_json, print_table, progress,
                                     settle_heap, working)

contacts_cli = typer.Typer(no_args_is_help=True, help="Contacts.")
campaign_cli = typer.Typer(no_args_is_help=True, help="Campaign definitions.")

CAMPAIGN = typer.Argument(..., metavar="CAMPAIGN", help="the campaign's name")
JSON = typer.Option(False, "--json", help="one JSON document instead of text")


@contacts_cli.command("import")
def contacts_import(file: Optional[Path] = typer.Argument(None, help="CSV file with a header row holding `email`"),
                    strict: bool = typer.Option(False, "--strict", help="write nothing if any row is bad"),
                    encoding: str = typer.Option("utf-8", "--encoding",
                                                 help="the file's text encoding, e.g. cp1252 for Excel on Windows"),
                    salesforce: Optional[str] = typer.Option(None, "--salesforce", help="SOQL over Contact or Lead")
                    ) -> None:
    """Upsert contacts by email; report imported / updated / rejected with line numbers."""
    from cadence.services.imports import import_contacts

    if salesforce is not None or file is None:  # `contacts import --salesforce "SELECT …"`: cadence/commands/crm.py
        from cadence.commands.crm import import_from_salesforce

        return import_from_salesforce(build_app(access="existing"), salesforce, strict=strict) if salesforce else \
            fail("give a contacts FILE or --salesforce \"SOQL\"")

    app = build_app()
    settle_heap()
    with progress("importing") as update:
        report = import_contacts(app, file, strict=strict, encoding=encoding, progress=update)
    for rejection in report.rejected:
        err.print(f"{file}, {rejection}")
    if not report.written:
        fail(f"{file}: {len(report.rejected)} bad row(s); --strict: nothing was written")
    out.print(f"imported {report.imported}, updated {report.updated}, unchanged {report.unchanged}, "
              f"rejected {len(report.rejected)}")
    if report.rejected:
        raise typer.Exit(1)


@campaign_cli.command("import")
def campaign_import(file: Path = typer.Argument(..., help="the campaign's YAML file")) -> None:
    """Create a campaign, or update one that has not been launched; print its name."""
    from cadence.services.imports import campaign_warnings_for, import_campaign

    app = build_app()
    name, _created = import_campaign(app, file)
    for warning in campaign_warnings_for(app, name):
        err.print(f"warning: {file}: {warning}")
    out.print(name)


@campaign_cli.command("list")
def campaign_list(as_json: bool = JSON) -> None:
    """Campaigns with state and headline KPIs."""
    from cadence.services.reads.status import list_campaigns

    rows = list_campaigns(build_app(access="read"))
    if as_json:
        return print_json(rows)
    print_table(("campaign", "state", "to deliver", "sent", "delivered %", "opens %", "clicks %", "replies",
                 "open tasks", "next due"),
                [(s["campaign"], s["state"], s["preparation"]["to_deliver"], s["delivery"]["sent"],
                  s["delivery"]["delivered_pct"], s["delivery"]["opens_pct"], s["delivery"]["clicks_pct"],
                  s["delivery"]["replies"], s["delivery"]["tasks_open"], s["next_due"] or "-") for s in rows])


def enroll(campaign: str = CAMPAIGN,
           contacts: Optional[Path] = typer.Option(None, "--contacts", help="CSV file of the people to enroll"),
           emails: Optional[str] = typer.Option(None, "--emails", help="comma-separated email addresses"),
           everyone: bool = typer.Option(False, "--all", help="every contact"),
           mailbox: str = typer.Option(..., "--mailbox", help="the address of the mailbox to send from"),
           send_at: Optional[str] = typer.Option(None, "--send-at", help="'YYYY-MM-DD HH:MM' in the contact's zone")
           ) -> None:
    """Add people to a campaign (launch it for them)."""
    from cadence.services.audience import enroll as enroll_people

    app = build_app(access="existing")
    settle_heap()
    with progress("enrolling") as update:
        report = enroll_people(app, campaign, mailbox=mailbox, contacts_file=contacts,
                               emails=emails.split(",") if emails is not None else None, everyone=everyone,
                               send_at=send_at, progress=update)
    out.print(f"{report.campaign}: enrolled {report.enrolled}, already enrolled {report.already}"
              + (f" ({_some(report.already_emails)})" if report.already_emails else ""))
    if report.to_deliver is not None:
        causes = ", ".join(f"{cause} {n}" for cause, n in sorted(report.exclusions.items(), key=lambda i: -i[1]))
        out.print(f"  prepared at once: to deliver {report.to_deliver}, to exclude {sum(report.exclusions.values())}"
                  + (f" ({causes})" if causes else ""))
    if report.late:
        err.print(f"warning: --send-at has already passed for {report.late} of them where they are; "
                  "their first email goes at the next open time")


def unenroll(campaign: str = CAMPAIGN,
             emails: Optional[str] = typer.Option(None, "--emails", help="comma-separated email addresses"),
             contacts: Optional[Path] = typer.Option(None, "--contacts", help="CSV file of the people to take out")
             ) -> None:
    """End these people's sequences: nothing more is sent or drafted to them; open drafts are withdrawn."""
    from cadence.services.unenroll import unenroll as take_out

    report = take_out(build_app(access="existing"), campaign, emails=emails.split(",") if emails is not None else None,
                      contacts_file=contacts)
    out.print(f"{report.campaign}: unenrolled {report.ended}, drafts withdrawn {report.drafts_withdrawn}"
              + (f", already ended {len(report.already_ended)} ({_some(report.already_ended)})"
                 if report.already_ended else "")
              + (f", not enrolled {len(report.not_enrolled)} ({_some(report.not_enrolled)})"
                 if report.not_enrolled else ""))
    for left in report.drafts_left:
        err.print(f"warning: the draft to {left} could not be withdrawn; delete it in the rep's mailbox")
    if report.in_flight:
        err.print(f"warning: {report.in_flight} email(s) were being sent at this moment and may still go out")


def _some(items: list[str], shown: int = 5) -> str:
    return ", ".join(items[:shown]) + (f" and {len(items) - shown} more" if len(items) > shown else "")


@contextmanager
def _ctrl_c_between_batches() -> Iterator[Callable[[], bool]]:
    """Ctrl-C during a preparation takes effect between two batches, never inside a transaction:
    an interrupted commit could leave SQLite's write lock held by this very process, and the note
    that the preparation stopped could then not be written. A second Ctrl-C interrupts at once."""
    pressed = threading.Event()

    def on_sigint(signum, frame) -> None:
        if pressed.is_set():
            raise KeyboardInterrupt
        pressed.set()

    def interrupted() -> bool:
        if pressed.is_set():
            raise KeyboardInterrupt  # at a safe point: prepare records "stopped (interrupted)"
        return False

    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


def prepare(campaign: str = CAMPAIGN, as_json: bool = JSON) -> None:
    """Compute the target, apply exclusion rules, render every message; print the KPIs."""
    from cadence.services.preparing import PreparationStopped, prepare as run_prepare

    app = build_app(access="existing")
    settle_heap()
    try:
        with progress("preparing") as update, _ctrl_c_between_batches() as interrupted:
            result = run_prepare(app, campaign, progress=None if as_json else update, should_stop=interrupted)
    except (KeyboardInterrupt, PreparationStopped):
        fail(f"preparation of {campaign!r} stopped; nothing was sent; the campaign is back to draft: "
             "prepare it again", 130)
    kpis = result.kpis()
    if as_json:
        print_json({"campaign": result.campaign, "state": result.state.value, **kpis, "error_messages": result.errors})
    else:
        out.print(f"{result.campaign}: {result.state.value}")
        out.print(f"  targeted   {kpis['targeted']}\n  to deliver {kpis['to_deliver']}\n  to exclude {kpis['to_exclude']}")
        for cause, count in sorted(kpis["exclusions"].items(), key=lambda item: (-item[1], item[0])):
            missing = ""
            if cause == "missing_variable" and kpis.get("missing_variables"):
                missing = " (" + ", ".join(f"{name} {n}" for name, n in sorted(
                    kpis["missing_variables"].items(), key=lambda item: (-item[1], item[0]))) + ")"
            out.print(f"    {cause}: {count}{missing}")
        for warning in kpis.get("warnings", []):
            err.print(f"warning: {warning}")
        for error in result.errors:
            err.print(f"error: {error}")
        out.print(f"  {len(result.errors)} error(s)")
    if result.errors:
        raise typer.Exit(1)


def send(campaign: str = CAMPAIGN,
         at: Optional[str] = typer.Option(None, "--at", help="ISO date-time to start at (default: now)")) -> None:
    """Start sending now or at a scheduled time."""
    from cadence.services.campaigns import send_campaign

    app = build_app(access="existing")
    row = send_campaign(app, campaign, parse_instant(at, "--at", app.settings) if at else None)
    when = f" at {row.send_at.isoformat()}" if row.state == "scheduled" else ""
    out.print(f"{row.name}: {row.state}{when}")


def pause(campaign: str = CAMPAIGN) -> None:
    """Pause sending."""
    from cadence.services.campaigns import pause_campaign

    row = pause_campaign(build_app(access="existing"), campaign)
    out.print(f"{row.name}: {row.state}")


def resume(campaign: str = CAMPAIGN) -> None:
    """Resume sending."""
    from cadence.services.campaigns import resume_campaign

    row = resume_campaign(build_app(access="existing"), campaign)
    out.print(f"{row.name}: {row.state}")


def stop(campaign: str = CAMPAIGN,
         yes: bool = typer.Option(False, "--yes", "-y", help="do not ask for confirmation")) -> None:
    """Stop for good (a preparation in progress is stopped instead); asks first on a terminal."""
    import sys

    from cadence.services.campaigns import stop_campaign

    if not yes and sys.stdin.isatty() and err.console.is_terminal:  # a person at a terminal: ask first
        err.print(f"Stop {campaign!r} for good? Nothing more will be sent [y/N]: ", end="")
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            fail("not stopped")
    app = build_app(access="existing")
    with working(f"stopping {campaign}"):
        row = stop_campaign(app, campaign)
    out.print(f"{row.name}: {row.state}")


def register(cli: typer.Typer) -> None:
    cli.add_typer(contacts_cli, name="contacts")
    cli.add_typer(campaign_cli, name="campaign")
    for command in (enroll, unenroll, prepare, send, pause, resume, stop):
        cli.command()(command)
