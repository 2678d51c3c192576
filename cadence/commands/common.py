"""What every command module shares: the two consoles, the App builder, tables, progress, JSON.

Light on purpose: nothing here imports SQLAlchemy, Alembic or a provider client at module level.
"""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Literal, Sequence

import typer

from cadence.services.errors import UserError, date_problem

if TYPE_CHECKING:
    from rich.console import Console

    from cadence.app import App
    from cadence.settings import Settings

Access = Literal["read", "existing", "write", "migrate"]


class _Stream:
    """A Rich console on the current standard output (or error), made afresh for each run of `main`
    (tests swap the streams and the environment between runs). Plain text: no markup, no
    highlighting, no wrapping of a line in the middle of a sentence (`soft_wrap`)."""

    def __init__(self, stderr: bool):
        self._stderr = stderr
        self._console: "Console | None" = None

    def reset(self) -> None:
        self._console = None

    @property
    def console(self) -> "Console":
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=self._stderr, soft_wrap=True, markup=False, highlight=False,
                                    emoji=False)
        return self._console

    def __getattr__(self, name: str):
        return getattr(self.console, name)

    def print(self, *objects, **options) -> None:
        """Console.print; a plain line to a stream that is not a terminal skips loading Rich."""
        stream = sys.stderr if self._stderr else sys.stdout
        if (self._console is None and len(objects) == 1 and isinstance(objects[0], str)
                and set(options) <= {"end"} and not _isatty(stream)):
            stream.write(objects[0] + options.get("end", "\n"))
            return
        self.console.print(*objects, **options)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


out = _Stream(stderr=False)
err = _Stream(stderr=True)


def reset_consoles() -> None:
    out.reset()
    err.reset()


_apps: "list[App] | None" = None  # the Apps built while `cadence.cli.main` runs a command
_owns_process = False  # the command is the whole process (`cadence.cli.main()` without argv)


def begin_command(*, owns_process: bool = False) -> None:
    """`owns_process`: the process ends with this command (`settle_heap` then settles it)."""
    global _apps, _owns_process
    _apps, _owns_process = [], owns_process


def settle_heap() -> None:
    """`cadence.heap.settle()` when the command is the whole process; nothing when it runs
    in-process (`cadence.cli.main(argv)`, as the tests do): frozen objects are never collected
    again, so the caller's objects, and the App the command builds and drops, would leak."""
    if _owns_process:
        from cadence.heap import settle

        settle()


def end_command() -> None:
    """Close the database connections of the Apps the command built (before the process ends, or
    before the next command of a test)."""
    global _apps
    apps, _apps = _apps or [], None
    for app in apps:
        app.db.dispose()


def parse_instant(value: str, field: str, settings: "Settings") -> datetime:
    """ISO 8601; a time without an offset is in CADENCE_TIMEZONE."""
    from zoneinfo import ZoneInfo

    text = value.strip()
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(date_problem(field, text, "an ISO date-time such as 2026-11-23T09:30 or "
                                                  "2026-11-23T14:30:00Z")) from None
    return at if at.tzinfo else at.replace(tzinfo=ZoneInfo(settings.timezone))


def build_app(now: str | None = None, *, access: Access = "write") -> "App":
    """The App for one command.

    `access`: "read" never creates anything (a missing database is one sentence saying where it
    was looked for); "existing" (commands that act on something stored: send, pause, task send …)
    never creates a database either, but brings an old schema up to date; "write" creates the home
    and brings an old schema up to date when the cheap version check says so; "migrate" always runs
    the migrations (init, serve, worker).
    Raises UserError / SettingsError.
    """
    from cadence.settings import load_settings

    settings = load_settings()
    clock = None
    stamp = now or settings.now
    if stamp:
        from core.clock import FixedClock

        clock = FixedClock(parse_instant(stamp, "--now" if now else "CADENCE_NOW", settings))
    where = _where(settings)
    sqlite_path = settings.sqlite_path
    if access in ("read", "existing"):
        if sqlite_path is not None and not sqlite_path.is_file():
            raise UserError(f"no Cadence database at {sqlite_path} ({where}); run `cadence init` "
                            "first, or point CADENCE_HOME or CADENCE_DATABASE_URL at an existing one")
        if sqlite_path is not None and sqlite_path.stat().st_size == 0:
            raise UserError(f"the database ({where}) holds no Cadence schema; run `cadence init`")
    else:
        settings.ensure_home()
        if sqlite_path is not None and not sqlite_path.parent.is_dir():
            raise UserError(f"CADENCE_DATABASE_URL: the folder {sqlite_path.parent} does not exist")
    from cadence.app import App
    from core.clock import SystemClock
    from store.db import Database, known_revisions, schema_version

    db = Database(settings.resolved_database_url)
    if access == "migrate":
        db.upgrade()
    else:
        current = schema_version(db.engine)
        revisions, heads = known_revisions()
        if current not in heads:
            if current is not None and current not in revisions:
                raise UserError(f"the database ({where}) is at schema {current}, newer than this Cadence; "
                                "upgrade Cadence")
            if access == "read" or (access == "existing" and current is None):
                problem = "holds no Cadence schema" if current is None else "has an older schema"
                raise UserError(f"the database ({where}) {problem}; run `cadence init`")
            db.upgrade()
    app = App(settings=settings, db=db, clock=clock or SystemClock())
    if _apps is not None:
        _apps.append(app)
    return app


def _where(settings: "Settings") -> str:
    from cadence.settings import hide_password

    if settings.database_url:
        return f"CADENCE_DATABASE_URL={hide_password(settings.database_url)}"
    return f"CADENCE_HOME={settings.home}"


def fail(message: str, code: int = 1) -> None:
    err.print(f"error: {message}")
    raise typer.Exit(code)


def print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def print_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """A table that never cuts a value. On a terminal wide enough: a Rich table; piped, or on a
    terminal too narrow for the longest row: plain aligned lines, one row per line, whole."""
    from rich.cells import cell_len

    cells = [["-" if value is None else str(value) for value in row] for row in rows]
    widths = [max([cell_len(h)] + [cell_len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    console = out.console
    if console.is_terminal and sum(widths) + 3 * len(widths) + 1 <= console.width:
        from rich.table import Table

        table = Table(*headers)
        for column in table.columns:
            column.overflow, column.no_wrap = "fold", True
        for row in cells:
            table.add_row(*row)
        console.print(table, soft_wrap=False)
        return

    def line(values: Sequence[str]) -> str:
        return "  ".join(v + " " * (w - cell_len(v)) for v, w in zip(values, widths)).rstrip()

    sys.stdout.write(line(list(headers)) + "\n")
    for row in cells:
        sys.stdout.write(line(row) + "\n")
    sys.stdout.flush()


@contextmanager
def progress(label: str, total: int | None = None) -> Iterator[Callable[..., None]]:
    """A Rich progress bar on standard error with counts and time left, only on a terminal.

    Yields `update(done, total=None)`; piped, the bar is silent and `update` does nothing.
    """
    console = err.console
    if not console.is_terminal:
        yield lambda done, total=None: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.text import Text

    class Counts(MofNCompleteColumn):
        """done/total; "counting" while the total is not known yet (never "0/?")."""

        def render(self, task) -> Text:
            return Text("counting", style="progress.download") if task.total is None else super().render(task)

    with Progress(TextColumn(label), BarColumn(), Counts(), TextColumn("left"), TimeRemainingColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task(label, total=total)

        def update(done: int, total: int | None = None) -> None:
            if total is not None:
                bar.update(task, completed=done, total=total)
            else:
                bar.update(task, completed=done)

        yield update


def configure_logging() -> None:
    """Log lines on standard error for the long-running commands (`serve`, `worker`): time, level,
    logger, message; the scheduler's every tick is not news."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for name in ("apscheduler.executors.default", "apscheduler.scheduler"):
        logging.getLogger(name).setLevel(logging.WARNING)


@contextmanager
def working(label: str) -> Iterator[None]:
    """A spinner with the time spent on standard error, only on a terminal (work without counts)."""
    console = err.console
    if not console.is_terminal:
        yield
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn(label), TimeElapsedColumn(), console=console, transient=True) as bar:
        bar.add_task(label, total=None)
        yield
