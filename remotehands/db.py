"""The database: one SQLAlchemy engine, sessions, and schema migrations (Alembic).

SQLite runs in WAL mode with ``synchronous=FULL`` so a committed journal entry survives a power loss, and
every transaction starts with ``BEGIN IMMEDIATE`` so two writers queue on the busy timeout instead of
failing with "database is locked" when a read turns into a write. PostgreSQL works by URL.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from remotehands.errors import ConfigError, RetryableError

log = logging.getLogger(__name__)

SQLITE_BUSY_MS = 30_000


class Base(DeclarativeBase):
    """Declarative base of every table (jobs, tickets, outbox, audit)."""


class Database:
    """An engine plus a session factory. ``session()`` is a transaction: commit on exit, rollback on error."""

    def __init__(self, url: str, *, cipher: Any = None) -> None:
        self.url = url
        self.engine = make_engine(url)
        # The cipher for sensitive tickets rides on every session (``session.info["cipher"]``), so code
        # that writes inside a transaction can seal what it writes without being handed it.
        self._sessions = sessionmaker(self.engine, expire_on_commit=False, info={"cipher": cipher})
        # SQLite has one writer at a time, and every transaction here writes (BEGIN IMMEDIATE). Threads of
        # this process queue on this lock instead of on SQLite's busy handler, whose waiters sleep 1, 2, 5
        # ... 100 ms between tries: with 16 job threads that backoff, not the work, set the pace (measured:
        # a third of a 300-job batch's samples were threads asleep in BEGIN). Other processes still queue on
        # the busy timeout.
        self._writer = threading.RLock() if url.startswith("sqlite") else contextlib.nullcontext()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """Open a transaction. Raises ``RetryableError`` when the database is locked or unreachable."""
        with self._writer:
            yield from self._session()

    def _session(self) -> Iterator[Session]:
        session = self._sessions()
        try:
            yield session
            session.commit()
        except OperationalError as exc:
            session.rollback()
            raise RetryableError(
                f"database {self.engine.url.render_as_string(hide_password=True)} is unavailable or locked: "
                f"{exc.orig}",
                fix="retry; if it persists check the database server or the SQLite file's disk",
            ) from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def migrate(self) -> None:
        """Bring the schema to the newest migration (idempotent and cheap when already there)."""
        migrate(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()


def make_engine(url: str) -> Engine:
    """Create the engine; for SQLite create the file's directory and set WAL, FULL sync and busy timeout."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_MS / 1000, "check_same_thread": False}
        )
        _tune_sqlite(engine)
        return engine
    try:
        return create_engine(url, pool_pre_ping=True)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise ConfigError(
            f"db_url cannot be used: {exc}", fix="use sqlite:///path or postgresql+psycopg://..."
        ) from exc


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from pysqlite so we can issue BEGIN IMMEDIATE ourselves.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def migrate(engine: Engine) -> None:
    """Run Alembic's upgrade to head on ``engine``."""
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    script = ScriptDirectory.from_config(cfg)
    with engine.connect() as conn:
        current = (
            MigrationContext.configure(conn).get_current_revision()
            if inspect(conn).has_table("alembic_version")
            else None
        )
    if current == script.get_current_head():
        return
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
