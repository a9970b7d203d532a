"""The lease heartbeat: a job's lease renewed while one of its steps acts."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from datetime import timedelta

from sqlalchemy import update

from remotehands.db import Database
from remotehands.jobs import store
from remotehands.jobs.tables import Job

log = logging.getLogger(__name__)


@contextlib.contextmanager
def heartbeat(db: Database, job_id: int, owner: str, lease: int) -> Iterator[None]:
    """Renew the lease every third of it while a step acts: a step may block for long (a restore, a
    download), and an expired lease would let another worker reconcile it mid-act. Dies with the process,
    so a dead worker's lease still expires."""
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(lease / 3):
            try:
                with db.session() as s:
                    s.execute(
                        update(Job)
                        .where(Job.id == job_id, Job.lease_owner == owner)
                        .values(lease_expires_at=store.now() + timedelta(seconds=lease))
                        .execution_options(synchronize_session=False)
                    )
            except Exception:  # the database is away for a moment: try again at the next beat
                log.warning("job %s: could not renew the lease", job_id, exc_info=True)

    beat = threading.Thread(target=renew, name=f"lease-{job_id}", daemon=True)
    beat.start()
    try:
        yield
    finally:
        stop.set()
        beat.join()
