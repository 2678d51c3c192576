"""per-day counters of a campaign's sends, opens, clicks and replies (the dashboard's chart)

Revision ID: 0012_campaign_day_counts
Revises: 0011_counted_events_only

Rows of `campaign_counts` named "day:<kind>" (kind: sent, opened, clicked, replied) whose
`position` is the UTC day of the event as days since 1970-01-01: how many such events the
campaign has that day, as a scan grouping its events by `date(at)` would count them. A trigger on
events keeps them in the same transaction as the event (events are only ever inserted; a repeated
open or click within a minute adds to its row's `hits` and is no new event), so drawing the
chart reads a few rows per day instead of every event of the campaign.

SQLite: a row trigger, one row per key (slot 0). PostgreSQL: a statement trigger over the
inserted rows, adding to this connection's own rows (slot = backend pid) like 0010's counters;
`cadence_fold_counts()` folds them as it folds the others.
"""
from alembic import op


revision = "0012_campaign_day_counts"
down_revision = "0011_counted_events_only"
branch_labels = None
depends_on = None

CHARTED = "('sent', 'opened', 'clicked', 'replied')"
# Days since 1970-01-01 of the stored naive-UTC `at` (julianday of 1970-01-01 00:00 is 2440587.5).
SQLITE_DAY = "CAST(julianday(date({at})) - 2440587.5 AS INTEGER)"
PG_DAY = "(CAST({at} AS date) - DATE '1970-01-01')"


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    day = (PG_DAY if postgres else SQLITE_DAY).format(at="at")
    op.execute(
        "INSERT INTO campaign_counts (campaign_id, position, name, slot, n) "
        f"SELECT campaign_id, {day}, 'day:' || kind, 0, count(*) FROM events "
        f"WHERE campaign_id IS NOT NULL AND kind IN {CHARTED} GROUP BY campaign_id, {day}, kind")
    if postgres:
        op.execute(
            "CREATE OR REPLACE FUNCTION cadence_days_events_ins() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n"
            "  INSERT INTO campaign_counts (campaign_id, position, name, slot, n) "
            f"SELECT campaign_id, {PG_DAY.format(at='at')}, 'day:' || kind, pg_backend_pid(), count(*) FROM nt "
            f"WHERE campaign_id IS NOT NULL AND kind IN {CHARTED} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 "
            "ON CONFLICT (campaign_id, position, name, slot) DO UPDATE SET n = campaign_counts.n + excluded.n;\n"
            "  RETURN NULL;\nEND;\n$$")
        op.execute("CREATE TRIGGER cadence_days_events_ins AFTER INSERT ON events REFERENCING NEW TABLE AS nt "
                   "FOR EACH STATEMENT EXECUTE FUNCTION cadence_days_events_ins()")
    else:
        op.execute(
            "CREATE TRIGGER cadence_days_events_ins AFTER INSERT ON events "
            f"WHEN new.campaign_id IS NOT NULL AND new.kind IN {CHARTED} BEGIN "
            "INSERT INTO campaign_counts (campaign_id, position, name, slot, n) "
            f"VALUES (new.campaign_id, {SQLITE_DAY.format(at='new.at')}, 'day:' || new.kind, 0, 1) "
            "ON CONFLICT (campaign_id, position, name, slot) DO UPDATE SET n = n + excluded.n; END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS cadence_days_events_ins ON events")
        op.execute("DROP FUNCTION IF EXISTS cadence_days_events_ins()")
    else:
        op.execute("DROP TRIGGER IF EXISTS cadence_days_events_ins")
    op.execute("DELETE FROM campaign_counts WHERE name LIKE 'day:%'")
