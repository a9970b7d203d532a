"""The ``celery`` executor: work units dispatched as Celery tasks to one queue per site (``site.<site>``).

The database stays the truth. A message only says "advance job J"; the worker that takes it claims J's lease
in the database (``store.claim``) and runs it as far as it goes now, exactly as the local executor does, so
a lost message costs nothing (the job is still due and is dispatched again) and a duplicated one costs one
refused claim. Waits stay in the database (``next_run_at``): nothing is parked in the broker as a countdown.

Each ``remotehands worker --site S`` consumes ``site.S`` and dispatches its own site's due jobs (BMC
networks are not routable between sites, so a job never runs on another site's worker). Settings follow
what a crash-safe consumer needs: late acks, reject on worker lost, prefetch 1, long-running tasks
cancelled on a lost connection, quorum queues on RabbitMQ, and a Redis visibility timeout far above any
work unit (a step that waits returns a ``Wait`` instead of holding the message).

A job with a long step (``Step.long``: a playbook run can take longer than RabbitMQ keeps a message
unacknowledged, its ``consumer_timeout``, after which it closes the channel and the worker's running tasks
are cancelled) is not run in the task's thread: the task hands it to one of the worker's long-unit threads
(``LongUnits``) and returns, so its message is acknowledged at once. The job's lease, renewed while the
step runs, holds it; if the worker dies, the lease expires and the job is dispatched again, as after any
lost message. When the worker's long-unit threads are all busy, the task leaves the job due and a
dispatcher sends it again later.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select, update

from remotehands.errors import ConfigError, RemoteHandsError, UnknownTarget
from remotehands.jobs import actions, outbox, runner, store, sweeper
from remotehands.jobs.states import TERMINAL
from remotehands.jobs.tables import Job

if TYPE_CHECKING:
    from celery import Celery

    from remotehands.db import Database
    from remotehands.inventory.models import Inventory
    from remotehands.runtime import Runtime

log = logging.getLogger(__name__)

TASK = "remotehands.advance"
LONG_UNITS = 4  # jobs with a long step a worker runs at once, beside its task threads
REDISPATCH_S = 10.0  # a due job whose message nobody took (a lost message) is sent again after this
VISIBILITY_S = 6 * 3600  # Redis: far above the longest work unit, so a slow one is never redelivered


def queue_of(site: str) -> str:
    return f"site.{site}"


def site_of(inventory: Inventory, target: str) -> str:
    """The site of a job's target (a host, a network device or an array); ``UnknownTarget`` otherwise."""
    for table in (inventory.hosts, inventory.network_devices, inventory.arrays, inventory.pdus):
        found = table.get(target)
        if found is not None:
            return str(found.site)
    raise UnknownTarget(f"no host, device or array {target!r} in the inventory", fix="check the job's target")


def celery_conf(url: str) -> dict[str, Any]:
    """The Celery settings of a worker on broker ``url`` (``benchmarks/scale.py``'s bare peer uses them too):
    late acks, reject on worker lost, prefetch 1, running tasks cancelled on a lost connection, JSON only,
    and on Redis a visibility timeout far above any work unit."""
    amqp = url.startswith(("amqp", "pyamqp"))
    return {
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {} if amqp else {"visibility_timeout": VISIBILITY_S},
        "worker_hijack_root_logger": False,
        **({"task_create_missing_queues": False} if amqp else {}),
    }


class LongUnits:
    """The worker's threads for jobs with a long step: at most ``slots`` at once, started from a task that
    then returns (its message is acknowledged while the job runs on here, under its lease)."""

    def __init__(self, runtime: Runtime, slots: int = LONG_UNITS) -> None:
        self.runtime = runtime
        self._slots = threading.BoundedSemaphore(slots)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    @staticmethod
    def wanted(runtime: Runtime, job_id: int) -> bool:
        """Whether job ``job_id`` has a long step still to run."""
        with runtime.db.session() as s:
            job = store.get_job(s, job_id)
            if job.state in TERMINAL:
                return False
            steps = actions.get(job.action).job_steps(dict(job.data or {}))
            return any(step.long for step in steps[job.step_index :])

    def start(self, job_id: int, owner: str) -> bool:
        """Advance ``job_id`` in a thread of its own; False (nothing started) when every slot is busy."""
        if not self._slots.acquire(blocking=False):
            log.info("job %s: every long-unit thread is busy; left for a later dispatch", job_id)
            return False
        thread = threading.Thread(
            target=self._run, args=(job_id, owner), name=f"rh-long-{job_id}", daemon=True
        )
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return True

    def _run(self, job_id: int, owner: str) -> None:
        try:
            runner.advance(self.runtime, job_id, owner)
        except Exception:  # the runner records what it can; the lease expires and the job is sent again
            log.exception("job %s: the long unit failed", job_id)
        finally:
            self._slots.release()

    def running(self) -> int:
        with self._lock:
            return sum(t.is_alive() for t in self._threads)

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the running long units (a warm shutdown lets them finish, as Celery does its tasks)."""
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)


def make_app(runtime: Runtime, owner: str, long_units: LongUnits | None = None) -> Celery:
    """The Celery app of this process: broker from the settings, task ``remotehands.advance``; jobs with a
    long step go to ``long_units`` (``LongUnits``)."""
    from celery import Celery

    url = runtime.settings.broker_url
    if not url:
        raise ConfigError(
            "executor celery needs broker_url", fix="set broker_url (redis://... or amqp://...)"
        )
    app = Celery("remotehands", broker=url)
    app.conf.update(celery_conf(url))

    long = long_units if long_units is not None else LongUnits(runtime)

    @app.task(name=TASK, shared=False)  # type: ignore[untyped-decorator]
    def advance(job_id: int) -> str | None:
        # A lease owner per task run, not per process: a duplicated message taken by two threads of one
        # worker must not let both hold the job (a claim succeeds again for the lease's own owner).
        run_owner = f"{owner}:{uuid.uuid4().hex[:8]}"
        if LongUnits.wanted(runtime, int(job_id)):
            return "long unit started" if long.start(int(job_id), run_owner) else None
        state = runner.advance(runtime, int(job_id), run_owner)
        return state.value if state is not None else None

    return app


def site_queue(runtime: Runtime, site: str) -> Any:
    """The kombu queue of ``site``: durable; a quorum queue on RabbitMQ (replicated, and what late acks
    need to survive a broker restart)."""
    from kombu.entity import Queue

    amqp = runtime.settings.broker_url.startswith(("amqp", "pyamqp"))
    arguments = {"x-queue-type": "quorum"} if amqp else None
    return Queue(queue_of(site), durable=True, queue_arguments=arguments)  # type: ignore[no-untyped-call]


def mark_dispatched(db: Database, job_ids: list[int], again_after: float) -> list[int]:
    """Of ``job_ids``, those this caller may send to the broker now: not sent yet for their current due
    time (``next_run_at``), or sent more than ``again_after`` seconds ago (the message was lost or is still
    queued). One conditional UPDATE, so of several dispatchers racing for a job exactly one wins."""
    if not job_ids:
        return []
    stamp = store.now()
    with db.session() as s:
        won = s.execute(
            update(Job)
            .where(
                Job.id.in_(job_ids),
                or_(
                    Job.dispatched_at.is_(None),
                    Job.dispatched_for.is_distinct_from(Job.next_run_at),
                    Job.dispatched_at < stamp - timedelta(seconds=again_after),
                ),
            )
            .values(dispatched_at=stamp, dispatched_for=Job.next_run_at)
            .returning(Job.id)
            .execution_options(synchronize_session=False)
        )
        return sorted(won.scalars())


class Dispatcher:
    """Sends this site's due jobs to its queue and sweeps dead leases; delivers the outbox in a loop of its
    own (one of each per worker)."""

    def __init__(self, runtime: Runtime, app: Celery, site: str, owner: str) -> None:
        self.runtime, self.app, self.site, self.owner = runtime, app, site, owner
        self.queue = site_queue(runtime, site)
        self._stop = threading.Event()

    def tick(self) -> int:
        """One pass; returns how many messages were sent."""
        db = self.runtime.db
        sweeper.sweep(db)
        inventory = self.runtime.inventory()
        ids = store.runnable_ids(db, limit=200)
        with db.session() as s:
            targets = {
                row.id: row.target for row in s.execute(select(Job.id, Job.target).where(Job.id.in_(ids)))
            }
        mine = []
        for job_id in ids:
            try:
                if site_of(inventory, targets[job_id]) == self.site:
                    mine.append(job_id)
            except (KeyError, RemoteHandsError):
                continue
        # Sent once per due time by one of the site's dispatchers: a job that waited (a new next_run_at) is
        # sent as soon as it is due again; the same due time again only after REDISPATCH_S.
        won = mark_dispatched(db, mine, REDISPATCH_S)
        for job_id in won:
            self.app.send_task(TASK, args=[job_id], queue=self.queue, declare=[self.queue])
        return len(won)

    def deliver(self) -> int:
        """Write due outbox events to their tickets; returns how many."""
        return outbox.deliver(self.runtime.db, self.runtime.ticket_system, owner=self.owner)

    def run(self, poll: float = 0.2) -> None:
        self._loop(self.tick, poll)

    def run_outbox(self, poll: float = 0.5) -> None:
        """Its own loop: a slow ticket system must not hold up dispatching (measured: delivery took 87-95%
        of a combined loop's time and delayed new jobs by seconds)."""
        self._loop(self.deliver, poll)

    def _loop(self, work: Callable[[], int], poll: float) -> None:
        while not self._stop.is_set():
            try:
                work()
            except RemoteHandsError as exc:
                log.warning("dispatcher: %s", exc)
            except Exception:  # a bug or a lost database must not silently end this worker's dispatching
                log.exception("dispatcher: unexpected error; continuing")
            self._stop.wait(poll)

    def stop(self) -> None:
        self._stop.set()


def run_worker(runtime: Runtime, site: str, owner: str, concurrency: int) -> None:
    """A Celery worker on ``site.<site>`` (threads pool: a SIGKILL takes the whole worker, and its unacked
    message goes back to the queue) with this site's dispatcher beside it. Returns when the worker stops."""
    long_units = LongUnits(runtime)
    app = make_app(runtime, owner, long_units)
    queue = site_queue(runtime, site)
    app.conf.task_queues = [queue]
    dispatcher = Dispatcher(runtime, app, site, owner)
    threads = [
        threading.Thread(target=dispatcher.run, name="rh-dispatch", daemon=True),
        threading.Thread(target=dispatcher.run_outbox, name="rh-outbox", daemon=True),
    ]
    for thread in threads:
        thread.start()
    try:
        app.Worker(
            pool="threads",
            concurrency=concurrency,
            hostname=f"rh-{owner.replace(':', '-')}@{site}",
            without_mingle=True,
            without_gossip=True,
            without_heartbeat=True,
        ).start()
    finally:
        if long_units.running():
            log.info("worker: waiting for %d long unit(s) to finish", long_units.running())
        long_units.wait()
        dispatcher.stop()
        for thread in threads:
            thread.join(5)
