"""The long-running parts: `worker`, `serve`, `slack`, and `digest`."""
from __future__ import annotations

from typing import Optional

import typer

from cadence.commands.common import build_app, configure_logging, err, fail, out, print_table, settle_heap, working
from cadence.services.errors import UserError


def check_secret_key(app) -> None:
    """Refuse to start when CADENCE_SECRET_KEY decrypts none of the stored credentials; warn for some."""
    from cadence.services.directory import undecryptable_mailboxes

    bad, stored = undecryptable_mailboxes(app)
    if not bad:
        return
    names = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
    sentence = (f"CADENCE_SECRET_KEY: the stored credentials of {names} cannot be decrypted with it; to change "
                "keys, put the new key first and the old one after it, comma-separated")
    if len(bad) == stored:
        raise UserError(sentence)
    err.print(f"warning: {sentence}")


def worker(once: bool = typer.Option(False, "--once", help="one full pass, then exit"),
           now: Optional[str] = typer.Option(None, "--now", help="the clock for that pass (ISO)")) -> None:
    """Run due work: dispatch, sync mailboxes, send due digests."""
    if now and not once:
        fail("--now only goes with --once")
    if not once:  # a stop asked for while starting up (nothing claimed yet) is a clean exit
        import signal

        def leave(_signum, _frame) -> None:
            raise SystemExit(0)

        signal.signal(signal.SIGTERM, leave)
    app = build_app(now, access="migrate")
    check_secret_key(app)
    configure_logging()  # a mailbox that becomes unusable or works again says so in one line, once too
    if once:
        from cadence.worker.passes import run_pass

        with working("worker pass"):
            report = run_pass(app)
        out.print(f"launched {report.launched}, sent {report.sent}, drafted {report.drafted}, deferred "
                  f"{report.deferred}, failed {report.failed}, in doubt {report.in_doubt}, replies {report.replies}, "
                  f"bounces {report.bounces}, tasks done {report.tasks_done}"
                  + (f"; finished: {', '.join(report.finished)}" if report.finished else ""))
        return
    from cadence.worker.runtime import run_worker

    settle_heap()
    run_worker(app)


def serve(host: str = typer.Option("127.0.0.1", "--host", help="address to listen on"),
          port: int = typer.Option(8080, "--port", min=1, max=65535, help="TCP port to listen on (1-65535)"),
          no_scheduler: bool = typer.Option(False, "--no-scheduler", help="serve HTTP only; run no worker loops")
          ) -> None:
    """HTTP server: Slack events, tracking, unsubscribe, OAuth callbacks, /healthz."""
    from cadence.http import serve as run_server

    app = build_app(access="migrate")
    check_secret_key(app)
    check_listen(host, port)  # before the scheduler starts: a server that cannot listen does no work
    configure_logging()
    run_server(app, host=host, port=port, scheduler=not no_scheduler)


def check_listen(host: str, port: int) -> None:
    """UserError naming --host or --port when nothing could listen there (an unknown host, a port in use)."""
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise UserError(f"--host: cannot listen on {host!r} ({getattr(exc, 'strerror', None) or exc})") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server itself does
        try:
            probe.bind(address)
        except OSError as exc:
            raise UserError(f"--port: cannot listen on {host}:{port} ({exc.strerror or exc}); is another server "
                            "using it?") from None


def slack() -> None:
    """Run the Slack bot alone over Socket Mode (needs SLACK_APP_TOKEN); `serve` runs it too."""
    app = build_app(access="existing")
    if not app.settings.slack_app_token:
        raise UserError("SLACK_APP_TOKEN is not set; see docs/slack.md")
    from bot.socket import run_socket_mode

    run_socket_mode(app)


def digest(manager: str = typer.Option(..., "--manager", help="the manager's email"),
           post: bool = typer.Option(False, "--post", help="deliver it in Slack instead of printing it")) -> None:
    """Render a manager's KPI digest; --post delivers it in Slack."""
    from bot.digest import run_digest_command

    run_digest_command(build_app(access="existing" if post else "read"), manager, post=post, console=out.console,
                       table=print_table)


def register(cli: typer.Typer) -> None:
    for command in (worker, serve, slack, digest):
        cli.command()(command)
