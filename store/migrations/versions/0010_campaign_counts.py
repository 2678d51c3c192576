"""campaign counters kept by the database in the transaction of every change they count

Revision ID: 0010_campaign_counts
Revises: 0009_mailbox_health

`campaign_counts` holds, per campaign, step (`position`, 0 for campaign-wide figures) and name,
the numbers `cadence status` shows; triggers on messages, tasks and events change them in the
same transaction as the rows they count, whichever code path (ORM or bulk statement) writes them.
`count_marks` remembers what was counted once: the first open/click/reply/bounce of a message
("m:<kind>"), of a contact in a campaign ("c:<kind>"), a message's first deferral ("m:deferred"),
and per enrollment how many of its messages are delivered ("delivered", n = sent and not
bounced).

Names: "msg:<message state>" and "task:<task state>" per step; "ev:<kind>" per step = distinct
messages with an opened/clicked/replied/bounced event; "who:<kind>" (position 0) = distinct
contacts with that event; "delivered" (position 0) = enrollments with a delivered message;
"deferred" (position 0) = scheduled messages that were deferred at least once.

SQLite has one writer at a time: one row per key (slot 0), row triggers. PostgreSQL: statement
triggers over transition tables for inserts and deletes (a bulk insert is one trigger run), row
triggers for updates that change a state (the others never run one); each connection adds to
rows of its own (slot = its backend pid), so concurrent workers never wait on each other's
counters and never deadlock on them;
`cadence_fold_counts()` folds those rows into slot 0 (the worker's housekeeping calls it).
"""
from alembic import op
import sqlalchemy as sa


revision = "0010_campaign_counts"
down_revision = "0009_mailbox_health"
branch_labels = None
depends_on = None

STEP_KINDS = "('opened', 'clicked', 'replied', 'bounced')"
CONTACT_KINDS = "('opened', 'clicked', 'replied', 'bounced', 'unsubscribed', 'soft_bounced')"


def upgrade() -> None:
    op.create_table(
        "campaign_counts",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("n", sa.BigInteger(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("campaign_id", "position", "name", "slot", name="pk_campaign_counts"),
    )
    op.create_table(
        "count_marks",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("ref", sa.Integer(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False, server_default="1"),
        sa.PrimaryKeyConstraint("campaign_id", "kind", "ref", name="pk_count_marks"),
    )
    # `status`'s next due time without reading every scheduled message of the campaign.
    op.create_index("ix_messages_campaign_due", "messages", ["campaign_id", "state", "due_at"])
    backfill()
    if op.get_bind().dialect.name == "postgresql":
        for statement in postgresql_triggers():
            op.execute(statement)
    else:
        for statement in sqlite_triggers():
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, ops in (("messages", ("ins", "upd", "del")), ("tasks", ("ins", "upd", "del")), ("events", ("ins",))):
            for what in ops:
                op.execute(f"DROP TRIGGER IF EXISTS cadence_counts_{table}_{what} ON {table}")
                op.execute(f"DROP FUNCTION IF EXISTS cadence_counts_{table}_{what}()")
        op.execute("DROP FUNCTION IF EXISTS cadence_fold_counts()")
    else:
        for name in ("messages_ins", "messages_upd", "messages_del", "tasks_ins", "tasks_upd", "tasks_del",
                     "events_ins"):
            op.execute(f"DROP TRIGGER IF EXISTS cadence_counts_{name}")
    op.drop_index("ix_messages_campaign_due", table_name="messages")
    op.drop_table("count_marks")
    op.drop_table("campaign_counts")


def backfill() -> None:
    """Counters and marks of the data already stored (the same definitions the triggers keep)."""
    op.execute(
        "INSERT INTO campaign_counts (campaign_id, position, name, slot, n) "
        "SELECT campaign_id, position, 'msg:' || state, 0, count(*) FROM messages GROUP BY campaign_id, position, state")
    op.execute(
        "INSERT INTO campaign_counts (campaign_id, position, name, slot, n) "
        "SELECT m.campaign_id, m.position, 'task:' || t.state, 0, count(*) FROM tasks t "
        "JOIN messages m ON m.id = t.message_id GROUP BY m.campaign_id, m.position, t.state")
    op.execute(
        "INSERT INTO count_marks (campaign_id, kind, ref, n) "
        "SELECT DISTINCT e.campaign_id, 'm:' || e.kind, e.message_id, 1 FROM events e "
        "JOIN messages m ON m.id = e.message_id AND m.enrollment_id = e.enrollment_id "
        f"WHERE e.campaign_id IS NOT NULL AND e.kind IN {STEP_KINDS}")
    op.execute(
        "INSERT INTO campaign_counts (campaign_id, position, name, slot, n) "
        "SELECT k.campaign_id, m.position, 'ev:' || substr(k.kind, 3), 0, count(*) FROM count_marks k "
        "JOIN messages m ON m.id = k.ref GROUP BY k.campaign_id, m.position, k.kind")
    op.execute(
        "INSERT INTO count_marks (campaign_id, kind, ref, n) "
        "SELECT DISTINCT campaign_id, 'c:' || kind, contact_id, 1 FROM events "
        f"WHERE campaign_id IS NOT NULL AND contact_id IS NOT NULL AND kind IN {CONTACT_KINDS}")
    op.execute(
        "INSERT INTO campaign_counts (campaign_id, position, name, slot, n) "
        "SELECT campaign_id, 0, 'who:' || substr(kind, 3), 0, count(*) FROM count_marks "
        "WHERE kind LIKE 'c:%' GROUP BY campaign_id, kind")
    op.execute(
        "INSERT INTO count_marks (campaign_id, kind, ref, n) "
        "SELECT DISTINCT e.campaign_id, 'm:deferred', e.message_id, 1 FROM events e "
        "JOIN messages m ON m.id = e.message_id WHERE e.campaign_id IS NOT NULL AND e.kind = 'deferred'")
    op.execute(
        "INSERT INTO campaign_counts (campaign_id, position, name, slot, n) "
        "SELECT m.campaign_id, 0, 'deferred', 0, count(*) FROM count_marks k JOIN messages m ON m.id = k.ref "
        "WHERE k.kind = 'm:deferred' AND m.state = 'scheduled' GROUP BY m.campaign_id")
    op.execute(
        "INSERT INTO count_marks (campaign_id, kind, ref, n) "
        "SELECT m.campaign_id, 'delivered', m.enrollment_id, count(*) FROM messages m WHERE m.state = 'sent' "
        "AND NOT EXISTS (SELECT 1 FROM count_marks b WHERE b.campaign_id = m.campaign_id AND b.kind = 'm:bounced' "
        "AND b.ref = m.id) GROUP BY m.campaign_id, m.enrollment_id")
    op.execute(
        "INSERT INTO campaign_counts (campaign_id, position, name, slot, n) "
        "SELECT campaign_id, 0, 'delivered', 0, count(*) FROM count_marks WHERE kind = 'delivered' AND n > 0 "
        "GROUP BY campaign_id")


# -- SQLite: row triggers, one row per key -------------------------------------------------------

def _bump(campaign: str, position: str, name: str, delta: str, where: str = "1") -> str:
    return (f"INSERT INTO campaign_counts (campaign_id, position, name, slot, n) "
            f"SELECT {campaign}, {position}, {name}, 0, {delta} WHERE {where} "
            f"ON CONFLICT (campaign_id, position, name, slot) DO UPDATE SET n = n + excluded.n;")


def _delivered(row: str, sign: int, where: str) -> str:
    """Add `sign` to the enrollment's delivered messages when `where`; the campaign's count moves
    when that number leaves or reaches zero."""
    key = (f"campaign_id = {row}.campaign_id AND kind = 'delivered' AND ref = {row}.enrollment_id")
    change = (f"INSERT INTO count_marks (campaign_id, kind, ref, n) SELECT {row}.campaign_id, 'delivered', "
              f"{row}.enrollment_id, {sign} WHERE {where} "
              f"ON CONFLICT (campaign_id, kind, ref) DO UPDATE SET n = n + excluded.n;")
    reached = "1" if sign > 0 else "0"
    return change + _bump(f"{row}.campaign_id", "0", "'delivered'", str(sign),
                          f"{where} AND (SELECT n FROM count_marks WHERE {key}) = {reached}")


def _not_bounced(row: str) -> str:
    return (f"NOT EXISTS (SELECT 1 FROM count_marks WHERE campaign_id = {row}.campaign_id AND kind = 'm:bounced' "
            f"AND ref = {row}.id)")


def _deferred(row: str) -> str:
    return (f"EXISTS (SELECT 1 FROM count_marks WHERE campaign_id = {row}.campaign_id AND kind = 'm:deferred' "
            f"AND ref = {row}.id)")


def sqlite_triggers() -> list[str]:
    task_of = "(SELECT {what} FROM messages WHERE id = {row}.message_id)"

    def task_bump(row: str, delta: str) -> str:
        return _bump(task_of.format(what="campaign_id", row=row), task_of.format(what="position", row=row),
                     f"'task:' || {row}.state", delta,
                     f"EXISTS (SELECT 1 FROM messages WHERE id = {row}.message_id)")

    step_mark = (f"new.campaign_id IS NOT NULL AND new.kind IN {STEP_KINDS} AND EXISTS (SELECT 1 FROM messages "
                 "WHERE id = new.message_id AND enrollment_id = new.enrollment_id)")
    step_first = (f"{step_mark} AND NOT EXISTS (SELECT 1 FROM count_marks WHERE campaign_id = new.campaign_id "
                  "AND kind = 'm:' || new.kind AND ref = new.message_id)")
    bounce_first = (f"{step_first} AND new.kind = 'bounced' AND "
                    "(SELECT state FROM messages WHERE id = new.message_id) = 'sent'")
    bounced_message = "(SELECT campaign_id, enrollment_id FROM messages WHERE id = new.message_id)"
    contact_first = (f"new.campaign_id IS NOT NULL AND new.contact_id IS NOT NULL AND new.kind IN {CONTACT_KINDS} "
                     "AND NOT EXISTS (SELECT 1 FROM count_marks WHERE campaign_id = new.campaign_id "
                     "AND kind = 'c:' || new.kind AND ref = new.contact_id)")
    deferred_first = ("new.campaign_id IS NOT NULL AND new.kind = 'deferred' AND new.message_id IS NOT NULL "
                      "AND NOT EXISTS (SELECT 1 FROM count_marks WHERE campaign_id = new.campaign_id "
                      "AND kind = 'm:deferred' AND ref = new.message_id)")
    return [
        "CREATE TRIGGER cadence_counts_messages_ins AFTER INSERT ON messages BEGIN "
        + _bump("new.campaign_id", "new.position", "'msg:' || new.state", "1")
        + _delivered("new", 1, f"new.state = 'sent' AND {_not_bounced('new')}")
        + " END",
        "CREATE TRIGGER cadence_counts_messages_upd AFTER UPDATE OF state ON messages "
        "WHEN old.state IS NOT new.state BEGIN "
        + _bump("old.campaign_id", "old.position", "'msg:' || old.state", "-1")
        + _bump("new.campaign_id", "new.position", "'msg:' || new.state", "1")
        + _delivered("new", 1, f"new.state = 'sent' AND {_not_bounced('new')}")
        + _delivered("old", -1, f"old.state = 'sent' AND {_not_bounced('old')}")
        + _bump("new.campaign_id", "0", "'deferred'", "1", f"new.state = 'scheduled' AND {_deferred('new')}")
        + _bump("old.campaign_id", "0", "'deferred'", "-1", f"old.state = 'scheduled' AND {_deferred('old')}")
        + " END",
        "CREATE TRIGGER cadence_counts_messages_del AFTER DELETE ON messages BEGIN "
        + _bump("old.campaign_id", "old.position", "'msg:' || old.state", "-1")
        + _delivered("old", -1, f"old.state = 'sent' AND {_not_bounced('old')}")
        + _bump("old.campaign_id", "0", "'deferred'", "-1", f"old.state = 'scheduled' AND {_deferred('old')}")
        + " END",
        "CREATE TRIGGER cadence_counts_tasks_ins AFTER INSERT ON tasks BEGIN " + task_bump("new", "1") + " END",
        "CREATE TRIGGER cadence_counts_tasks_upd AFTER UPDATE OF state ON tasks WHEN old.state IS NOT new.state "
        "BEGIN " + task_bump("old", "-1") + task_bump("new", "1") + " END",
        "CREATE TRIGGER cadence_counts_tasks_del AFTER DELETE ON tasks BEGIN " + task_bump("old", "-1") + " END",
        "CREATE TRIGGER cadence_counts_events_ins AFTER INSERT ON events WHEN new.campaign_id IS NOT NULL BEGIN "
        # A message's first bounce takes it out of the delivered ones (before its mark is written).
        "INSERT INTO count_marks (campaign_id, kind, ref, n) SELECT m.campaign_id, 'delivered', m.enrollment_id, -1 "
        f"FROM {bounced_message} AS m WHERE {bounce_first} "
        "ON CONFLICT (campaign_id, kind, ref) DO UPDATE SET n = n + excluded.n;"
        "INSERT INTO campaign_counts (campaign_id, position, name, slot, n) SELECT m.campaign_id, 0, 'delivered', 0, -1 "
        f"FROM {bounced_message} AS m WHERE {bounce_first} AND (SELECT n FROM count_marks WHERE "
        "campaign_id = m.campaign_id AND kind = 'delivered' AND ref = m.enrollment_id) = 0 "
        "ON CONFLICT (campaign_id, position, name, slot) DO UPDATE SET n = n + excluded.n;"
        + _bump("new.campaign_id", "(SELECT position FROM messages WHERE id = new.message_id)",
                "'ev:' || new.kind", "1", step_first)
        + "INSERT OR IGNORE INTO count_marks (campaign_id, kind, ref, n) "
        f"SELECT new.campaign_id, 'm:' || new.kind, new.message_id, 1 WHERE {step_mark};"
        + _bump("new.campaign_id", "0", "'who:' || new.kind", "1", contact_first)
        + "INSERT OR IGNORE INTO count_marks (campaign_id, kind, ref, n) "
        f"SELECT new.campaign_id, 'c:' || new.kind, new.contact_id, 1 WHERE new.contact_id IS NOT NULL "
        f"AND new.kind IN {CONTACT_KINDS};"
        + _bump("new.campaign_id", "0", "'deferred'", "1",
                f"{deferred_first} AND (SELECT state FROM messages WHERE id = new.message_id) = 'scheduled'")
        + "INSERT OR IGNORE INTO count_marks (campaign_id, kind, ref, n) "
        "SELECT new.campaign_id, 'm:deferred', new.message_id, 1 WHERE new.kind = 'deferred' "
        "AND new.message_id IS NOT NULL;"
        + " END",
    ]


# -- PostgreSQL: statement triggers over transition tables, one row per key and connection ---------

def _pg_bump(source: str) -> str:
    """Add `source`'s (campaign_id, position, name, d) rows to this connection's counters, in key order."""
    return ("INSERT INTO campaign_counts (campaign_id, position, name, slot, n) "
            f"SELECT campaign_id, position, name, pg_backend_pid(), sum(d) FROM ({source}) AS deltas "
            "GROUP BY campaign_id, position, name HAVING sum(d) <> 0 ORDER BY campaign_id, position, name "
            "ON CONFLICT (campaign_id, position, name, slot) DO UPDATE SET n = campaign_counts.n + excluded.n")


def _pg_delivered(source: str) -> str:
    """`source` gives (campaign_id, enrollment_id, d): change each enrollment's delivered messages
    by d; the campaign's count moves by the enrollments that left or reached zero."""
    return (f"WITH d AS (SELECT campaign_id, enrollment_id, sum(d) AS d FROM ({source}) AS s "
            "GROUP BY campaign_id, enrollment_id HAVING sum(d) <> 0), "
            "up AS (INSERT INTO count_marks (campaign_id, kind, ref, n) SELECT campaign_id, 'delivered', enrollment_id, d "
            "FROM d ORDER BY campaign_id, enrollment_id "
            "ON CONFLICT (campaign_id, kind, ref) DO UPDATE SET n = count_marks.n + excluded.n "
            "RETURNING campaign_id, ref, n) "
            + _pg_bump("SELECT up.campaign_id, 0 AS position, 'delivered' AS name, "
                       "CASE WHEN up.n > 0 AND up.n - d.d <= 0 THEN 1 WHEN up.n <= 0 AND up.n - d.d > 0 THEN -1 "
                       "ELSE 0 END AS d FROM up JOIN d ON d.campaign_id = up.campaign_id AND d.enrollment_id = up.ref"))


def _pg_not_bounced(row: str) -> str:
    return (f"NOT EXISTS (SELECT 1 FROM count_marks b WHERE b.campaign_id = {row}.campaign_id "
            f"AND b.kind = 'm:bounced' AND b.ref = {row}.id)")


def _pg_deferred(row: str) -> str:
    return (f"EXISTS (SELECT 1 FROM count_marks f WHERE f.campaign_id = {row}.campaign_id "
            f"AND f.kind = 'm:deferred' AND f.ref = {row}.id)")


def _pg_function(name: str, body: list[str]) -> str:
    statements = "".join(f"  {s};\n" for s in body)
    return (f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n{statements}"
            "  RETURN NULL;\nEND;\n$$")


def _pg_trigger(table: str, what: str, event: str, referencing: str) -> str:
    return (f"CREATE TRIGGER cadence_counts_{table}_{what} AFTER {event} ON {table} REFERENCING {referencing} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION cadence_counts_{table}_{what}()")


ROW_UPDATE = """CREATE OR REPLACE FUNCTION cadence_counts_{table}_upd() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  pid integer := pg_backend_pid();
  d integer;
  now_n integer;
  c integer;
  p integer;
BEGIN
{body}
  RETURN NULL;
END;
$$"""

_PG_ADD = ("INSERT INTO campaign_counts (campaign_id, position, name, slot, n) VALUES {values} "
           "ON CONFLICT (campaign_id, position, name, slot) DO UPDATE SET n = campaign_counts.n + excluded.n;")

MESSAGE_UPDATE = ("  " + _PG_ADD.format(values="(OLD.campaign_id, OLD.position, 'msg:' || OLD.state, pid, -1), "
                                               "(NEW.campaign_id, NEW.position, 'msg:' || NEW.state, pid, 1)") + """
  IF (NEW.state = 'sent' OR OLD.state = 'sent') AND NOT EXISTS (SELECT 1 FROM count_marks WHERE
      campaign_id = NEW.campaign_id AND kind = 'm:bounced' AND ref = NEW.id) THEN
    d := CASE WHEN NEW.state = 'sent' THEN 1 ELSE -1 END;
    INSERT INTO count_marks (campaign_id, kind, ref, n) VALUES (NEW.campaign_id, 'delivered', NEW.enrollment_id, d)
      ON CONFLICT (campaign_id, kind, ref) DO UPDATE SET n = count_marks.n + excluded.n RETURNING n INTO now_n;
    IF now_n > 0 AND now_n - d <= 0 THEN
      """ + _PG_ADD.format(values="(NEW.campaign_id, 0, 'delivered', pid, 1)") + """
    ELSIF now_n <= 0 AND now_n - d > 0 THEN
      """ + _PG_ADD.format(values="(NEW.campaign_id, 0, 'delivered', pid, -1)") + """
    END IF;
  END IF;
  IF (NEW.state = 'scheduled' OR OLD.state = 'scheduled') AND EXISTS (SELECT 1 FROM count_marks WHERE
      campaign_id = NEW.campaign_id AND kind = 'm:deferred' AND ref = NEW.id) THEN
    d := CASE WHEN NEW.state = 'scheduled' THEN 1 ELSE -1 END;
    """ + _PG_ADD.format(values="(NEW.campaign_id, 0, 'deferred', pid, d)") + """
  END IF;""")

TASK_UPDATE = """  SELECT campaign_id, position INTO c, p FROM messages WHERE id = NEW.message_id;
  IF FOUND THEN
    """ + _PG_ADD.format(values="(c, p, 'task:' || OLD.state, pid, -1), (c, p, 'task:' || NEW.state, pid, 1)") + """
  END IF;"""


def postgresql_triggers() -> list[str]:
    task_rows = "SELECT m.campaign_id, m.position, 'task:' || {t}.state AS name, {sign} AS d FROM {t} JOIN messages m ON m.id = {t}.message_id"
    step_candidates = (
        "cand AS (SELECT DISTINCT nt.campaign_id, nt.kind, nt.message_id, m.position, m.enrollment_id, "
        "m.campaign_id AS message_campaign, m.state FROM nt JOIN messages m ON m.id = nt.message_id "
        f"AND m.enrollment_id = nt.enrollment_id WHERE nt.campaign_id IS NOT NULL AND nt.kind IN {STEP_KINDS}), "
        "firsts AS (INSERT INTO count_marks (campaign_id, kind, ref, n) "
        "SELECT campaign_id, 'm:' || kind, message_id, 1 FROM cand ORDER BY 1, 2, 3 ON CONFLICT DO NOTHING "
        "RETURNING campaign_id, kind, ref), "
        "new_firsts AS (SELECT cand.* FROM firsts JOIN cand ON cand.campaign_id = firsts.campaign_id "
        "AND 'm:' || cand.kind = firsts.kind AND cand.message_id = firsts.ref)")
    return [
        _pg_function("cadence_counts_messages_ins", [
            _pg_bump("SELECT campaign_id, position, 'msg:' || state AS name, 1 AS d FROM nt"),
            _pg_delivered(f"SELECT campaign_id, enrollment_id, 1 AS d FROM nt WHERE state = 'sent' "
                          f"AND {_pg_not_bounced('nt')}"),
        ]),
        _pg_trigger("messages", "ins", "INSERT", "NEW TABLE AS nt"),
        # Updates: a row trigger that runs only when the state changed (most updates of a message
        # are leases, drafts and times, and bulk updates by primary key run one statement per row).
        ROW_UPDATE.format(table="messages", body=MESSAGE_UPDATE),
        "CREATE TRIGGER cadence_counts_messages_upd AFTER UPDATE OF state ON messages FOR EACH ROW "
        "WHEN (OLD.state IS DISTINCT FROM NEW.state) EXECUTE FUNCTION cadence_counts_messages_upd()",
        _pg_function("cadence_counts_messages_del", [
            _pg_bump("SELECT campaign_id, position, 'msg:' || state AS name, -1 AS d FROM ot "
                     f"UNION ALL SELECT campaign_id, 0, 'deferred', -1 FROM ot WHERE state = 'scheduled' "
                     f"AND {_pg_deferred('ot')}"),
            _pg_delivered(f"SELECT campaign_id, enrollment_id, -1 AS d FROM ot WHERE state = 'sent' "
                          f"AND {_pg_not_bounced('ot')}"),
        ]),
        _pg_trigger("messages", "del", "DELETE", "OLD TABLE AS ot"),
        _pg_function("cadence_counts_tasks_ins", [_pg_bump(task_rows.format(t="nt", sign=1))]),
        _pg_trigger("tasks", "ins", "INSERT", "NEW TABLE AS nt"),
        ROW_UPDATE.format(table="tasks", body=TASK_UPDATE),
        "CREATE TRIGGER cadence_counts_tasks_upd AFTER UPDATE OF state ON tasks FOR EACH ROW "
        "WHEN (OLD.state IS DISTINCT FROM NEW.state) EXECUTE FUNCTION cadence_counts_tasks_upd()",
        _pg_function("cadence_counts_tasks_del", [_pg_bump(task_rows.format(t="ot", sign=-1))]),
        _pg_trigger("tasks", "del", "DELETE", "OLD TABLE AS ot"),
        _pg_function("cadence_counts_events_ins", [
            # First engagement of a message per kind: its step's count; a first bounce of a sent
            # message takes it out of the delivered ones.
            f"WITH {step_candidates}, "
            "step_bump AS (" + _pg_bump("SELECT campaign_id, position, 'ev:' || kind AS name, 1 AS d FROM new_firsts")
            + " RETURNING 1), "
            "d AS (SELECT message_campaign AS campaign_id, enrollment_id, -count(*) AS d FROM new_firsts "
            "WHERE kind = 'bounced' AND state = 'sent' GROUP BY message_campaign, enrollment_id), "
            "up AS (INSERT INTO count_marks (campaign_id, kind, ref, n) SELECT campaign_id, 'delivered', enrollment_id, d "
            "FROM d ORDER BY campaign_id, enrollment_id "
            "ON CONFLICT (campaign_id, kind, ref) DO UPDATE SET n = count_marks.n + excluded.n "
            "RETURNING campaign_id, ref, n) "
            + _pg_bump("SELECT up.campaign_id, 0 AS position, 'delivered' AS name, "
                       "CASE WHEN up.n > 0 AND up.n - d.d <= 0 THEN 1 WHEN up.n <= 0 AND up.n - d.d > 0 THEN -1 "
                       "ELSE 0 END AS d FROM up JOIN d ON d.campaign_id = up.campaign_id AND d.enrollment_id = up.ref"),
            # First engagement of a contact per kind in the campaign.
            "WITH cand AS (SELECT DISTINCT campaign_id, kind, contact_id FROM nt WHERE campaign_id IS NOT NULL "
            f"AND contact_id IS NOT NULL AND kind IN {CONTACT_KINDS}), "
            "firsts AS (INSERT INTO count_marks (campaign_id, kind, ref, n) SELECT campaign_id, 'c:' || kind, contact_id, 1 "
            "FROM cand ORDER BY 1, 2, 3 ON CONFLICT DO NOTHING RETURNING campaign_id, kind) "
            + _pg_bump("SELECT campaign_id, 0 AS position, 'who:' || substr(kind, 3) AS name, 1 AS d FROM firsts"),
            # First deferral of a message: counted while the message is scheduled.
            "WITH cand AS (SELECT DISTINCT nt.campaign_id, nt.message_id, m.state FROM nt "
            "JOIN messages m ON m.id = nt.message_id WHERE nt.campaign_id IS NOT NULL AND nt.kind = 'deferred'), "
            "firsts AS (INSERT INTO count_marks (campaign_id, kind, ref, n) SELECT campaign_id, 'm:deferred', message_id, 1 "
            "FROM cand ORDER BY 1, 3 ON CONFLICT DO NOTHING RETURNING campaign_id, ref) "
            + _pg_bump("SELECT firsts.campaign_id, 0 AS position, 'deferred' AS name, 1 AS d FROM firsts "
                       "JOIN cand ON cand.campaign_id = firsts.campaign_id AND cand.message_id = firsts.ref "
                       "WHERE cand.state = 'scheduled'"),
        ]),
        _pg_trigger("events", "ins", "INSERT", "NEW TABLE AS nt"),
        # Fold every connection's rows into slot 0. Rows a live transaction holds are skipped (it
        # never waits on this), and one fold runs at a time.
        "CREATE OR REPLACE FUNCTION cadence_fold_counts() RETURNS integer LANGUAGE plpgsql AS $$\n"
        "DECLARE folded integer;\nBEGIN\n"
        "  IF NOT pg_try_advisory_xact_lock(7355608) THEN RETURN 0; END IF;\n"
        "  WITH picked AS (SELECT campaign_id, position, name, slot FROM campaign_counts WHERE slot <> 0 "
        "FOR UPDATE SKIP LOCKED), "
        "gone AS (DELETE FROM campaign_counts c USING picked p WHERE c.campaign_id = p.campaign_id "
        "AND c.position = p.position AND c.name = p.name AND c.slot = p.slot RETURNING c.campaign_id, c.position, "
        "c.name, c.n) "
        "INSERT INTO campaign_counts (campaign_id, position, name, slot, n) SELECT campaign_id, position, name, 0, sum(n) "
        "FROM gone GROUP BY campaign_id, position, name ORDER BY 1, 2, 3 "
        "ON CONFLICT (campaign_id, position, name, slot) DO UPDATE SET n = campaign_counts.n + excluded.n;\n"
        "  GET DIAGNOSTICS folded = ROW_COUNT;\n  RETURN folded;\nEND;\n$$",
    ]
