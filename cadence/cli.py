"""The `cadence` command line (see the interface page): the root, its command modules, and the one
error boundary that turns every failure into one sentence on standard error.

Commands live in `cadence/commands/<topic>.py` (see that package's docstring); each module is
registered in `_build` with one line. Nothing here imports SQLAlchemy or a provider client, and
`cadence --help` imports not even Typer once its text is cached (see `cadence.help_cache`), so
that it starts about as fast as Python itself.
"""
from __future__ import annotations

import sys

_ROOT = None
_KEPT = ("out", "err", "fail", "print_json", "parse_instant", "build_app")


def _build():
    """The Typer root with every command group registered (built once, on first use)."""
    global _ROOT
    if _ROOT is None:
        import typer

        from cadence.commands import campaigns, common, crm, people, reading, running, setup, web

        root = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                           rich_markup_mode=None,
                           help="Cadence: multi-day email campaigns, rep tasks as drafts, a Slack bot.")
        setup.register(root)
        people.register(root)
        campaigns.register(root)
        reading.register(root)
        running.register(root)
        crm.register(root, common.build_app)
        root.add_typer(web.make_web_cli(common.build_app), name="web")
        _ROOT = root
    return _ROOT


def __getattr__(name: str):
    # `app_cli`, and names kept for code that imported them from here, built on first use.
    if name == "app_cli":
        return _build()
    if name in _KEPT:
        from cadence.commands import common

        return getattr(common, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str] | None = None) -> None:
    """Entry point; `argv` lets tests run the real command line in-process. Exits with the
    command's status: 0, 1 for a refusal, 2 for a usage error, 130 when interrupted."""
    from cadence import help_cache

    args = sys.argv[1:] if argv is None else list(argv)
    if args == ["--help"] and help_cache.show():
        raise SystemExit(0)
    from cadence.commands import common

    common.reset_consoles()
    common.begin_command(owns_process=argv is None)
    try:
        code = _run(args) if args != ["--help"] else help_cache.capture(lambda: _run(args))
    except SystemExit:
        raise
    except BaseException as exc:  # the error boundary: one sentence, never a traceback
        code = _report(exc)
    finally:
        common.end_command()
    if argv is None:
        # The process ends here: what the command loaded (Typer, pydantic, SQLAlchemy …) needs no
        # last sweep of the cyclic collector, which would cost a short command like `status` a
        # fifth of its CPU; the databases were closed by `end_command`, atexit handlers still run.
        import gc

        gc.freeze()
    raise SystemExit(code)


def _run(argv: list[str] | None) -> int:
    import typer

    from cadence.commands import common

    command = typer.main.get_command(_build())
    try:
        result = command.main(args=argv, prog_name="cadence", standalone_mode=False)
    except typer.Abort:
        common.err.print("error: interrupted")
        return 130
    except Exception as exc:
        exit_code, ctx = getattr(exc, "exit_code", None), getattr(exc, "ctx", None)
        if not (isinstance(exit_code, int) and callable(getattr(exc, "format_message", None))):
            raise  # not the parser's own refusal: the error boundary in `main` reports it
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:  # `cadence rep`: that group's help
            sys.stdout.write(ctx.get_help() + "\n")
            return 0
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None and exit_code == 2 else ""
        common.err.print(f"error: {exc.format_message()}{hint}")
        return exit_code
    return result if isinstance(result, int) else 0


def _report(exc: BaseException) -> int:
    from cadence.commands import common
    from cadence.settings import debug_requested

    if debug_requested():
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, KeyboardInterrupt):
        common.err.print("error: interrupted")
        return 130
    common.err.print(f"error: {describe(exc)}")
    return 1


def describe(exc: BaseException) -> str:
    """One sentence for any failure; unexpected ones name their type and point at CADENCE_DEBUG."""
    from cadence.services.errors import UserError

    if isinstance(exc, UserError):
        return str(exc)
    name = type(exc).__name__
    if name == "CredentialsError":
        return str(exc)
    sqlalchemy = sys.modules.get("sqlalchemy.exc")
    if sqlalchemy is not None and isinstance(exc, sqlalchemy.DBAPIError):
        first = (str(exc.orig).strip().splitlines() or [name])[0]
        return f"database error: {first} (CADENCE_DATABASE_URL)"
    if sqlalchemy is not None and isinstance(exc, sqlalchemy.ArgumentError):
        return f"CADENCE_DATABASE_URL: {exc}"
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    text = " ".join(str(exc).split()) or "no details"
    return f"unexpected {name}: {text} (set CADENCE_DEBUG=1 for the traceback)"


if __name__ == "__main__":
    main()
