"""Jobs as plain data (for ``--json``, the API and the pages): one shape everywhere."""

from __future__ import annotations

from typing import Any

from remotehands.jobs import store
from remotehands.jobs.tables import Job, JobStep


def job_dict(job: Job, steps: list[JobStep] | None = None) -> dict[str, Any]:
    """A job (and its steps when given) as JSON-able data; datetimes stay datetimes."""
    data: dict[str, Any] = {
        "id": job.id,
        "ticket": job.ticket_id,
        "ticket_system": job.ticket_system,
        "action": job.action,
        "target": job.target,
        "state": job.state,
        "purpose": job.purpose,
        "reason": job.reason,
        "step_index": job.step_index,
        "site": job.site,
        "created_at": job.created_at,
        "next_run_at": job.next_run_at,
        "lease_owner": job.lease_owner,
        "cancel_requested": job.cancel_requested,
    }
    if steps is not None:
        data["steps"] = [
            {
                "index": st.idx + 1,
                "name": st.name,
                "attempt": st.attempt,
                "status": st.status,
                "result": st.result,
                "seconds": round(
                    (store.aware(st.finished_at) - store.aware(st.started_at)).total_seconds(), 3
                )
                if st.finished_at
                else None,
            }
            for st in steps
        ]
    return data
