"""The celery executor on the real brokers of this machine (Redis, RabbitMQ) and PostgreSQL: two
`remotehands worker --site lab1` processes take the lab site's jobs from the queue site.lab1; one is
SIGKILLed between rounds and another is started; every job ends succeeded. A SIGKILL in the middle of a job
is not covered yet: once, under CI load on RabbitMQ, it left a job needs_operator (reason not captured), to be
found with the full scale-out proof of issue #9 (two sites, killing every few seconds, BMC command counts)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from remotehands.config import Settings
from remotehands.db import Database
from remotehands.errors import ActionFailed
from remotehands.jobs import actions, store
from remotehands.jobs.steps import Done, Step, StepContext
from remotehands.lab.process import LabInfo
from remotehands.runtime import Runtime
from remotehands.tickets.base import Severity, TaskRequest, TicketType
from remotehands.tickets.builtin import NewTicket
from tests.conftest import job_state, mark, open_ticket, settle

BROKERS = {
    "redis": ("redis://127.0.0.1:6379/15", 6379),
    "rabbitmq": ("amqp://guest:guest@127.0.0.1:5672//", 5672),
}
HOSTS = tuple(f"esx-{n:02d}" for n in range(1, 9))


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(params=sorted(BROKERS))
def broker(request: pytest.FixtureRequest) -> Iterator[str]:
    url, port = BROKERS[request.param]
    if not _reachable(port):
        if os.environ.get("RH_REQUIRE_SERVICES"):
            pytest.fail(f"{request.param} is not running on 127.0.0.1:{port} and RH_REQUIRE_SERVICES is set")
        pytest.skip(
            f"{request.param} not running on 127.0.0.1:{port}; set RH_REQUIRE_SERVICES to fail instead"
        )
    if request.param == "redis":
        import redis

        redis.Redis.from_url(url).flushdb()  # db 15 is this test's own
    else:
        subprocess.run(["rabbitmqctl", "delete_queue", "site.lab1"], capture_output=True, check=False)
    yield url


def _worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "remotehands", "worker", "--site", "lab1", "--workers", "2"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def test_celery_workers_take_the_sites_jobs_and_a_killed_worker_is_replaced(
    tmp_path: Path, lab: LabInfo, pg_db: Database, broker: str
) -> None:
    settings = Settings(db_url=pg_db.url, inventory=lab.inventory_dir, log_file=tmp_path / "rh.log")
    rt = Runtime(settings)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RH_")}
    env.update(
        RH_DB_URL=pg_db.url,
        RH_INVENTORY=str(lab.inventory_dir),
        RH_LOG_FILE=str(tmp_path / "rh.log"),
        RH_EXECUTOR="celery",
        RH_BROKER_URL=broker,
        XDG_STATE_HOME=str(tmp_path / "state"),
    )
    tickets: list[str] = []
    for round_ in range(3):  # one job per host at a time: three tickets, one after the other
        ticket_id = rt.tickets.create(
            NewTicket(
                type=TicketType.REMOTE_HANDS,
                severity=Severity.DEGRADED,
                title=f"power on, round {round_}",
                requester="alice",
                customer="provider",
                subscription="provider",
                request=TaskRequest(action="power.on", targets=HOSTS),
            ),
            rt.inventory(),
        )
        rt.tickets.approve(ticket_id, "bob")
        tickets.append(ticket_id)
    workers = [_worker(env, tmp_path / f"worker-{n}.log") for n in range(2)]
    job_ids: list[int] = []
    try:
        for n, ticket_id in enumerate(tickets):
            if n == 1:  # a worker is SIGKILLed (between rounds) and another takes its place
                workers[0].send_signal(signal.SIGKILL)
                workers[0].wait(10)
                workers.append(_worker(env, tmp_path / "worker-2.log"))
            made = store.create_jobs_for_ticket(rt.db, rt.tickets.get(ticket_id), "bob", "test")
            job_ids += made
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                with rt.db.session() as s:
                    states = [store.get_job(s, j).state for j in made]
                if all(st in ("succeeded", "failed", "cancelled", "needs_operator") for st in states):
                    break
                time.sleep(0.2)
            with rt.db.session() as s:
                reasons = {
                    j: store.get_job(s, j).reason for j in made if store.get_job(s, j).state != "succeeded"
                }
            assert states == ["succeeded"] * len(made), (
                f"round {n}: {reasons}\n{_errors(tmp_path / 'rh.log')}\n{_logs(tmp_path)[-1500:]}"
            )
    finally:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(15)
            except subprocess.TimeoutExpired:
                w.kill()
        rt.db.dispose()
    assert len(job_ids) == 3 * len(HOSTS)
    logs = _logs(tmp_path)
    assert "for site lab1 started (celery)" in logs


def _in_process_runtime(tmp_path: Path, lab: LabInfo) -> Runtime:
    """Executor celery on SQLite, for tests that call the task in this process (the broker is never contacted)."""
    return Runtime(
        Settings(
            db_url=f"sqlite:///{tmp_path / 'rh.db'}",
            inventory=lab.inventory_dir,
            log_file=tmp_path / "rh.log",
            executor="celery",
            broker_url=BROKERS["redis"][0],
        )
    )


def test_a_duplicated_message_taken_by_two_threads_of_one_worker_runs_the_job_once(
    tmp_path: Path, lab: LabInfo
) -> None:
    """The broker may deliver "advance job J" twice, and both copies may land on two threads of one worker
    process: exactly one of them may hold the job (found by the campaign: both claimed it with the process's
    lease owner and inserted the same journal row)."""
    from remotehands.jobs.celery_exec import TASK, make_app

    rt = _in_process_runtime(tmp_path, lab)
    try:
        m = mark(lab, "esx-07")
        [job_id] = store.create_jobs_for_ticket(
            rt.db, rt.tickets.get(open_ticket(rt, "esx-07")), "bob", "test"
        )
        task = make_app(rt, store.new_owner()).tasks[TASK]
        together = threading.Barrier(2)
        results: list[str | None] = []

        def take() -> None:
            together.wait()
            results.append(task(job_id))

        threads = [threading.Thread(target=take) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert None in results, results  # one of the two found the job held and left it
        settle(rt, [job_id])
        assert job_state(rt, job_id) == "succeeded"
        assert len(m.commands("cycle")) == 1
        with rt.db.session() as s:
            assert all(st.attempt == 1 for st in store.steps_of(s, job_id))
    finally:
        rt.db.dispose()


class _HeldStep(Step):
    """A long step that runs until the test lets it finish."""

    name = "held"
    description = "run until the test says so"
    idempotent = True
    long = True

    def __init__(self, started: threading.Event, gate: threading.Event) -> None:
        self.started, self.gate = started, gate

    def run(self, ctx: StepContext) -> Done:
        self.started.set()
        if not self.gate.wait(60):
            raise ActionFailed("the test never let the held step finish")
        return Done("held until released")


def test_a_job_with_a_long_step_runs_beside_the_task_so_no_message_is_held_while_it_runs(
    tmp_path: Path, lab: LabInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A playbook run can outlast RabbitMQ's consumer_timeout (30 min), after which the broker closes the
    channel and the worker cancels its running tasks: the task hands such a job to a long-unit thread and
    returns at once (its message is acknowledged); the job's lease holds it while it runs. With every
    long-unit thread busy, a task leaves the job due, unclaimed, for a later dispatch."""
    from remotehands.jobs.celery_exec import TASK, LongUnits, make_app

    started, gate = threading.Event(), threading.Event()
    monkeypatch.setitem(
        actions._ACTIONS,
        "test.held",
        actions.Action("test.held", "a long step", steps=lambda: [_HeldStep(started, gate)]),
    )
    assert any(step.long for step in actions.get("playbook.run").steps())
    rt = _in_process_runtime(tmp_path, lab)
    long_units = LongUnits(rt, slots=1)
    try:
        [held] = store.create_jobs_for_ticket(
            rt.db, rt.tickets.get(open_ticket(rt, "esx-06", action="test.held")), "bob", "test"
        )
        [second] = store.create_jobs_for_ticket(
            rt.db, rt.tickets.get(open_ticket(rt, "esx-08", action="test.held")), "bob", "test"
        )
        [plain] = store.create_jobs_for_ticket(
            rt.db, rt.tickets.get(open_ticket(rt, "esx-05", action="power.status")), "bob", "test"
        )
        assert LongUnits.wanted(rt, held) and not LongUnits.wanted(rt, plain)
        task = make_app(rt, store.new_owner(), long_units).tasks[TASK]
        before = time.monotonic()
        assert task(held) == "long unit started"
        assert time.monotonic() - before < 5  # the task did not wait for the step
        assert started.wait(15)
        assert job_state(rt, held) == "running"
        assert task(second) is None  # the only long-unit thread is busy: left for a later dispatch
        with rt.db.session() as s:
            job = store.get_job(s, second)
            assert (job.state, job.lease_owner) == ("queued", None)
        assert task(plain) == "succeeded"  # a job without a long step runs in the task, as before
        gate.set()
        deadline = time.monotonic() + 30
        while job_state(rt, held) != "succeeded" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert job_state(rt, held) == "succeeded"
        long_units.wait(10)
        assert task(second) == "long unit started"
        long_units.wait(30)
        assert job_state(rt, second) == "succeeded"
        with rt.db.session() as s:
            assert [(st.status, st.attempt) for st in store.steps_of(s, held)] == [("done", 1)]
    finally:
        gate.set()
        long_units.wait(10)
        rt.db.dispose()


def test_concurrent_creators_get_one_job_per_target_on_postgresql(lab: LabInfo, pg_db: Database) -> None:
    """One active job per host holds on PostgreSQL across processes' sessions: eight creators racing for
    esx-08 with eight approved tickets get one job; the others are refused naming it (a UNIQUE column, no
    in-process lock)."""
    from remotehands.errors import TargetBusy

    rt = Runtime(Settings(db_url=pg_db.url, inventory=lab.inventory_dir))
    try:
        tickets = [open_ticket(rt, "esx-08", action="power.off") for _ in range(8)]
        together = threading.Barrier(len(tickets))
        made: list[int] = []
        refused: list[str] = []

        def create(ticket_id: str) -> None:
            ticket = rt.tickets.get(ticket_id)
            together.wait()
            try:
                made.extend(store.create_jobs_for_ticket(rt.db, ticket, "bob", "test"))
            except TargetBusy as exc:
                refused.append(str(exc))

        threads = [threading.Thread(target=create, args=(t,)) for t in tickets]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(made) == 1 and len(refused) == 7, (made, refused)
        assert all(f"job {made[0]}" in message for message in refused), refused
    finally:
        rt.db.dispose()


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_one_dispatcher_wins_each_send_of_a_due_job(
    engine: str, tmp_path: Path, lab: LabInfo, request: pytest.FixtureRequest
) -> None:
    """Dispatchers of one site race for the same due jobs: one wins each job per due time; a job due again
    (it waited) is won again at once; the same due time only after the re-send interval."""
    from datetime import timedelta

    from sqlalchemy import update

    from remotehands.jobs.celery_exec import mark_dispatched
    from remotehands.jobs.tables import Job

    url = f"sqlite:///{tmp_path / 'rh.db'}" if engine == "sqlite" else request.getfixturevalue("pg_db").url
    rt = Runtime(Settings(db_url=url, inventory=lab.inventory_dir))
    try:
        ids = [
            store.create_jobs_for_ticket(
                rt.db, rt.tickets.get(open_ticket(rt, h, action="power.status")), "b", "t"
            )[0]
            for h in ("esx-01", "esx-02", "esx-03")
        ]
        results: list[list[int]] = []
        together = threading.Barrier(4)

        def dispatch() -> None:
            together.wait()
            results.append(mark_dispatched(rt.db, ids, 10.0))

        threads = [threading.Thread(target=dispatch) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(j for won in results for j in won) == ids, results  # each job sent exactly once
        assert mark_dispatched(rt.db, ids, 10.0) == []
        with rt.db.session() as s:  # the second job waited: due again at a new time
            s.execute(
                update(Job).where(Job.id == ids[1]).values(next_run_at=store.now() + timedelta(seconds=1))
            )
        assert mark_dispatched(rt.db, ids, 10.0) == [ids[1]]
        assert mark_dispatched(rt.db, ids, 0.0) == ids  # after the interval: sent again (lost message)
    finally:
        rt.db.dispose()


def _logs(tmp_path: Path) -> str:
    return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(tmp_path.glob("worker-*.log")))


def _errors(log: Path) -> str:
    """The tracebacks the workers logged (an internal error's cause), for a failure message."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    keep = [i for i, line in enumerate(lines) if "ERROR" in line or "Traceback" in line]
    return "\n".join(lines[i] for j in keep for i in range(j, min(j + 40, len(lines))))[-6000:]
