"""Scale-out of the Celery executor: 10,000 lab power-status jobs on 1, 2 and 4 workers, against bare Celery.

    python benchmarks/scale.py            # 10,000 jobs per worker count, 100 lab hosts
    python benchmarks/scale.py --quick    # 300 jobs per worker count, 50 lab hosts
    python benchmarks/scale.py --jobs 2000 --hosts 100 --workers 1,4

One lab (``remotehands.lab.process``: simulated IPMI BMCs esx-NN on 127.0.0.1, site ``lab1``) serves every
run. Each run of ours gets a throwaway PostgreSQL database (127.0.0.1:5432, dropped at its end); every run
uses the Redis broker redis://127.0.0.1:6379/14, flushed before it (db 15 is the tests'). A run starts W
worker processes (W = 1, 2, 4), each ``remotehands worker --site lab1 --workers T`` (threads pool, T = 4 by
default, the same in every run), started as this script with a hidden flag: that is
``remotehands.cli.main.main`` unchanged, plus counters around the dispatcher's ``send_task`` and pass, the
outbox delivery and the task's ``runner.advance`` (messages sent and taken, claims refused because the job
was held or done, how long dispatcher passes take), and a marker file written on Celery's ``worker_ready``
signal: the load starts once every worker consumes.

The load: ``power.status`` jobs (steps check-approval, then read-power: one Get Chassis Status through a
fresh IPMI session; no power command). A host has one active job at a time (``create_jobs_for_ticket``
raises TargetBusy otherwise), so the H hosts are split into groups of G (10 by default) and every group gets
one approved ticket per round; a group's next round is created (one ``create_jobs_for_ticket`` call, G jobs)
as soon as all of its current jobs ended. Tickets are created and approved before the clock starts; jobs
are created while it runs, by this process (about 8 ms a job on PostgreSQL, part of what the executor costs
a user). H jobs are in flight all along, far more than W * T threads, so the queue never runs dry and jobs/s
is the executor's capacity, not the feeder's pace; grouping by G, not by the whole fleet, means only a
group's slowest job holds back its next round. H = 100 by default: every worker process talks to all H
BMCs, and pyghmi's client misbehaves near 200 in one process (``--hosts`` allows up to 200).

Figures, from the database: jobs/s = N / wall, wall = the first job's ``created_at`` to the last ended job's
``updated_at``. Queue-to-start latency = a job's first ``job_steps.started_at`` minus its ``created_at``,
p50 and p99 (ms). With H jobs always waiting it is mostly H / throughput (Little's law): the scale-out
figure is how it shrinks as W grows. ``idle_start_ms`` is the median of the same latency for a few single
jobs created one at a time on idle workers before the load: the dispatch latency alone. The median wait is
split into created-to-sent (the dispatcher), sent-to-taken (the broker queue) and taken-to-step (the claim).
Duplicates = jobs one of whose steps was started more than once (a ``job_steps`` row with ``attempt`` > 1,
or two rows for one step) plus BMC status reads beyond one per read-power job, per host, from the lab's
command log (``get_power`` lines); ``retried`` says how many of those jobs were the runner's own retry of a
step after a recorded error (a BMC that did not answer; its read never reached the log), not a double
execution. The errors the workers logged are summed by kind after each run. Lost = jobs that did not end
succeeded (a run ends after ``--stall-s`` without progress; jobs never created because their group stalled
are lost too). Lease figures: refused claims, jobs whose steps ran in more than one worker process
(handoffs), and jobs per worker (min-max). Dispatcher figures: its passes (count, time, the share spent
delivering the outbox, and per event), summed over the workers' dispatchers (``w4_dispatch_busy_s``). CPU:
the worker processes' and the lab's (``/proc``), and this process's (the feeder), during the load;
PostgreSQL's and Redis's are not counted (tests may share them).

The peer, on the same lab, broker and machine: bare Celery, W worker processes (this script with another
hidden flag), the same threads pool, concurrency, acks-late and prefetch settings, one plain task that opens
``remotehands.bmc.ipmi.IpmiPower``, reads ``.state()`` and closes it: no database, no journal, no approval,
no ticket. It is fed the same way, N tasks in groups of G hosts, a group's next round sent once each of its
tasks has ended (the task pushes its host onto a Redis list as it ends); wall = first send to last task end;
latency = send to task start (and idle latency for single tasks, as ours). ``wN_vs_bare`` = our jobs/s /
bare jobs/s. A task that fails is lost. No traffic leaves 127.0.0.0/8.

Ends with ``RESULT jobs=.. w1_jobs_per_s=.. w2_jobs_per_s=.. w4_jobs_per_s=.. w4_p99_start_ms=..
duplicates=.. lost=..`` (duplicates and lost summed over our runs) and extra keys.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import itertools
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from remotehands.lab.process import LabInfo, start_lab, stop_lab

BROKER = "redis://127.0.0.1:6379/14"  # db 14 is this benchmark's; the tests use db 15
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SITE = "lab1"
RH_QUEUE = f"site.{SITE}"
BARE_QUEUE = "bench.bare-status"
BARE_TASK = "bench.status"
BARE_DONE = "bench.bare-done"  # Redis list: a bare task pushes its host when it ends
ENDED = ("succeeded", "failed", "cancelled", "needs_operator")
IDLE_PROBES = 3
MAX_HOSTS = 200  # pyghmi's client misbehaves with ~200 BMCs in one process


# -- worker processes (this script with a hidden flag) -------------------------------------------------------


class Recorder:
    """Events of one worker process, written to a JSON file every 10 s and at exit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sent: list[tuple[int, float]] = []  # rh: (job id, time) per message the dispatcher sent
        self.taken: list[tuple[Any, ...]] = []  # rh: (job, start, end, state); bare: (sent, start, end, ok)
        self.ticks: list[tuple[float, float, int]] = []  # rh dispatcher passes: (start, seconds, sent)
        self.delivers: list[tuple[float, float, int]] = []  # rh outbox deliveries: (start, seconds, events)
        self._lock = threading.Lock()

    def dump(self) -> None:
        with self._lock:
            data = {
                "pid": os.getpid(),
                "sent": self.sent,
                "taken": self.taken,
                "ticks": self.ticks,
                "delivers": self.delivers,
            }
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data))
            tmp.replace(self.path)

    def start(self, ready: Path) -> None:
        """Dump every 10 s and at exit; stop the worker when the benchmark process is gone."""
        from celery import signals

        parent = os.getppid()

        def loop() -> None:
            for n in itertools.count(1):
                time.sleep(2.0)
                if n % 5 == 0:
                    self.dump()
                if os.getppid() != parent:
                    os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=loop, name="bench-recorder", daemon=True).start()
        atexit.register(self.dump)
        signals.worker_ready.connect(lambda **_: ready.touch(), weak=False)


def rh_worker(stats: Path, threads: int) -> int:
    """``remotehands worker --site lab1 --workers T``, with counters (see the module docstring)."""
    from celery.app.base import Celery

    from remotehands.cli.main import main as cli_main
    from remotehands.jobs import celery_exec, outbox, runner

    recorder = Recorder(stats)
    advance, send_task, deliver = runner.advance, Celery.send_task, outbox.deliver
    tick = celery_exec.Dispatcher.tick

    def counted_advance(runtime: Any, job_id: int, owner: str) -> Any:
        start = time.time()
        state = advance(runtime, job_id, owner)
        recorder.taken.append((job_id, start, time.time(), None if state is None else str(state.value)))
        return state

    def counted_send(self: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        result = send_task(self, name, *args, **kwargs)
        if name == celery_exec.TASK:
            recorder.sent.append((int(kwargs["args"][0]), time.time()))
        return result

    def timed_tick(self: Any) -> int:
        start = time.time()
        sent = tick(self)
        recorder.ticks.append((start, time.time() - start, sent))
        return sent

    def timed_deliver(*args: Any, **kwargs: Any) -> int:
        start = time.time()
        delivered = deliver(*args, **kwargs)
        recorder.delivers.append((start, time.time() - start, delivered))
        return delivered

    runner.advance = counted_advance
    outbox.deliver = timed_deliver
    Celery.send_task = counted_send
    celery_exec.Dispatcher.tick = timed_tick  # type: ignore[method-assign]
    recorder.start(stats.with_suffix(".ready"))
    try:
        return cli_main(["worker", "--site", SITE, "--workers", str(threads)])
    finally:
        recorder.dump()


def bare_app() -> Any:
    """The peer's Celery app: the broker and consumer settings of remotehands' (``celery_exec.make_app``)."""
    from celery import Celery
    from kombu.entity import Queue

    from remotehands.jobs.celery_exec import celery_conf

    app = Celery("bench-bare", broker=BROKER)
    app.conf.update(celery_conf(BROKER), task_queues=[Queue(BARE_QUEUE, durable=True)])  # type: ignore[no-untyped-call]
    return app


def bare_worker(stats: Path, threads: int, password_file: Path) -> int:
    """The peer: a bare Celery worker whose one task reads a BMC's power state (no DB, journal, approval)."""
    import redis

    from remotehands.bmc.ipmi import IpmiPower

    password = password_file.read_text().strip()
    recorder = Recorder(stats)
    app = bare_app()
    done = redis.Redis.from_url(BROKER)

    @app.task(name=BARE_TASK)  # type: ignore[untyped-decorator]
    def status(host: str, address: str, port: int, sent_at: float) -> str:
        start, value = time.time(), ""
        try:
            driver = IpmiPower(address, port, "admin", password, timeout=3.0)
            try:
                value = driver.state().value
            finally:
                driver.close()
        finally:
            recorder.taken.append((sent_at, start, time.time(), bool(value)))
            done.rpush(BARE_DONE, host)
        return value

    recorder.start(stats.with_suffix(".ready"))
    try:
        app.Worker(
            pool="threads",
            concurrency=threads,
            hostname=f"bench-bare-{os.getpid()}@{SITE}",
            without_mingle=True,
            without_gossip=True,
            without_heartbeat=True,
        ).start()
    finally:
        recorder.dump()
    return 0


# -- helpers of the benchmark process ------------------------------------------------------------------------


@dataclass
class Run:
    kind: str  # "remotehands" or "bare"
    workers: int
    jobs: int
    wall: float = math.nan
    succeeded: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    idle_ms: list[float] = field(default_factory=list)
    dup_steps: int = 0
    retried: int = 0  # of dup_steps: the runner's own retry of a step after a recorded error
    dup_reads: int = 0
    handoffs: int = 0
    sent: int = 0
    taken: int = 0
    refused: int = 0
    left_in_queue: int = 0
    per_worker: list[int] = field(default_factory=list)
    workers_cpu: float = math.nan
    lab_cpu: float = math.nan
    feeder_cpu: float = math.nan
    breakdown: dict[str, float] = field(default_factory=dict)
    ticks: str = ""
    dispatch_busy: float = math.nan  # seconds the dispatchers spent in their passes, summed
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.wall if self.wall > 0 else math.nan

    @property
    def lost(self) -> int:
        return self.jobs - self.succeeded

    @property
    def duplicates(self) -> int:
        return self.dup_steps + self.dup_reads

    @property
    def idle_start_ms(self) -> float:
        return statistics.median(self.idle_ms) if self.idle_ms else math.nan

    @property
    def cpu_ms_per_job(self) -> float:
        return self.workers_cpu * 1000 / self.jobs

    def pct(self, q: float) -> float:
        return percentile(self.latencies_ms, q)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0-100); nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process (nan when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class LogTail:
    """The lab's command log from an offset on: ``get_power`` lines per BMC."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0
        self.reads: Counter[str] = Counter()

    def poll(self) -> None:
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        end = chunk.rfind(b"\n") + 1  # a line being written is read next time
        self.offset += end
        for line in chunk[:end].splitlines():
            entry = json.loads(line)
            if entry.get("command") == "get_power":
                self.reads[entry["bmc"]] += 1


def redis_client() -> Any:
    import redis

    return redis.Redis.from_url(BROKER)


@contextlib.contextmanager
def throwaway_database() -> Iterator[str]:
    """A new PostgreSQL database (like the tests' ``pg_db``), dropped WITH (FORCE) at the end."""
    from sqlalchemy import create_engine, text

    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"rh_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class Workers:
    """W worker processes (this script with ``flag``); ``stop`` sends SIGTERM, then SIGKILL after 20 s."""

    def __init__(self, work: Path, flag: str, count: int, threads: int, env: dict[str, str], *extra: str):
        name = flag.strip("-")
        self.stats = [work / f"{name}-{n}.json" for n in range(count)]
        self.logs = [work / f"{name}-{n}.log" for n in range(count)]
        self.procs: list[subprocess.Popen[bytes]] = []
        try:
            for stats, log in zip(self.stats, self.logs, strict=True):
                stats.unlink(missing_ok=True)
                stats.with_suffix(".ready").unlink(missing_ok=True)
                argv = [sys.executable, __file__, flag, str(stats), "--threads", str(threads), *extra]
                with log.open("wb") as out:
                    self.procs.append(
                        subprocess.Popen(
                            argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
                        )
                    )
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, timeout: float = 90.0) -> float:
        start = time.monotonic()
        while not all(s.with_suffix(".ready").exists() for s in self.stats):
            if any(p.poll() is not None for p in self.procs) or time.monotonic() - start > timeout:
                tail = "\n".join(log.read_text(errors="replace")[-1500:] for log in self.logs)
                raise SystemExit(f"the workers did not start:\n{tail}")
            time.sleep(0.05)
        return time.monotonic() - start

    def cpu(self) -> float:
        return sum(proc_cpu(p.pid) for p in self.procs)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def records(self) -> list[dict[str, Any]]:
        found = []
        for stats in self.stats:
            with contextlib.suppress(OSError, ValueError):
                found.append(json.loads(stats.read_text()))
        return found


def plan_rounds(hosts: list[str], group_size: int, jobs: int) -> list[list[tuple[str, ...]]]:
    """Per group of ``group_size`` hosts, its rounds in order (a round: the hosts that get a job), N jobs."""
    groups = [tuple(hosts[i : i + group_size]) for i in range(0, len(hosts), group_size)]
    plan: list[list[tuple[str, ...]]] = [[] for _ in groups]
    left, i = jobs, 0
    while left > 0:
        group = groups[i % len(groups)]
        take = group[: min(len(group), left)]
        plan[i % len(groups)].append(take)
        left -= len(take)
        i += 1
    return plan


def feed_rounds(
    plan: list[list[tuple[str, ...]]],
    start_round: Callable[[int, int], bool],
    ended: Callable[[int], bool],
    progress: Callable[[], int],
    stall_s: float,
) -> None:
    """Start each group's first round, then a group's next round as soon as its current one ``ended``.

    ``start_round(group, r)`` returns False when the group cannot go on; ``progress()`` is a count that grows
    while work gets done: a run stops after ``stall_s`` without growth."""
    current: set[int] = set()
    next_round = [0] * len(plan)

    def advance(group: int) -> None:
        r = next_round[group]
        if r < len(plan[group]) and start_round(group, r):
            next_round[group] = r + 1
            current.add(group)
        else:
            current.discard(group)

    for group in range(len(plan)):
        advance(group)
    last, seen = time.monotonic(), progress()
    while current:
        time.sleep(0.05)
        now = progress()
        for group in sorted(current):
            if ended(group):
                advance(group)
        if now > seen:
            last, seen = time.monotonic(), now
        elif time.monotonic() - last > stall_s:
            print(f"  stalled: no progress for {stall_s:g}s, {len(current)} groups still busy", flush=True)
            return


# -- remotehands ---------------------------------------------------------------------------------------------


def run_remotehands(
    work: Path, lab: LabInfo, workers: int, threads: int, jobs: int, group_size: int, stall_s: float
) -> Run:
    from sqlalchemy import select

    from remotehands.config import Settings
    from remotehands.errors import RemoteHandsError
    from remotehands.jobs import store
    from remotehands.jobs.tables import Job, JobStep
    from remotehands.runtime import Runtime
    from remotehands.tickets.base import Severity, TaskRequest, TicketType
    from remotehands.tickets.builtin import NewTicket

    run = Run("remotehands", workers, jobs)
    redis_client().flushdb()
    hosts = sorted(lab.hosts)
    plan = plan_rounds(hosts, group_size, jobs)
    with throwaway_database() as url:
        log_file = work / f"rh-w{workers}.log"
        rt = Runtime(Settings(db_url=url, inventory=lab.inventory_dir, log_file=log_file))
        inventory = rt.inventory()

        def ticket(targets: tuple[str, ...], title: str) -> str:
            ticket_id = rt.tickets.create(
                NewTicket(
                    type=TicketType.REMOTE_HANDS,
                    severity=Severity.DEGRADED,
                    title=title,
                    requester="alice",
                    customer="provider",
                    subscription="provider",
                    request=TaskRequest(action="power.status", targets=targets),
                ),
                inventory,
            )
            rt.tickets.approve(ticket_id, "bob")
            return ticket_id

        made = time.monotonic()
        tickets = [
            [ticket(targets, f"power status, group {g}, round {r}") for r, targets in enumerate(rounds)]
            for g, rounds in enumerate(plan)
        ]
        probes = [ticket((hosts[i % len(hosts)],), f"idle probe {i}") for i in range(IDLE_PROBES)]
        print(
            f"  {sum(map(len, tickets)) + len(probes)} tickets created and approved in "
            f"{time.monotonic() - made:.1f}s",
            flush=True,
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("RH_")}
        env.update(
            RH_DB_URL=url,
            RH_INVENTORY=str(lab.inventory_dir),
            RH_LOG_FILE=str(log_file),
            RH_EXECUTOR="celery",
            RH_BROKER_URL=BROKER,
            XDG_STATE_HOME=os.environ["XDG_STATE_HOME"],
        )

        def states(ids: list[int]) -> dict[int, str]:
            with rt.db.session() as s:
                return dict(s.execute(select(Job.id, Job.state).where(Job.id.in_(ids))).tuples().all())

        created: list[int] = []
        current: dict[int, list[int]] = {}  # group -> the job ids of its current round
        pool = Workers(work, "--rh-worker", workers, threads, env)
        try:
            print(f"  {workers} worker(s) consuming after {pool.wait_ready():.1f}s", flush=True)
            for probe in probes:  # dispatch latency on idle workers, one job at a time
                ids = store.create_jobs_for_ticket(rt.db, rt.tickets.get(probe), "bob", "bench")
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and any(v not in ENDED for v in states(ids).values()):
                    time.sleep(0.02)
                run.idle_ms += latencies(rt, ids)
            tail = LogTail(lab.log_path)
            cpu0, lab0, feeder0 = pool.cpu(), proc_cpu(lab.pid), time.process_time()
            finished = [0]

            def start_round(group: int, r: int) -> bool:
                try:
                    ids = store.create_jobs_for_ticket(
                        rt.db, rt.tickets.get(tickets[group][r]), "bob", "bench"
                    )
                except RemoteHandsError as exc:
                    print(f"  group {group} round {r} not created: {exc}", flush=True)
                    return False
                created.extend(ids)
                current[group] = ids
                return True

            ended_now: set[int] = set()

            def progress() -> int:
                pending = [j for ids in current.values() for j in ids if j not in ended_now]
                ended_now.update(j for j, st in states(pending).items() if st in ENDED)
                finished[0] = len(ended_now)
                return finished[0]

            def group_ended(group: int) -> bool:
                return all(j in ended_now for j in current[group])

            feed_rounds(plan, start_round, group_ended, progress, stall_s)
            run.workers_cpu = pool.cpu() - cpu0
            run.lab_cpu = proc_cpu(lab.pid) - lab0
            run.feeder_cpu = time.process_time() - feeder0
        finally:
            pool.stop()
        run.left_in_queue = int(redis_client().llen(RH_QUEUE))
        time.sleep(0.3)
        tail.poll()
        with rt.db.session() as s:
            rows = s.execute(
                select(Job.id, Job.target, Job.state, Job.created_at, Job.updated_at).where(
                    Job.id.in_(created)
                )
            ).all()
            steps = s.execute(
                select(
                    JobStep.job_id,
                    JobStep.idx,
                    JobStep.name,
                    JobStep.attempt,
                    JobStep.status,
                    JobStep.started_at,
                    JobStep.owner,
                ).where(JobStep.job_id.in_(created))
            ).all()
        rt.db.dispose()
    score_remotehands(run, rows, steps, tail, pool.records())
    run.errors = errors_in([*pool.logs, log_file])
    return run


def latencies(rt: Any, ids: list[int]) -> list[float]:
    """Per job of ``ids``: its first step's start minus its creation, ms."""
    from sqlalchemy import func, select

    from remotehands.jobs.tables import Job, JobStep

    with rt.db.session() as s:
        found = s.execute(
            select(Job.created_at, func.min(JobStep.started_at))
            .join(JobStep, JobStep.job_id == Job.id)
            .where(Job.id.in_(ids))
            .group_by(Job.id)
        ).all()
    return [(start - made).total_seconds() * 1000 for made, start in found]


def score_remotehands(run: Run, rows: Any, steps: Any, tail: LogTail, records: list[dict[str, Any]]) -> None:
    jobs = {row.id: row for row in rows}
    run.succeeded = sum(1 for row in rows if row.state == "succeeded")
    ended = [row.updated_at for row in rows if row.state in ENDED]
    if rows and ended:
        run.wall = (max(ended) - min(row.created_at for row in rows)).total_seconds()
    first_start: dict[int, Any] = {}
    per_step: Counter[tuple[int, int]] = Counter()
    workers_of: dict[int, set[str]] = defaultdict(set)
    retried: set[int] = set()
    read_jobs: Counter[str] = Counter()
    for step in steps:
        per_step[(step.job_id, step.idx)] += 1
        # A lease owner is host:pid:random of the worker process (and, newer, :random per task run).
        workers_of[step.job_id].add(":".join(step.owner.split(":")[:3]))
        if step.status in ("retry", "failed"):
            retried.add(step.job_id)
        if step.job_id not in first_start or step.started_at < first_start[step.job_id]:
            first_start[step.job_id] = step.started_at
        if step.name == "read-power" and step.attempt == 1:
            read_jobs[jobs[step.job_id].target] += 1
    run.latencies_ms = [
        (start - jobs[job].created_at).total_seconds() * 1000 for job, start in first_start.items()
    ]
    twice = {job for (job, _), n in per_step.items() if n > 1} | {s.job_id for s in steps if s.attempt > 1}
    run.dup_steps = len(twice)
    run.retried = len(twice & retried)
    run.dup_reads = sum(max(0, n - read_jobs[host]) for host, n in tail.reads.items())
    run.handoffs = sum(1 for names in workers_of.values() if len(names) > 1)
    # The workers' counters: messages sent and taken, refused claims, and where a job's wait went.
    first_sent: dict[int, float] = {}
    claimed_at: dict[int, float] = {}
    service: list[float] = []
    for record in records:
        run.sent += len(record["sent"])
        for job, at in record["sent"]:
            if job in jobs and at < first_sent.get(job, math.inf):
                first_sent[job] = at
        claimed = 0
        for job, start, end, state in record["taken"]:
            run.taken += 1
            if state is None:
                run.refused += 1
            elif job in jobs:
                claimed += 1
                service.append(end - start)
                claimed_at.setdefault(job, start)
        run.per_worker.append(claimed)
    run.per_worker.sort()
    waits = [
        (
            first_sent[job] - jobs[job].created_at.timestamp(),
            claimed_at[job] - first_sent[job],
            first_start[job].timestamp() - claimed_at[job],
        )
        for job in jobs
        if job in first_sent and job in claimed_at and job in first_start
    ]
    if waits:
        for i, name in enumerate(("created_to_sent", "sent_to_taken", "taken_to_step")):
            run.breakdown[name] = statistics.median(w[i] for w in waits) * 1000
    if service:
        run.breakdown["task"] = statistics.median(service) * 1000
    if run.wall > 0:
        ticks = [t for r in records for t in r["ticks"]]
        delivers = [d for r in records for d in r["delivers"]]
        if ticks:
            run.dispatch_busy = sum(t[1] for t in ticks)
            delivering, events = sum(d[1] for d in delivers), sum(d[2] for d in delivers)
            median, longest = statistics.median(t[1] for t in ticks), max(t[1] for t in ticks)
            run.ticks = (
                f"dispatcher passes {len(ticks)} ({run.dispatch_busy:.1f}s in all): median "
                f"{median * 1000:.0f} ms, max {longest * 1000:.0f} ms; outbox delivery "
                f"{delivering / max(run.dispatch_busy, 1e-9) * 100:.0f}% of it, {events} events, "
                f"{delivering * 1000 / max(events, 1):.0f} ms an event"
            )


# -- the peer: bare Celery -----------------------------------------------------------------------------------


def run_bare(
    work: Path, lab: LabInfo, workers: int, threads: int, jobs: int, group_size: int, stall_s: float
) -> Run:
    from kombu.entity import Queue

    run = Run("bare", workers, jobs)
    broker = redis_client()
    broker.flushdb()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RH_")}
    hosts = sorted(lab.hosts)
    plan = plan_rounds(hosts, group_size, jobs)
    queue = Queue(BARE_QUEUE, durable=True)  # type: ignore[no-untyped-call]
    app = bare_app()
    sends: list[float] = []

    def send(host: str) -> None:
        bmc = lab.hosts[host]
        sent_at = time.time()
        sends.append(sent_at)
        app.send_task(BARE_TASK, args=[host, bmc.address, bmc.port, sent_at], queue=queue, declare=[queue])

    def done() -> list[str]:
        found: list[bytes] | None = broker.lpop(BARE_DONE, 10_000)
        return [h.decode() for h in found or []]

    pool = Workers(work, "--bare-worker", workers, threads, env, "--password-file", str(lab.password_file))
    try:
        print(f"  {workers} bare worker(s) consuming after {pool.wait_ready():.1f}s", flush=True)
        for i in range(IDLE_PROBES):
            send(hosts[i % len(hosts)])
            deadline = time.monotonic() + 30
            while not done() and time.monotonic() < deadline:
                time.sleep(0.02)
        probes_end = time.time()
        sends.clear()
        tail = LogTail(lab.log_path)
        cpu0, lab0, feeder0 = pool.cpu(), proc_cpu(lab.pid), time.process_time()
        outstanding: Counter[str] = Counter()
        finished = [0]

        def start_round(group: int, r: int) -> bool:
            for host in plan[group][r]:
                outstanding[host] += 1
                send(host)
            return True

        def progress() -> int:
            for host in done():
                outstanding[host] -= 1
                finished[0] += 1
            return finished[0]

        def group_ended(group: int) -> bool:
            return all(outstanding[h] <= 0 for h in plan[group][0])

        feed_rounds(plan, start_round, group_ended, progress, stall_s)
        run.workers_cpu = pool.cpu() - cpu0
        run.lab_cpu = proc_cpu(lab.pid) - lab0
        run.feeder_cpu = time.process_time() - feeder0
    finally:
        pool.stop()
        with contextlib.suppress(Exception):
            app.close()
    run.left_in_queue = int(broker.llen(BARE_QUEUE))
    time.sleep(0.3)
    tail.poll()
    first = min(sends, default=math.inf)
    ends: list[float] = []
    for record in pool.records():
        run.idle_ms += [(t[1] - t[0]) * 1000 for t in record["taken"] if t[0] < probes_end]
        mine = [t for t in record["taken"] if t[0] >= first]
        run.per_worker.append(len(mine))
        for sent_at, start, end, ok in mine:
            run.taken += 1
            run.latencies_ms.append((start - sent_at) * 1000)
            if ok:
                run.succeeded += 1
                ends.append(end)
    run.per_worker.sort()
    run.sent = len(sends)
    if ends:
        run.wall = max(ends) - first
    expected = Counter(h for rounds in plan for hosts_ in rounds for h in hosts_)
    run.dup_reads = sum(max(0, n - expected[h]) for h, n in tail.reads.items())
    run.errors = errors_in(pool.logs)
    return run


def errors_in(logs: list[Path]) -> Counter[str]:
    """remotehands errors the workers logged (a failed bare task, a retried step), by kind and message."""
    import re

    found: Counter[str] = Counter()
    for log in logs:
        with contextlib.suppress(OSError):
            text = log.read_text(errors="replace")
            for match in re.finditer(r"(?:remotehands\.errors\.(\w+)|retry \d+ in \S+): ([^\n]*)", text):
                message = re.sub(r"[0-9][0-9.:]*", "N", match.group(2).split(". Fix:")[0])
                found[f"{match.group(1) or 'retried step'}: {message[:90]}"] += 1
    return found


# -- main ----------------------------------------------------------------------------------------------------


def describe(run: Run) -> str:
    share = f"{run.per_worker[0]}-{run.per_worker[-1]}" if run.per_worker else "-"
    line = (
        f"  {run.kind} W={run.workers}: {run.jobs_per_s:.1f} jobs/s (wall {run.wall:.1f}s), start p50 "
        f"{run.pct(50):.0f} ms p99 {run.pct(99):.0f} ms, idle start {run.idle_start_ms:.0f} ms, "
        f"succeeded {run.succeeded}/{run.jobs}, duplicates {run.duplicates} (steps started twice "
        f"{run.dup_steps}, of which retried after an error {run.retried}; extra BMC reads {run.dup_reads}), "
        f"jobs per worker {share}\n"
        f"    CPU: workers {run.workers_cpu:.1f}s ({run.cpu_ms_per_job:.0f} ms/job), lab {run.lab_cpu:.1f}s, "
        f"feeder {run.feeder_cpu:.1f}s"
    )
    if run.kind == "remotehands":
        line += (
            f"\n    messages sent {run.sent} ({run.sent / max(run.jobs, 1):.2f}/job), taken {run.taken}, "
            f"refused claims {run.refused}, left in queue {run.left_in_queue}, handoffs {run.handoffs}"
        )
        if run.breakdown:
            line += "\n    median " + ", ".join(f"{k} {v:.0f} ms" for k, v in run.breakdown.items())
        if run.ticks:
            line += f"\n    {run.ticks}"
    for what, n in run.errors.most_common(3):
        line += f"\n    logged {n}x {what}"
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="300 jobs, 50 hosts")
    parser.add_argument("--jobs", type=int, default=None, help="jobs per run (default 10,000)")
    parser.add_argument(
        "--hosts", type=int, default=None, help=f"lab hosts (default 100, at most {MAX_HOSTS})"
    )
    parser.add_argument("--workers", default="1,2,4", help="worker process counts (default 1,2,4)")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker process (default 4)")
    parser.add_argument("--group", type=int, default=10, help="hosts per ticket (default 10)")
    parser.add_argument(
        "--stall-s", type=float, default=120.0, help="end a run after this long without progress"
    )
    parser.add_argument("--no-bare", action="store_true", help="skip the bare Celery peer")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (worker logs, lab log)")
    parser.add_argument("--rh-worker", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--bare-worker", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--password-file", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rh_worker is not None:
        return rh_worker(args.rh_worker, args.threads)
    if args.bare_worker is not None:
        return bare_worker(args.bare_worker, args.threads, args.password_file)
    jobs = args.jobs or (300 if args.quick else 10_000)
    hosts = args.hosts or (50 if args.quick else 100)
    if not 1 <= hosts <= MAX_HOSTS:
        raise SystemExit(
            f"--hosts: 1 to {MAX_HOSTS} (pyghmi's client misbehaves with ~200 BMCs in one process)"
        )
    counts = [int(w) for w in args.workers.split(",")]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the finally blocks stop what was started
    work = Path(tempfile.mkdtemp(prefix="rh-bench-scale-"))
    os.environ["XDG_STATE_HOME"] = str(work / "state")  # the ticket key, shared with the workers
    started = time.monotonic()
    print(
        f"{jobs} power.status jobs per run on {hosts} lab hosts ({args.group} per ticket), worker processes "
        f"{counts} x {args.threads} threads; work dir {work}",
        flush=True,
    )
    ours: dict[int, Run] = {}
    bare: dict[int, Run] = {}
    try:
        lab = start_lab(work / "lab", hosts=hosts, redfish=0, macs=0, cycle_delay=0.5, timeout=120)
        print(f"lab up: {hosts} simulated BMCs on 127.0.0.1 in {time.monotonic() - started:.1f}s", flush=True)
        for w in counts:
            ours[w] = run_remotehands(work, lab, w, args.threads, jobs, args.group, args.stall_s)
            print(describe(ours[w]), flush=True)
        if not args.no_bare:
            for w in counts:
                bare[w] = run_bare(work, lab, w, args.threads, jobs, args.group, args.stall_s)
                print(describe(bare[w]), flush=True)
    finally:
        stop_lab(work / "lab")
        with contextlib.suppress(Exception):
            redis_client().flushdb()
        if len(ours) + len(bare) < len(counts) * (1 if args.no_bare else 2):
            print(f"stopped early; logs are in {work}", file=sys.stderr)
    report(jobs, hosts, args.threads, ours, bare, time.monotonic() - started)
    if args.keep:
        print(f"work dir kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def report(
    jobs: int, hosts: int, threads: int, ours: dict[int, Run], bare: dict[int, Run], took: float
) -> None:
    def fmt(value: float, digits: int = 1) -> str:
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"

    def get(runs: dict[int, Run], w: int, figure: Callable[[Run], float]) -> float:
        return figure(runs[w]) if w in runs else math.nan

    print()
    print(
        f"Celery executor scale-out: {jobs} power.status jobs per run, {hosts} hosts, {threads} threads "
        "a worker "
        "(ratio = jobs/s / bare Celery's with as many workers)"
    )
    header = (
        f"{'executor':<12} {'workers':>7} {'jobs/s':>8} {'ratio':>6} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'idle ms':>8} {'CPU ms/job':>10} {'dup':>4} {'lost':>5}"
    )
    print(header)
    print("-" * len(header))
    for runs in (ours, bare):
        for w, run in runs.items():
            ratio = run.jobs_per_s / get(bare, w, lambda r: r.jobs_per_s) if runs is ours else math.nan
            print(
                f"{run.kind:<12} {w:>7} {fmt(run.jobs_per_s):>8} {fmt(ratio, 2):>6} {fmt(run.pct(50), 0):>8} "
                f"{fmt(run.pct(99), 0):>8} {fmt(run.idle_start_ms, 0):>8} {fmt(run.cpu_ms_per_job, 0):>10} "
                f"{run.duplicates:>4} {run.lost:>5}"
            )
    print(f"(whole benchmark: {took:.0f}s)")
    fields = {"jobs": str(jobs)}
    for w in (1, 2, 4):
        fields[f"w{w}_jobs_per_s"] = fmt(get(ours, w, lambda r: r.jobs_per_s))
    fields["w4_p99_start_ms"] = fmt(get(ours, 4, lambda r: r.pct(99)), 0)
    fields["duplicates"] = str(sum(r.duplicates for r in ours.values()))
    fields["lost"] = str(sum(r.lost for r in ours.values()))
    fields["hosts"] = str(hosts)
    fields["threads"] = str(threads)
    for w in (1, 2, 4):
        if w != 4:
            fields[f"w{w}_p99_start_ms"] = fmt(get(ours, w, lambda r: r.pct(99)), 0)
        fields[f"w{w}_p50_start_ms"] = fmt(get(ours, w, lambda r: r.pct(50)), 0)
    for w in (1, 2, 4):
        fields[f"bare_w{w}_jobs_per_s"] = fmt(get(bare, w, lambda r: r.jobs_per_s))
    for w in (1, 2, 4):
        ratio = get(ours, w, lambda r: r.jobs_per_s) / get(bare, w, lambda r: r.jobs_per_s)
        fields[f"w{w}_vs_bare"] = fmt(ratio, 2)
    fields["w4_vs_w1"] = fmt(get(ours, 4, lambda r: r.jobs_per_s) / get(ours, 1, lambda r: r.jobs_per_s), 2)
    fields["bare_w4_vs_w1"] = fmt(
        get(bare, 4, lambda r: r.jobs_per_s) / get(bare, 1, lambda r: r.jobs_per_s), 2
    )
    fields["bare_w4_p99_start_ms"] = fmt(get(bare, 4, lambda r: r.pct(99)), 0)
    fields["w4_idle_start_ms"] = fmt(get(ours, 4, lambda r: r.idle_start_ms), 0)
    fields["bare_w4_idle_start_ms"] = fmt(get(bare, 4, lambda r: r.idle_start_ms), 0)
    fields["w4_cpu_ms_per_job"] = fmt(get(ours, 4, lambda r: r.cpu_ms_per_job), 0)
    fields["bare_w4_cpu_ms_per_job"] = fmt(get(bare, 4, lambda r: r.cpu_ms_per_job), 0)
    fields["w4_msgs_per_job"] = fmt(get(ours, 4, lambda r: r.sent / r.jobs), 2)
    fields["w4_refused_claims"] = str(ours[4].refused) if 4 in ours else "nan"
    fields["retried"] = str(sum(r.retried for r in ours.values()))
    fields["dup_bmc_reads"] = str(sum(r.dup_reads for r in ours.values()))
    fields["handoffs"] = str(sum(r.handoffs for r in ours.values()))
    fields["w4_dispatch_busy_s"] = fmt(get(ours, 4, lambda r: r.dispatch_busy))
    fields["bare_duplicates"] = str(sum(r.duplicates for r in bare.values()))
    fields["bare_lost"] = str(sum(r.lost for r in bare.values()))
    print("RESULT " + " ".join(f"{k}={v}" for k, v in fields.items()))


if __name__ == "__main__":
    sys.exit(main())
