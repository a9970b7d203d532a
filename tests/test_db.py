"""Database: migrations equal the models, SQLite durability settings, and the same guarantees on PostgreSQL."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import remotehands.audit
import remotehands.jobs.tables
import remotehands.server.console.tables
import remotehands.status.tables
import remotehands.tickets.tables  # noqa: F401
from remotehands.db import Base, Database
from remotehands.errors import TargetBusy
from remotehands.jobs import store
from remotehands.tickets.base import Severity, TaskRequest, Ticket, TicketStatus, TicketType


def _ticket(n: int, target: str) -> Ticket:
    from datetime import UTC, datetime

    return Ticket(
        id=f"RH-{n}",
        system="builtin",
        type=TicketType.REMOTE_HANDS,
        severity=Severity.DEGRADED,
        status=TicketStatus.APPROVED,
        title="t",
        description="",
        sensitive=False,
        customer="provider",
        subscription="provider",
        site="lab1",
        requester="alice",
        approver="bob",
        request=TaskRequest(action="power.cycle", targets=(target,)),
        received_at=datetime.now(UTC),
    )


def _assert_schema_matches(db: Database) -> None:
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def _assert_lock_and_lease(db: Database) -> None:
    [job_id] = store.create_jobs_for_ticket(db, _ticket(1, "esx-01"), "bob", "test")
    with pytest.raises(TargetBusy) as err:
        store.create_jobs_for_ticket(db, _ticket(2, "esx-01"), "bob", "test")
    assert err.value.blocking_job_id == job_id
    # Eight workers race for the job at the same moment: exactly one wins.
    owners = [store.new_owner() for _ in range(8)]
    barrier = threading.Barrier(len(owners))

    def race(owner: str) -> bool:
        barrier.wait()
        return store.claim(db, job_id, owner, 60)

    with ThreadPoolExecutor(len(owners)) as pool:
        wins = list(pool.map(race, owners))
    assert wins.count(True) == 1


def test_sqlite_migrations_match_models_and_durability_settings(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    db.migrate()
    db.migrate()  # idempotent
    _assert_schema_matches(db)
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    _assert_lock_and_lease(db)


def test_postgresql_migrations_lock_and_lease(pg_db):
    pg_db.migrate()
    _assert_schema_matches(pg_db)
    _assert_lock_and_lease(pg_db)
