"""Jobs in the database: creation under the per-target lock, leases, state changes, cancel, queries.

Every state change goes through ``transition``, which consults the table in ``states`` and releases the
target when the job leaves the active states. A lease is claimed by a conditional UPDATE: of two workers
racing for one job, exactly one sees ``rowcount == 1``.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from remotehands import audit
from remotehands.db import Database
from remotehands.errors import InternalError, NotApproved, NotPermitted, TargetBusy
from remotehands.jobs import actions, outbox
from remotehands.jobs.states import ACTIVE, TERMINAL, JobEvent, JobState, next_state
from remotehands.jobs.tables import DeviceSlot, Job, JobStep
from remotehands.tickets.base import Ticket, TicketStatus


def now() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime) -> datetime:
    """SQLite hands datetimes back naive; they were written in UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def new_owner() -> str:
    """A lease owner id: host, pid and a random part, so a restarted worker can spot its dead predecessors."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def create_jobs_for_ticket(db: Database, ticket: Ticket, approved_by: str | None, actor: str) -> list[int]:
    """Create one job per target of an approved ticket, all or none; returns the job ids.

    Existing active jobs of the same ticket and target are returned instead of duplicated, so running a
    ticket twice never doubles its work. Raises ``NotApproved`` unless the ticket is approved and
    ``TargetBusy`` (with the blocking job id) when another ticket's job holds a target.
    """
    if approved_by is None:
        raise NotApproved(
            f"{ticket.id} is not approved at {ticket.system} (status {ticket.status.value})",
            fix=f"an approver other than {ticket.requester} must approve it: remotehands tickets approve {ticket.id}",
        )
    action = actions.get(ticket.request.action)
    stamp = now()
    ids: list[int] = []
    with db.session() as s:
        for target in ticket.request.targets:
            holder = s.execute(select(Job).where(Job.active_target == target)).scalar_one_or_none()
            if holder is not None:
                if holder.ticket_id == ticket.id and holder.action == action.name:
                    ids.append(holder.id)
                    continue
                raise TargetBusy(target, holder.id)
            job = Job(
                ticket_system=ticket.system,
                ticket_id=ticket.id,
                action=action.name,
                target=target,
                active_target=target,
                site=ticket.site,
                params=dict(ticket.request.params),
                data={},
                state=JobState.QUEUED.value,
                purpose=f"{action.purpose or action.name} for {ticket.id}",
                sensitive=ticket.sensitive,
                created_by=actor,
                created_at=stamp,
                updated_at=stamp,
                deadline_at=stamp + timedelta(seconds=action.deadline_seconds),
                next_run_at=stamp,
            )
            s.add(job)
            try:
                s.flush()
            except IntegrityError:
                # Lost a race for the target with another creator: report who holds it.
                s.rollback()
                with db.session() as s2:
                    holder_id = s2.execute(
                        select(Job.id).where(Job.active_target == target)
                    ).scalar_one_or_none()
                raise TargetBusy(target, holder_id or -1) from None
            ids.append(job.id)
            audit.append(
                s,
                actor,
                "job.create",
                f"job-{job.id}",
                {"ticket": ticket.id, "action": action.name, "target": target},
            )
            outbox.enqueue(
                s,
                ticket.system,
                ticket.id,
                "comment",
                f"remotehands accepted job {job.id}: {action.name} on {target} (approved by {approved_by}).",
                job_id=job.id,
            )
            outbox.enqueue(
                s, ticket.system, ticket.id, "status", TicketStatus.IN_PROGRESS.value, job_id=job.id
            )
    return ids


def transition(session: Session, job: Job, event: JobEvent, *, reason: str | None = None) -> JobState:
    """Fire ``event`` on ``job`` (inside the caller's transaction); releases the target when it ends."""
    new = next_state(job.state, event)
    job.state = new.value
    job.updated_at = now()
    if reason is not None:
        job.reason = reason
    if new not in ACTIVE:
        job.active_target = None
    if new in TERMINAL or new is JobState.NEEDS_OPERATOR or new is JobState.WAITING:
        job.lease_owner = None
        job.lease_expires_at = None
    return new


def claim(db: Database, job_id: int, owner: str, lease_seconds: int) -> bool:
    """Take the lease on a runnable job. True for exactly one of any number of racing workers."""
    stamp = now()
    with db.session() as s:
        result = s.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.state.in_([JobState.QUEUED.value, JobState.RUNNING.value, JobState.WAITING.value]),
                or_(Job.lease_owner.is_(None), Job.lease_expires_at < stamp, Job.lease_owner == owner),
                or_(Job.next_run_at.is_(None), Job.next_run_at <= stamp, Job.cancel_requested.is_(True)),
            )
            .values(lease_owner=owner, lease_expires_at=stamp + timedelta(seconds=lease_seconds))
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def renew(session: Session, job: Job, owner: str, lease_seconds: int) -> None:
    """Extend our lease (inside a transaction that also journals); raises if we no longer hold it."""
    if job.lease_owner != owner:
        raise InternalError(f"job {job.id}: lease lost to {job.lease_owner}; stopping without acting")
    job.lease_expires_at = now() + timedelta(seconds=lease_seconds)


def release(db: Database, job_id: int, owner: str) -> None:
    """Give up our lease without changing the job's state."""
    with db.session() as s:
        s.execute(
            update(Job)
            .where(Job.id == job_id, Job.lease_owner == owner)
            .values(lease_owner=None, lease_expires_at=None)
            .execution_options(synchronize_session=False)
        )


def runnable_ids(db: Database, limit: int = 50) -> list[int]:
    """Jobs that are due and not leased (or whose lease expired), oldest first."""
    stamp = now()
    with db.session() as s:
        rows = s.execute(
            select(Job.id)
            .where(
                Job.state.in_([JobState.QUEUED.value, JobState.RUNNING.value, JobState.WAITING.value]),
                or_(Job.lease_owner.is_(None), Job.lease_expires_at < stamp),
                or_(Job.next_run_at.is_(None), Job.next_run_at <= stamp, Job.cancel_requested.is_(True)),
            )
            .order_by(Job.next_run_at, Job.id)
            .limit(limit)
        )
        return list(rows.scalars())


def request_cancel(db: Database, job_id: int, actor: str) -> JobState:
    """Ask a job to stop. A queued, waiting or needs_operator job not held by a worker is cancelled at once;
    a running one stops at its next step boundary. Raises ``NotPermitted`` for a finished job."""
    with db.session() as s:
        job = get_job(s, job_id)
        if JobState(job.state) in TERMINAL:
            raise NotPermitted(f"job {job_id} already {job.state}; nothing to cancel")
        job.cancel_requested = True
        audit.append(s, actor, "job.cancel", f"job-{job_id}")
        stamp = now()
        held = (
            job.lease_owner is not None
            and job.lease_expires_at is not None
            and aware(job.lease_expires_at) > stamp
        )
        if not held:
            finish(s, job, JobEvent.CANCEL, f"cancelled by {actor}")
        return JobState(job.state)


def request_retry(db: Database, job_id: int, actor: str) -> JobState:
    """Put a needs_operator job back in the queue (an operator checked the equipment).

    The step that stopped it runs again from the start; its journal keeps the earlier attempt.
    Raises ``NotPermitted`` for a job in any other state."""
    with db.session() as s:
        job = get_job(s, job_id)
        if job.state != JobState.NEEDS_OPERATOR.value:
            raise NotPermitted(f"job {job_id} is {job.state}; only a needs_operator job can be retried")
        for row in steps_of(s, job_id):
            if row.idx == job.step_index and row.status == "started":
                row.status = "failed"
        job.next_run_at = now()
        job.retries = 0
        job.deadline_at = now() + timedelta(seconds=actions.get(job.action).deadline_seconds)
        transition(s, job, JobEvent.RETRY, reason=f"retried by {actor}")
        outbox.enqueue(
            s, job.ticket_system, job.ticket_id, "status", TicketStatus.IN_PROGRESS.value, job_id=job.id
        )
        audit.append(s, actor, "job.retry", f"job-{job_id}")
        outbox.enqueue(
            s, job.ticket_system, job.ticket_id, "comment", f"job {job_id} retried by {actor}", job_id=job.id
        )
        return JobState(job.state)


def confirm_manual(db: Database, job_id: int, actor: str) -> None:
    """Record a technician's confirmation that they did a job's manual step, and wake the job.

    Raises ``NotPermitted`` when the job has ended."""
    with db.session() as s:
        job = get_job(s, job_id)
        if JobState(job.state) in TERMINAL:
            raise NotPermitted(f"job {job_id} already {job.state}; nothing to confirm")
        job.confirmed_by = actor
        job.confirmed_at = now()
        job.next_run_at = now()
        audit.append(s, actor, "job.confirm", f"job-{job_id}")


def claim_device_slot(db: Database, device: str, spacing: float) -> datetime | None:
    """Take the next switching slot of a shared device (a PDU strip): None when taken now, else the time
    at which to try again. Consecutive slots are at least ``spacing`` seconds apart, across all workers."""
    stamp = now()
    with db.session() as s:
        taken = s.execute(
            update(DeviceSlot)
            .where(DeviceSlot.device == device, DeviceSlot.next_at <= stamp)
            .values(next_at=stamp + timedelta(seconds=spacing))
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount == 1:  # type: ignore[attr-defined]
            return None
        slot = s.get(DeviceSlot, device)
        if slot is None:
            s.add(DeviceSlot(device=device, next_at=stamp + timedelta(seconds=spacing)))
            try:
                s.flush()
            except IntegrityError:
                s.rollback()
                return stamp + timedelta(seconds=min(spacing, 1.0))
            return None
        return aware(slot.next_at)


def finish(session: Session, job: Job, event: JobEvent, reason: str) -> None:
    """End (or escalate) a job: transition, final comment, and the ticket's status once all its jobs ended."""
    state = transition(session, job, event, reason=reason)
    audit.append(session, "remotehands", f"job.{state.value}", f"job-{job.id}", {"reason": reason})
    outbox.enqueue(
        session,
        job.ticket_system,
        job.ticket_id,
        "comment",
        f"job {job.id} ({job.action} on {job.target}) {state.value}: {reason}",
        job_id=job.id,
    )
    siblings = (
        session.execute(
            select(Job.state).where(Job.ticket_id == job.ticket_id, Job.ticket_system == job.ticket_system)
        )
        .scalars()
        .all()
    )
    if all(JobState(s) in TERMINAL | {JobState.NEEDS_OPERATOR} for s in siblings):
        ok = all(s == JobState.SUCCEEDED.value for s in siblings)
        status = TicketStatus.RESOLVED if ok else TicketStatus.NEEDS_ATTENTION
        outbox.enqueue(session, job.ticket_system, job.ticket_id, "status", status.value, job_id=job.id)


def get_job(session: Session, job_id: int) -> Job:
    from remotehands.errors import BadInput

    job = session.get(Job, job_id)
    if job is None:
        raise BadInput(f"no job {job_id}", fix="list jobs with 'remotehands jobs list'")
    return job


def steps_of(session: Session, job_id: int) -> list[JobStep]:
    return list(
        session.execute(
            select(JobStep).where(JobStep.job_id == job_id).order_by(JobStep.idx, JobStep.attempt)
        ).scalars()
    )


def jobs_of_ticket(db: Database, ticket_id: str) -> list[Job]:
    with db.session() as s:
        return list(s.execute(select(Job).where(Job.ticket_id == ticket_id).order_by(Job.id)).scalars())


def list_jobs(db: Database, *, active_only: bool = False, limit: int = 100) -> list[Job]:
    with db.session() as s:
        query = select(Job).order_by(Job.id.desc()).limit(limit)
        if active_only:
            query = query.where(Job.state.in_([st.value for st in ACTIVE]))
        return list(s.execute(query).scalars())


def reclaim_dead_local_leases(db: Database) -> int:
    """Clear leases held by workers on this machine whose process is gone (a crash, a kill -9).

    Lets a restarted worker resume at once instead of waiting for the lease to expire. Returns the count.
    """
    host = socket.gethostname()
    cleared = 0
    with db.session() as s:
        rows = (
            s.execute(
                select(Job).where(Job.lease_owner.is_not(None), and_(Job.lease_owner.like(f"{host}:%")))
            )
            .scalars()
            .all()
        )
        for job in rows:
            pid = int((job.lease_owner or "::").split(":")[1] or 0)
            if pid and not _alive(pid):
                job.lease_owner = None
                job.lease_expires_at = None
                cleared += 1
    return cleared


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
