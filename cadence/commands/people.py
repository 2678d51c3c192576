"""Reps and mailboxes: `cadence rep …`, `cadence mailbox …`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cadence.commands.common import build_app, out, print_json, print_table
from cadence.services.errors import UserError

rep_cli = typer.Typer(no_args_is_help=True, help="Sales reps and managers.")
mailbox_cli = typer.Typer(no_args_is_help=True, help="Sending mailboxes.")

MAILBOX_PROVIDERS = ("gmail", "outlook", "maildir")  # `memory` is the test fake, not for operators


@rep_cli.command("add")
def rep_add(email: str = typer.Option(..., "--email", help="the rep's email address (their identity)"),
            name: Optional[str] = typer.Option(None, "--name", help="display name"),
            slack_id: Optional[str] = typer.Option(None, "--slack-id", help="Slack member ID, e.g. U0123ABCD"),
            manager: Optional[str] = typer.Option(None, "--manager", help="the email of this rep's manager"),
            role: str = typer.Option("rep", "--role", help="rep | manager | admin"),
            timezone: Optional[str] = typer.Option(None, "--timezone", help="IANA zone, for digests"),
            digest_schedule: Optional[str] = typer.Option(
                None, "--digest-schedule", help="when a manager's digest goes out, e.g. 'mon 08:00' (the default)")
            ) -> None:
    """Register a sales rep or manager (an existing one is updated)."""
    from cadence.services.directory import add_rep, rep_exists

    app = build_app()
    existed = rep_exists(app, email)
    rep = add_rep(app, email=email, name=name, slack_id=slack_id, manager=manager, role=role,
                  timezone=timezone, digest_schedule=digest_schedule)
    out.print(f"rep {rep.email} ({rep.role}) {'updated' if existed else 'added'}")


@rep_cli.command("list")
def rep_list(as_json: bool = typer.Option(False, "--json", help="one JSON document instead of a table")) -> None:
    """Reps and managers with role, manager, Slack ID and time zone."""
    from cadence.services.directory import list_reps

    rows = list_reps(build_app(access="read"))
    if as_json:
        return print_json(rows)
    print_table(("email", "name", "role", "manager", "slack id", "timezone", "digest"),
                [(r["email"], r["name"], r["role"], r["manager"], r["slack_id"], r["timezone"], r["digest_schedule"])
                 for r in rows])


@mailbox_cli.command("add")
def mailbox_add(provider: str = typer.Option(..., "--provider", help="gmail | outlook | maildir"),
                address: str = typer.Option(..., "--address", help="the mailbox's email address"),
                owner: str = typer.Option(..., "--owner", help="the email of the rep who sends from it"),
                refresh_token_file: Optional[Path] = typer.Option(
                    None, "--refresh-token-file", help="file holding an OAuth refresh token (Gmail, Outlook)"),
                path: Optional[Path] = typer.Option(None, "--path", help="Maildir folder (default: under CADENCE_HOME)")
                ) -> None:
    """Register a sending mailbox for a rep; its credentials are checked, then stored encrypted."""
    from cadence.services.directory import add_mailbox

    if provider.strip().lower() not in MAILBOX_PROVIDERS:
        raise UserError(f"--provider: {provider!r} is not one of {', '.join(MAILBOX_PROVIDERS)}")
    credentials = None
    if refresh_token_file is not None:
        try:
            token = refresh_token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UserError(f"--refresh-token-file: cannot read {refresh_token_file} ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise UserError(f"--refresh-token-file: {refresh_token_file} is not a text file") from None
        if not token:
            raise UserError(f"--refresh-token-file: {refresh_token_file} is empty")
        credentials = {"refresh_token": token}
    row = add_mailbox(build_app(), provider=provider.strip().lower(), address=address, owner=owner,
                      credentials=credentials, path=str(path) if path else None, check=True)
    out.print(f"mailbox {row.address} ({row.provider}) for {owner}" + (f" at {row.path}" if row.path else ""))


@mailbox_cli.command("list")
def mailbox_list(as_json: bool = typer.Option(False, "--json", help="one JSON document instead of a table")) -> None:
    """Mailboxes with provider, owner, health (and why) and today's send count."""
    from cadence.services.reads.mailboxes import list_mailboxes

    rows = list_mailboxes(build_app(access="read"))
    if as_json:
        return print_json(rows)
    print_table(("address", "provider", "owner", "health", "sent today"),
                [(r["address"], r["provider"], r["owner"],
                  r["health"] + (f" ({r['reason']})" if r["reason"] else ""), r["sent_today"]) for r in rows])


@mailbox_cli.command("connect")
def mailbox_connect(provider: str = typer.Argument(..., help="gmail | outlook"),
                    owner: str = typer.Option(..., "--owner", help="the email of the rep who sends from it"),
                    device_code: bool = typer.Option(False, "--device-code", help="Outlook: sign in on another device"),
                    port: int = typer.Option(0, "--port", min=0, max=65535,
                                             help="local port for the OAuth redirect (0: any free one)"),
                    link: bool = typer.Option(False, "--link", help="print a signed link to `cadence serve` instead")
                    ) -> None:
    """Interactive OAuth sign-in (browser or device code) that ends in `mailbox add`."""
    from cadence.connect import connect_mailbox

    connect_mailbox(build_app(), provider, owner=owner, device_code=device_code, port=port, console=out.console,
                    link=link)


def register(cli: typer.Typer) -> None:
    cli.add_typer(rep_cli, name="rep")
    cli.add_typer(mailbox_cli, name="mailbox")
