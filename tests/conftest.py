"""Shared fixtures: one lab (simulated IPMI BMCs on 127.0.0.1) per test session, a fresh database per test."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from remotehands import redaction
from remotehands.config import Settings
from remotehands.db import Database
from remotehands.jobs import store
from remotehands.jobs.executor import LocalExecutor
from remotehands.lab.process import LabInfo, read_bmc_log, start_lab, stop_lab
from remotehands.runtime import Runtime
from remotehands.tickets.base import Severity, TaskRequest, TicketType
from remotehands.tickets.builtin import NewTicket
from tests.browser import browser, page  # noqa: F401  (fixtures for the browser tests)

LAB_HOSTS = 8


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabInfo]:
    where = tmp_path_factory.mktemp("lab")
    info = start_lab(where, hosts=LAB_HOSTS, cycle_delay=0.5)
    try:
        yield info
    finally:
        stop_lab(where)


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Keep every test's state (ticket key, logs) under its own tmp dir, and forget registered secrets."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    for var in ("RH_CONFIG", "RH_DB_URL", "RH_INVENTORY", "RH_TICKET_KEY", "RH_FAULT_KILL_AT"):
        monkeypatch.delenv(var, raising=False)
    yield
    redaction.forget_all()


@pytest.fixture
def settings(tmp_path: Path, lab: LabInfo) -> Settings:
    return Settings(
        db_url=f"sqlite:///{tmp_path / 'rh.db'}",
        inventory=lab.inventory_dir,
        log_file=tmp_path / "rh.log",
        lease_seconds=30,
    )


@pytest.fixture
def rt(settings: Settings) -> Iterator[Runtime]:
    runtime = Runtime(settings)
    yield runtime
    runtime.db.dispose()


@dataclass
class Mark:
    """A position in the lab's BMC command log, to count commands sent after it."""

    lab: LabInfo
    host: str
    offset: int

    def commands(self, command: str | None = None) -> list[dict[str, object]]:
        return (
            read_bmc_log(self.lab.log_path, host=self.host, command=command)[self.offset :]
            if command is None
            else [
                e
                for e in read_bmc_log(self.lab.log_path, host=self.host)[self.offset :]
                if e["command"] == command
            ]
        )


def mark(lab: LabInfo, host: str) -> Mark:
    """Wait until ``host`` reads on (an earlier test's cycle may still be settling), then mark its log."""
    from remotehands.bmc.base import PowerAction, perform_and_confirm
    from remotehands.bmc.ipmi import IpmiPower

    bmc = lab.hosts[host]
    driver = IpmiPower(bmc.address, bmc.port, "admin", lab.password(), timeout=3.0)
    try:
        deadline = time.monotonic() + 10
        while driver.state().value != "on" and time.monotonic() < deadline:
            time.sleep(0.05)
        perform_and_confirm(driver, PowerAction.ON, timeout=10)
    finally:
        driver.close()
    return Mark(lab, host, len(read_bmc_log(lab.log_path, host=host)))


def open_ticket(
    rt: Runtime,
    host: str,
    *,
    action: str = "power.cycle",
    requester: str = "alice",
    approver: str | None = "bob",
    customer: str | None = None,
    subscription: str | None = None,
    severity: Severity = Severity.OUTAGE_ONE,
    sensitive: bool = False,
    title: str | None = None,
    params: dict[str, object] | None = None,
) -> str:
    inv = rt.inventory()
    sub = subscription or inv.host(host).subscription
    ticket_id = rt.tickets.create(
        NewTicket(
            type=TicketType.REMOTE_HANDS,
            severity=severity,
            title=title or f"{action} {host}",
            requester=requester,
            customer=customer or inv.customer_of(sub),
            subscription=sub,
            request=TaskRequest(action=action, targets=(host,), params=params or {}),
            sensitive=sensitive,
        ),
        inv,
    )
    if approver:
        rt.tickets.approve(ticket_id, approver)
    return ticket_id


def run_ticket(rt: Runtime, ticket_id: str, timeout: float = 60) -> list[int]:
    """Create the ticket's jobs and run them with the local executor until they settle."""
    ticket = rt.tickets.get(ticket_id)
    approval = rt.tickets.approval(ticket_id)
    ids = store.create_jobs_for_ticket(
        rt.db, ticket, approval.approver if approval.approved else None, "test"
    )
    settle(rt, ids, timeout)
    return ids


def settle(rt: Runtime, ids: list[int], timeout: float = 60) -> None:
    """Run the local executor until every job of ``ids`` has ended or needs an operator."""
    executor = LocalExecutor(rt, poll=0.05)
    try:
        assert executor.run_until(lambda: settled(rt, ids), timeout=timeout), "jobs did not settle in time"
    finally:
        executor.shutdown()


def settled(rt: Runtime, ids: list[int]) -> bool:
    with rt.db.session() as s:
        return all(
            store.get_job(s, j).state in ("succeeded", "failed", "cancelled", "needs_operator") for j in ids
        )


def job_state(rt: Runtime, job_id: int) -> str:
    with rt.db.session() as s:
        return store.get_job(s, job_id).state


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """Run the CLI in-process against this test's database and the lab: ``cli(*args, user=...)`` returns
    (exit code, stdout, stderr)."""
    from remotehands.cli.main import main

    monkeypatch.setenv("RH_DB_URL", settings.db_url)
    monkeypatch.setenv("RH_INVENTORY", str(settings.inventory))
    monkeypatch.setenv("RH_LOG_FILE", str(settings.log_file))

    def run(*args: str, user: str = "alice") -> tuple[int, str, str]:
        monkeypatch.setenv("RH_USER", user)
        with pytest.raises(SystemExit) as exit_:
            main(list(args))
        out, err = capsys.readouterr()
        return int(exit_.value.code or 0), out, err

    return run


PG_ADMIN = os.environ.get("RH_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def pg_db() -> Iterator[Database]:
    """A throwaway PostgreSQL database (not migrated), dropped afterwards. Skipped with the reason when
    PostgreSQL is not reachable, unless ``RH_REQUIRE_SERVICES`` is set (CI sets it): then it fails."""
    from sqlalchemy import create_engine, text

    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"rh_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        if os.environ.get("RH_REQUIRE_SERVICES"):
            raise
        pytest.skip(
            f"PostgreSQL not reachable at {PG_ADMIN} ({type(exc).__name__}); set RH_REQUIRE_SERVICES to fail instead"
        )
    db = Database(PG_ADMIN.rsplit("/", 1)[0] + f"/{name}")
    try:
        yield db
    finally:
        db.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def worker_until_idle(config: Path, env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``remotehands worker --until-idle`` in a process of its own with ``RH_CONFIG=config`` (crash tests set
    ``RH_FAULT_KILL_AT`` in ``env_extra``); the test's other ``RH_*`` variables are not passed on."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RH_")}
    env.update(RH_CONFIG=str(config), **env_extra)
    return subprocess.run(
        [sys.executable, "-m", "remotehands", "worker", "--until-idle", "--workers", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.fixture
def app_url(rt: Runtime) -> Iterator[str]:
    """``remotehands serve``'s app for ``rt`` on 127.0.0.1 (no engine: the test runs the jobs); its URL."""
    from remotehands.lab.ticket_sims.harness import ServerThread
    from remotehands.server.app import create_app

    thread = ServerThread(create_app(rt, engine=False)).start()
    try:
        yield thread.url
    finally:
        thread.stop()
