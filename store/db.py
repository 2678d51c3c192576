"""Engine and sessions for SQLite (embedded default) and PostgreSQL; schema through Alembic."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"
BUSY_TIMEOUT = 30  # seconds a SQLite transaction waits for the write lock before it gives up


def make_engine(url: str, *, immediate: bool = False, **kwargs) -> Engine:
    """SQLite gets WAL, foreign keys and a busy timeout; PostgreSQL gets pre-ping for restarts,
    a connect timeout and TCP keepalives.

    `immediate=True` (SQLite only) starts every transaction with BEGIN IMMEDIATE: one writer.
    """
    if url.startswith("sqlite"):
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
    # network partition) is noticed by TCP keepalives, instead of hanging a worker's loop.
    connect_args = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
                    "keepalives_count": 3, **kwargs.pop("connect_args", {})}
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args, **kwargs)


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine) -> None:
    """Create or upgrade the schema to the newest migration (idempotent)."""
    command.upgrade(alembic_config(engine), "head")


def schema_is_current(engine: Engine) -> bool:
    return "alembic_version" in inspect(engine).get_table_names()


class Database:
    """One engine and its session factory."""

    def __init__(self, url: str, **engine_kwargs):
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        if self.is_sqlite:
            self.writer_engine = make_engine(url, immediate=True, **engine_kwargs)
            self.writer_sessions = sessionmaker(self.writer_engine, expire_on_commit=False)
        else:
            self.writer_engine, self.writer_sessions = self.engine, self.sessions

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
        writer = immediate and not readonly
        with (self.writer_sessions if writer else self.sessions)() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        self.engine.dispose()
        self.writer_engine.dispose()
