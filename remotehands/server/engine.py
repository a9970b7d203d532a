"""What the server runs beside the HTTP handlers: the intake of stored webhooks and, with the ``local``
executor, the jobs themselves. One thread, woken at once when a webhook arrives, else every ``poll``."""

from __future__ import annotations

import logging
import threading

from remotehands.errors import RemoteHandsError
from remotehands.intake import webhooks
from remotehands.jobs.executor import LocalExecutor
from remotehands.runtime import Runtime

log = logging.getLogger(__name__)


class Engine:
    def __init__(self, runtime: Runtime, *, run_jobs: bool = True, poll: float = 0.2) -> None:
        self.runtime = runtime
        self.poll = poll
        self.executor = LocalExecutor(runtime) if run_jobs else None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rh-engine", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)
        if self.executor is not None:
            self.executor.shutdown()

    def tick(self) -> None:
        """One pass: process due webhooks, then advance due jobs and deliver the outbox."""
        try:
            webhooks.process_due(self.runtime)
        except RemoteHandsError as exc:
            log.warning("intake: %s", exc)
        if self.executor is not None:
            self.executor.tick()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("server engine: unexpected error; continuing")
            self._wake.wait(self.poll)
            self._wake.clear()
