"""The sweeper: frees leases of dead workers and fails jobs past their deadline."""

from __future__ import annotations

import logging

from sqlalchemy import select

from remotehands.db import Database
from remotehands.jobs import store
from remotehands.jobs.states import JobEvent, JobState
from remotehands.jobs.tables import Job

log = logging.getLogger(__name__)


def sweep(db: Database) -> dict[str, int]:
    """One pass. Jobs whose lease expired become claimable by the normal claim query; here we only clear
    leases of dead local workers early and fail unleased jobs past their deadline. Returns counts."""
    reclaimed = store.reclaim_dead_local_leases(db)
    failed = 0
    stamp = store.now()
    with db.session() as s:
        overdue = (
            s.execute(
                select(Job).where(
                    Job.state.in_([JobState.QUEUED.value, JobState.WAITING.value]),
                    Job.deadline_at < stamp,
                    Job.lease_owner.is_(None),
                )
            )
            .scalars()
            .all()
        )
        for job in overdue:
            store.finish(s, job, JobEvent.FAIL, "deadline passed before the job could finish")
            failed += 1
    if reclaimed or failed:
        log.info("sweeper: reclaimed %s dead leases, failed %s overdue jobs", reclaimed, failed)
    return {"reclaimed": reclaimed, "failed": failed}
