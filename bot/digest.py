"""Manager KPI digests as Block Kit, a PNG chart and a CLI table; posted in Slack.

The figures are the read side's (`cadence.services.reads.digest`: the emails sent during the week
before the digest, counted by the one KPI definition, `core.kpis.DeliveryKpis`); when digests are
due and the claim that posts each once is `cadence.services.digests`. This module only renders and
posts.
"""
from __future__ import annotations

import io
import logging
from typing import Callable, Sequence
from zoneinfo import ZoneInfo

from slack_sdk import WebClient

from bot import views
from bot.slack import Messenger, is_transient, slack_error, web_client
from cadence.app import App
from cadence.services import digests
from cadence.services.errors import UserError
from cadence.services.reads.digest import Digest, DigestRow, Kpis, build_digest, build_digest_for
from core.digest_schedule import DEFAULT_SCHEDULE, latest_occurrence, parse_schedule

log = logging.getLogger("cadence.slack.digest")

MAX_ROWS = 20


# -- rendering ---------------------------------------------------------------------------------

def _line(kpis: Kpis) -> str:
    return (f"sent {kpis.sent} \u00b7 delivered {kpis.delivered_pct:.1f} % \u00b7 opens {kpis.opens_pct:.1f} % "
            f"\u00b7 clicks {kpis.clicks_pct:.1f} % \u00b7 replies {kpis.replies} \u00b7 "
            f"overdue tasks {kpis.overdue_tasks} \u00b7 bounces {kpis.bounces}")


def _period(digest: Digest) -> str:
    zone = ZoneInfo(digest.zone)
    return (f"{digest.start.astimezone(zone):%a %d %b %H:%M} \u2013 {digest.end.astimezone(zone):%a %d %b %H:%M} "
            f"({digest.zone})")


def render_digest_blocks(digest: Digest) -> dict:
    """The digest as a Slack message ({"text", "blocks"})."""
    blocks = [views.header(f"Weekly digest \u00b7 {views.cut(digest.manager_name, 100)}"),
              views.context(f"Emails sent {_period(digest)}, and what became of them since."),
              views.section(f"*Team*: {_line(digest.total)}"), views.divider(), views.section("*Per rep*")]
    for row in digest.reps[:MAX_ROWS]:
        blocks.append(views.section(f"*{views.esc(row.label)}*\n{_line(row.kpis)}"))
    if len(digest.reps) > MAX_ROWS:
        blocks.append(views.context(f"and {len(digest.reps) - MAX_ROWS} more reps (`cadence digest` shows all)"))
    blocks += [views.divider(), views.section("*Per campaign*")]
    if not digest.campaigns:
        blocks.append(views.context("No email went out from the team's mailboxes in this period."))
    for row in digest.campaigns[:MAX_ROWS]:
        blocks.append(views.section(f"*{views.esc(row.label)}*\n{_line(row.kpis)}"))
    if len(digest.campaigns) > MAX_ROWS:
        blocks.append(views.context(f"and {len(digest.campaigns) - MAX_ROWS} more campaigns"))
    text = f"Weekly digest for {digest.manager_name}: {_line(digest.total)}"
    return views.message(text, blocks)


def render_chart_png(digest: Digest) -> bytes:
    """Delivered, opens and clicks % per rep as a grouped bar chart (matplotlib, Agg, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = list(digest.reps[:MAX_ROWS]) or [DigestRow("(no reps)", Kpis())]
    labels = [f"{views.cut(r.label, 24)}\n{r.kpis.sent} sent, {r.kpis.replies} replies" for r in rows]
    series = (("Delivered %", [r.kpis.delivered_pct for r in rows]), ("Opens %", [r.kpis.opens_pct for r in rows]),
              ("Clicks %", [r.kpis.clicks_pct for r in rows]))
    figure = Figure(figsize=(max(6.0, 1.6 * len(rows) + 2), 4.2), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series):
        axes.bar([x + (i - 1) * width for x in range(len(rows))], values, width, label=name)
    axes.set_xticks(range(len(rows)), labels, fontsize=8)
    axes.set_ylim(0, 100)
    axes.set_ylabel("% of emails")
    axes.set_title(f"{digest.manager_name}'s team \u00b7 {_period(digest)}", fontsize=9)
    axes.legend(fontsize=8, loc="upper right")
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()


DIGEST_COLUMNS = ("sent", "delivered %", "opens %", "clicks %", "replies", "overdue tasks", "bounces")


def digest_rows(digest: Digest) -> list[tuple[str, list[list[str]]]]:
    """The digest as tables of text: [("rep", rows with a last "team" row), ("campaign", rows)]; each
    row is the label then `DIGEST_COLUMNS`."""
    def cells(label: str, k) -> list[str]:
        return [label, str(k.sent), f"{k.delivered_pct:.1f}", f"{k.opens_pct:.1f}", f"{k.clicks_pct:.1f}",
                str(k.replies), str(k.overdue_tasks), str(k.bounces)]

    return [("rep", [cells(row.label, row.kpis) for row in digest.reps] + [cells("team", digest.total)]),
            ("campaign", [cells(row.label, row.kpis) for row in digest.campaigns])]


def print_digest(digest: Digest, console, table: Callable[[Sequence[str], list[list[str]]], None] | None = None
                 ) -> None:
    """Print the digest on `console`; `table(headers, rows)`, when given, prints each table (the CLI's,
    which never cuts a name); else Rich tables."""
    from rich.table import Table

    console.print(f"Weekly digest for {digest.manager_name} <{digest.manager}>: emails sent {_period(digest)}",
                  markup=False, highlight=False)
    for title, rows in digest_rows(digest):
        if table is not None:
            console.print(f"per {title}", markup=False, highlight=False)
            table((title, *DIGEST_COLUMNS), rows)
            continue
        rich_table = Table(title=f"per {title}")
        for column in (title, *DIGEST_COLUMNS):
            rich_table.add_column(column, justify="left" if column == title else "right")
        for row in rows:
            rich_table.add_row(*row, style="bold" if title == "rep" and row is rows[-1] else None)
        console.print(rich_table)


# -- delivery ----------------------------------------------------------------------------------

def post_digest(app: App, messenger: Messenger, manager_id: int, slack_id: str, digest: Digest | None = None) -> str:
    """DM the digest and its chart to `slack_id`; returns the message ts."""
    digest = digest or build_digest_for(app, manager_id)
    ts = messenger.post(slack_id, render_digest_blocks(digest))
    messenger.upload_png(slack_id, render_chart_png(digest), filename=f"digest-{digest.end:%Y-%m-%d}.png",
                         title=f"Weekly digest {digest.end:%Y-%m-%d}")
    return ts


def run_digest_command(app: App, manager: str, post: bool = False, console=None,
                       table: Callable[[Sequence[str], list[list[str]]], None] | None = None) -> Digest:
    """`cadence digest --manager E [--post]`: print the tables (with `table`, see `print_digest`);
    with `post`, DM the digest in Slack."""
    from rich.console import Console

    console = console or Console()
    digest = build_digest(app, manager)
    print_digest(digest, console, table)
    if post:
        messenger = Messenger(app, web_client(app.settings))
        try:
            slack_id = messenger.slack_id_of(digest.manager_id)
            if slack_id is None:
                raise UserError(f"--post: {digest.manager} has no Slack account (link it with `cadence rep add "
                                f"--email {digest.manager} --slack-id U…`)")
            post_digest(app, messenger, digest.manager_id, slack_id, digest)
        except UserError:
            raise
        except Exception as error:
            raise UserError(f"--post: Slack refused the digest: {slack_error(error)}") from None
        console.print(f"posted to Slack for {digest.manager}", markup=False, highlight=False)
    return digest


# -- schedule --------------------------------------------------------------------------------

def send_due_digests(app: App, client: WebClient | None = None) -> int:
    """Post every digest whose scheduled time has come (`cadence.services.digests`); returns how
    many were posted. 0 when Slack is not configured."""
    if client is None:
        if not app.settings.slack_bot_token:
            return 0
        client = web_client(app.settings)
    messenger = Messenger(app, client)

    def post(rep_id: int) -> bool:
        slack_id = messenger.slack_id_of(rep_id)
        if slack_id is None:
            return False
        post_digest(app, messenger, rep_id, slack_id)
        return True

    return digests.send_due_digests(app, post, is_transient, slack_error)


__all__ = ["DEFAULT_SCHEDULE", "Digest", "DigestRow", "Kpis", "build_digest", "build_digest_for", "latest_occurrence",
           "parse_schedule", "post_digest", "print_digest", "render_chart_png", "render_digest_blocks",
           "run_digest_command", "send_due_digests"]
