"""`cadence web …`: the web app's sign-in links (the server itself is `cadence serve`)."""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Callable

import typer

if TYPE_CHECKING:  # `cadence --help` loads no database code
    from cadence.app import App


def make_web_cli(build_app: Callable[..., "App"]) -> typer.Typer:
    """The `web` command group; `build_app` is the CLI's (settings, CADENCE_NOW clock)."""
    web_cli = typer.Typer(no_args_is_help=True, help="The web app (served by `cadence serve`).")

    @web_cli.command("link")
    def web_link(email: str = typer.Option(..., "--email", help="the rep, manager or admin signing in"),
                 minutes: int = typer.Option(15, "--minutes", help="how long the link stays valid (single use)")
                 ) -> None:
        """Print a one-time sign-in link to the web app on standard output (valid 15 minutes, single use)."""
        from cadence.services.signin import create_link

        sys.stdout.write(create_link(build_app(access="existing"), email, minutes) + "\n")

    return web_cli
