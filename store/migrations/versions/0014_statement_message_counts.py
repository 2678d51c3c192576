"""PostgreSQL: a message's state changes are counted once per UPDATE statement, not once per row

Revision ID: 0014_statement_message_counts
Revises: 0013_contacts_company

0010_campaign_counts counted a message's state change with a row trigger: every sent message
(scheduled -> sending -> sent, and its next step planned -> scheduled) ran three plpgsql calls of
two to five statements each, about 0.12 ms of the database's CPU per message sent. The worker
changes the states of a whole claim in one statement each, so a statement trigger over the
UPDATE's old and new rows (transition tables, joined by id) adds the same deltas for the batch
in two set statements, in key order, to this connection's counter rows (slot = backend pid), as
0010's insert and delete triggers do. The figures are the same: "msg:<state>" -1/+1 per step,
"deferred" +-1 for a deferred message entering or leaving `scheduled`, and "delivered" moving
when an enrollment's count of delivered messages leaves or reaches zero (the net change of a
statement, which is where the row by row changes end).

PostgreSQL refuses transition tables on a trigger limited to some columns (UPDATE OF state), so
this one runs for every UPDATE of messages and finds the rows whose state changed itself. SQLite
keeps 0010's row trigger (one writer at a time; no transition tables).
"""
import importlib

from alembic import op


revision = "0014_statement_message_counts"
down_revision = "0013_contacts_company"
branch_labels = None
depends_on = None

# The updated rows whose state changed: o = before, n = after (an UPDATE never changes an id).
CHANGED = "FROM ot o JOIN nt n ON n.id = o.id WHERE o.state IS DISTINCT FROM n.state"


def _counts():
    """0010's module: its helpers build the upserts, and its row trigger is what downgrade restores."""
    return importlib.import_module("store.migrations.versions.0010_campaign_counts")


def statement_function() -> str:
    counts = _counts()
    return counts._pg_function("cadence_counts_messages_upd", [
        counts._pg_bump(
            f"SELECT o.campaign_id, o.position, 'msg:' || o.state AS name, -1 AS d {CHANGED} "
            f"UNION ALL SELECT n.campaign_id, n.position, 'msg:' || n.state, 1 {CHANGED} "
            "UNION ALL SELECT n.campaign_id, 0, 'deferred', CASE WHEN n.state = 'scheduled' THEN 1 ELSE -1 END "
            f"{CHANGED} AND (n.state = 'scheduled' OR o.state = 'scheduled') AND {counts._pg_deferred('n')}"),
        counts._pg_delivered(
            f"SELECT n.campaign_id, n.enrollment_id, CASE WHEN n.state = 'sent' THEN 1 ELSE -1 END AS d {CHANGED} "
            f"AND (n.state = 'sent' OR o.state = 'sent') AND {counts._pg_not_bounced('n')}"),
    ])


def _row_trigger() -> list[str]:
    """0010's row trigger on messages' state, exactly as 0010 made it."""
    made = [s for s in _counts().postgresql_triggers() if "cadence_counts_messages_upd" in s]
    assert len(made) == 2, "0010's messages update trigger is not the one this migration replaces"
    return made


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS cadence_counts_messages_upd ON messages")
    op.execute(statement_function())
    op.execute("CREATE TRIGGER cadence_counts_messages_upd AFTER UPDATE ON messages "
               "REFERENCING OLD TABLE AS ot NEW TABLE AS nt "
               "FOR EACH STATEMENT EXECUTE FUNCTION cadence_counts_messages_upd()")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS cadence_counts_messages_upd ON messages")
    for statement in _row_trigger():
        op.execute(statement)
