"""The `cadence` commands, one module per topic, registered in `cadence/cli.py`.

Adding a command group: write `cadence/commands/<topic>.py` holding a `typer.Typer()` (or plain
functions), import only `typer` and `cadence.commands.common` at module level (heavy modules —
SQLAlchemy, Google, Slack, matplotlib — inside the command function, so that `cadence --help`
stays fast), and add one line to `cadence/cli.py`. Build the App with `common.build_app(...)`,
saying whether the command only reads (`access="read"`: never creates a database) or writes.
Print through `common.out` / `common.err` and tables through `common.print_table` (never cuts a
value). Refuse bad input with `cadence.services.errors.UserError("one sentence")`; the entry
point turns it, and anything unexpected, into one line on standard error.
"""
