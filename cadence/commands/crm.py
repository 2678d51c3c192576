"""`cadence crm connect salesforce`, `cadence crm status` and `contacts import --salesforce`."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import typer

from cadence.commands.common import err, out
from cadence.services.errors import UserError

if TYPE_CHECKING:  # `cadence --help` loads no database code
    from cadence.app import App

crm_cli = typer.Typer(no_args_is_help=True, help="CRM sync (Salesforce): connect, status.")
_builder: list[Callable[..., App]] = []


def register(parent: typer.Typer, build_app: Callable[..., App]) -> None:
    """Add `cadence crm …` to the command line; `build_app` makes the App as every command does."""
    _builder[:] = [build_app]
    parent.add_typer(crm_cli, name="crm")


def _app(access: str = "existing") -> App:
    """The App; never a new database (`crm status` reads, `crm connect` needs the owner stored)."""
    return _builder[0](access=access)


@crm_cli.command("connect")
def crm_connect(provider: str = typer.Argument(..., help="salesforce"),
                owner: str = typer.Option(..., "--owner", help="the Cadence rep or admin connecting the org"),
                refresh_token_file: Optional[Path] = typer.Option(None, "--refresh-token-file", help="file holding the org's OAuth refresh token"),
                link: bool = typer.Option(False, "--link", help="print a signed, single-use link to `cadence serve`")
                ) -> None:
    """Connect the team's Salesforce org (refresh token stored encrypted)."""
    from cadence.connect import connect_link
    from cadence.services.crm import connect_with_refresh_token, require_app_settings
    from cadence.services.directory import find_rep

    if provider.lower() != "salesforce":
        raise UserError(f"provider: {provider!r} is not supported (only salesforce)")
    if link == (refresh_token_file is not None):
        raise UserError("give exactly one of --refresh-token-file F and --link")
    app = _app()
    if link:
        require_app_settings(app)
        with app.db.session() as session:
            owner = find_rep(session, owner).email
        url = connect_link(app, "salesforce", owner)
        out.print("Open this link (valid for an hour, once, in the browser that will sign in) while "
                  "`cadence serve` runs:", markup=False)
        out.print(url, soft_wrap=True, markup=False, highlight=False)
        return
    try:
        token = refresh_token_file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--refresh-token-file: cannot read {refresh_token_file} "
                        f"({getattr(exc, 'strerror', None) or exc})") from None
    if not token:
        raise UserError(f"--refresh-token-file: {refresh_token_file} is empty")
    row = connect_with_refresh_token(app, owner, token)
    out.print(f"salesforce connected: {row.instance_url} (user {row.user_id})", markup=False, highlight=False)


@crm_cli.command("status")
def crm_status_command(as_json: bool = typer.Option(False, "--json", help="one JSON document instead of text")) -> None:
    """The CRM connection, its health, what waits to be synced and who has no Contact or Lead."""
    from cadence.services.crm import crm_status

    data = crm_status(_app("read"))
    if as_json:
        import json
        import sys

        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    print_line = lambda text: out.print(text, markup=False, highlight=False, soft_wrap=True)  # noqa: E731
    print_line(f"salesforce: {data['health']}" + (f" ({data['instance_url']})" if data["instance_url"] else ""))
    if data["reason"]:
        print_line(f"  {data['reason']}")
    if data["owner"]:
        print_line(f"  connected by {data['owner']} as Salesforce user {data['salesforce_user']}")
    print_line(f"  last synced: {data['last_synced_at'] or 'never'}"
               + (f"; last error: {data['last_error']}" if data["last_error"] else ""))
    if data["throttled_until"]:
        print_line(f"  waiting for the API limit until {data['throttled_until']}")
    if data["api_usage"]:
        print_line(f"  API requests (24 h): {data['api_usage']['used']} of {data['api_usage']['limit']}")
    backlog = data["backlog"]
    print_line(f"  waiting to sync: {backlog['total']} (pending {backlog['pending']}, in doubt {backlog['in_doubt']}); "
               f"written: {data['written']}; failed: {len(data['failed'])}")
    for failure in data["failed"]:
        print_line(f"  failed: {failure['email']}: {failure['subject']}: {failure['error']}")
    if data["unmatched"]:  # plain lines: an address is never cut, whatever the terminal's width
        print_line(f"  unmatched (no Contact or Lead with this email, nothing written): {len(data['unmatched'])}")
        for row in data["unmatched"]:
            print_line(f"    {row['email']} ({row['events']} event{'s' if row['events'] != 1 else ''})")


def import_from_salesforce(app: App, soql: str, *, strict: bool) -> None:
    """The `--salesforce` half of `cadence contacts import`: the same report as a file."""
    from cadence.services.crm_import import import_from_salesforce as run_import

    result = run_import(app, soql, strict=strict)
    report = result.report
    for rejection in report.rejected:
        err.print(f"salesforce {result.object} {result.where(rejection.line)}: {rejection.field}: {rejection.message}",
                  markup=False, highlight=False, soft_wrap=True)
    if not report.written:
        err.print(f"error: salesforce: {len(report.rejected)} bad record(s); --strict: nothing was written",
                  markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    out.print(f"imported {report.imported}, updated {report.updated}, unchanged {report.unchanged}, "
              f"rejected {len(report.rejected)}")
    if report.rejected:
        raise typer.Exit(1)
