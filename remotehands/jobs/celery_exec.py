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
from remotehands.jobs import outbox, runner, store, sweeper
from remotehands.jobs.tables import Job

if TYPE_CHECKING:
    from celery import Celery

    from remotehands.db import Database
    from remotehands.inventory.models import Inventory
    from remotehands.runtime import Runtime

log = logging.getLogger(__name__)

TASK = "remotehands.advance"
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


def make_app(runtime: Runtime, owner: str) -> Celery:
    """The Celery app of this process: broker from the settings, task ``remotehands.advance``."""
    from celery import Celery

    url = runtime.settings.broker_url
    if not url:
        raise ConfigError(
            "executor celery needs broker_url", fix="set broker_url (redis://... or amqp://...)"
        )
    app = Celery("remotehands", broker=url)
    app.conf.update(celery_conf(url))

    @app.task(name=TASK)  # type: ignore[untyped-decorator]
    def advance(job_id: int) -> str | None:
        # A lease owner per task run, not per process: a duplicated message taken by two threads of one
        # worker must not let both hold the job (a claim succeeds again for the lease's own owner).
        state = runner.advance(runtime, int(job_id), f"{owner}:{uuid.uuid4().hex[:8]}")
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
    app = make_app(runtime, owner)
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
        dispatcher.stop()
        for thread in threads:
            thread.join(5)
