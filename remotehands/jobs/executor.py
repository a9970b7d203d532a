"""The ``local`` executor: a thread pool inside the process, no broker.

A loop finds due jobs, hands each to a thread that advances it (one work unit: until it ends or waits),
delivers the outbox and runs the sweeper. ``remotehands worker`` runs it until stopped;
``remotehands run`` runs it until the jobs of one ticket have ended.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from remotehands.errors import RetryableError
from remotehands.jobs import outbox, runner, store, sweeper
from remotehands.jobs.states import JobState
from remotehands.runtime import Runtime

log = logging.getLogger(__name__)

SLA_CHECK_S = 30.0  # how often a worker looks for tickets whose SLA response time passed


class LocalExecutor:
    """Runs due jobs on ``workers`` threads. One lease owner id per executor."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        workers: int | None = None,
        poll: float = 0.1,
        only: frozenset[int] | None = None,
    ) -> None:
        self.runtime = runtime
        self.only = only  # ``run --ticket`` advances its own jobs, not the whole queue
        self.owner = store.new_owner()
        self.poll = poll
        self.workers = workers or runtime.settings.workers
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="rh-job")
        self._running: dict[int, Future[JobState | None]] = {}
        self._stop = threading.Event()
        self._last_sweep = 0.0
        self._last_sla = 0.0

    def tick(self) -> int:
        """One pass: sweep (at most every 2 s), start due jobs, deliver the outbox. Returns jobs started."""
        db = self.runtime.db
        now = time.monotonic()
        try:
            if now - self._last_sweep > 2.0:
                sweeper.sweep(db)
                self._last_sweep = now
            if now - self._last_sla > SLA_CHECK_S and self.only is None:
                from remotehands.alerts.escalation import check_sla

                check_sla(self.runtime)
                self._last_sla = now
            for job_id, fut in list(self._running.items()):
                if fut.done():
                    del self._running[job_id]
            started = 0
            free = self.workers - len(self._running)
            # Take no more than there are free threads: a job queued inside the pool would hold nothing,
            # and a worker told to stop must not start power actions it had queued.
            for job_id in store.runnable_ids(db, limit=max(free, 0) + len(self._running), only=self.only):
                if free <= 0:
                    break
                if job_id in self._running:
                    continue
                self._running[job_id] = self._pool.submit(runner.advance, self.runtime, job_id, self.owner)
                started += 1
                free -= 1
            outbox.deliver(db, self.runtime.ticket_system, owner=self.owner)
        except RetryableError as exc:
            log.warning("executor: %s", exc)
            return 0
        return started

    def run_until(
        self,
        done: Callable[[], bool],
        *,
        timeout: float | None = None,
        on_tick: Callable[[], None] | None = None,
    ) -> bool:
        """Tick until ``done()`` is true (then drain the outbox) or ``timeout``; True when done."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stop.is_set():
            self.tick()
            if on_tick:
                on_tick()
            if done() and not self._running_any():
                outbox.deliver(self.runtime.db, self.runtime.ticket_system, owner=self.owner)
                return True
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(self.poll)
        return False

    def _running_any(self) -> bool:
        return any(not f.done() for f in self._running.values())

    def stop(self) -> None:
        self._stop.set()

    def shutdown(self) -> None:
        """Stop: finish the work units in progress (each ends at a step boundary or wait), start no more."""
        self._stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
