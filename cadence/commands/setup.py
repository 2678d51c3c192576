"""`cadence init` and `cadence demo`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cadence.commands.common import build_app, out


def init() -> None:
    """Create or upgrade the database (idempotent)."""
    app = build_app(access="migrate")
    out.print(f"database ready: {app.db.engine.url.render_as_string(hide_password=True)}")


def demo(keep: Optional[Path] = typer.Option(None, "--keep", help="use this folder as CADENCE_HOME instead of a "
                                                                  "temporary one")) -> None:
    """Run a whole campaign offline on the embedded defaults and print what happened."""
    from rich.console import Console

    from cadence.demo import run_demo

    run_demo(Console(soft_wrap=True), home=keep)  # piped: one line per sentence, greppable


def register(cli: typer.Typer) -> None:
    cli.command()(init)
    cli.command()(demo)
