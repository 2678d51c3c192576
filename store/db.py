"""Engine and sessions for SQLite (embedded default) and PostgreSQL; schema through Alembic."""
from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Connection, Engine

if TYPE_CHECKING:  # Alembic only when a schema is created or upgraded; the ORM with the first session
    from alembic.config import Config
    from sqlalchemy.orm import Session

MIGRATIONS = Path(__file__).parent / "migrations"
BUSY_TIMEOUT = 30  # seconds a SQLite transaction waits for the write lock before it gives up
SQLITE_POOL = 20  # SQLite connections an engine keeps open (opened when first needed), and as many more at peaks


def make_engine(url: str, *, immediate: bool = False, **kwargs) -> Engine:
    """SQLite gets WAL, foreign keys and a busy timeout; PostgreSQL gets pre-ping for restarts,
    a connect timeout and TCP keepalives.

    `immediate=True` (SQLite only) starts every transaction with BEGIN IMMEDIATE: one writer.
    """
    if url.startswith("sqlite"):
        if ":memory:" not in url and "mode=memory" not in url:
            # `cadence serve` reads from up to 40 threads (Starlette's pool): keep that many
            # connections open instead of opening (and setting up) a new one per page once
            # the default 5 are busy.
            kwargs.setdefault("pool_size", SQLITE_POOL)
            kwargs.setdefault("max_overflow", SQLITE_POOL)
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            # pysqlite's own transaction handling is switched off so that BEGIN IMMEDIATE
            # (a single writer) can be issued explicitly by claims.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    # A restarted server: dead pooled connections are noticed at checkout (pre-ping) and replaced;
    # a server that does not answer fails a connect within 10 s, and a half-open connection (a
    # network partition) is noticed by TCP keepalives when idle, and by tcp_user_timeout (ms) when
    # a query sent is never acknowledged, instead of hanging a worker's loop.
    connect_args = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
                    "keepalives_count": 3, "tcp_user_timeout": 30_000, **kwargs.pop("connect_args", {})}
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args, **kwargs)


def alembic_config(engine: Engine) -> "Config":
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine) -> None:
    """Create or upgrade the schema to the newest migration (idempotent)."""
    from alembic import command

    command.upgrade(alembic_config(engine), "head")


def known_revisions() -> tuple[set[str], set[str]]:
    """(every revision id, the heads) read from the migration files, without loading Alembic."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        found = re.search(r"^revision\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", source, re.MULTILINE)
        if not found:
            continue
        revisions.add(found.group(1))
        down = re.search(r"^down_revision\s*(?::[^=]*)?=\s*(.+)$", source, re.MULTILINE)
        if down:
            parents.update(re.findall(r"['\"]([^'\"]+)['\"]", down.group(1)))
    return revisions, revisions - parents


def schema_version(engine: Engine) -> str | None:
    """The revision the database is at (`alembic_version`); None when it holds no Cadence schema."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def schema_is_current(engine: Engine) -> bool:
    return "alembic_version" in inspect(engine).get_table_names()


class Database:
    """One engine and its session factories (made on first use: a command that only reads through
    `reading` never loads SQLAlchemy's ORM)."""

    def __init__(self, url: str, **engine_kwargs):
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        if self.is_sqlite:
            self.writer_engine = make_engine(url, immediate=True, **engine_kwargs)
        else:
            self.writer_engine = self.engine
        self._factories: dict[bool, Any] = {}

    def _sessions(self, writer: bool):
        factory = self._factories.get(writer)
        if factory is None:
            from sqlalchemy.orm import sessionmaker

            factory = sessionmaker(self.writer_engine if writer else self.engine, expire_on_commit=False)
            self._factories[writer] = factory
        return factory

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def upgrade(self) -> None:
        upgrade(self.engine)

    @contextmanager
    def session(self, *, immediate: bool = True, readonly: bool = False) -> Iterator[Session]:
        """A unit of work: committed on success, rolled back on any error.

        SQLite: a unit of work that may write begins IMMEDIATE, taking the database's one write
        lock at BEGIN and waiting up to the busy timeout (`BUSY_TIMEOUT` seconds) while another
        writer holds it, so concurrent writers queue instead of failing with "database is locked"
        (a deferred transaction that reads and then writes cannot wait: SQLite refuses it at once).
        `readonly=True` (or `immediate=False`) reads a snapshot and takes no lock; it must not write.
        PostgreSQL: both are the same read-committed transaction.
        """
        with self._sessions(immediate and not readonly)() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read-only unit of work on a Core connection (no ORM): one snapshot on SQLite (a
        deferred transaction, no lock), one read-committed transaction on PostgreSQL. It must not
        write; what it reads is rows (`store.tables`), not ORM objects."""
        with self.engine.connect() as connection:
            with connection.begin():
                yield connection

    def dispose(self) -> None:
        self.engine.dispose()
        self.writer_engine.dispose()
