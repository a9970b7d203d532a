"""Jobs in the database: creation under the per-target lock, leases, state changes, cancel, queries.

Every state change goes through ``transition``, which consults the table in ``states`` and releases the
target when the job leaves the active states. A lease is claimed by a conditional UPDATE: of two workers
racing for one job, exactly one sees ``rowcount == 1``.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from remotehands import audit
from remotehands.db import Database
from remotehands.errors import InternalError, NotApproved, NotPermitted, TargetBusy
from remotehands.inventory.models import Inventory
from remotehands.jobs import actions, outbox
from remotehands.jobs.states import ACTIVE, TERMINAL, JobEvent, JobState, next_state
from remotehands.jobs.tables import Job, JobStep
from remotehands.tickets.base import Ticket, TicketStatus
from remotehands.tickets.extract import request_key


def now() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime) -> datetime:
    """SQLite hands datetimes back naive; they were written in UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def new_owner() -> str:
    """A lease owner id: host, pid and a random part, so a restarted worker can spot its dead predecessors."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def create_jobs_for_ticket(
    db: Database,
    ticket: Ticket,
    approved_by: str | None,
    actor: str,
    *,
    only: frozenset[str] | None = None,
    inventory: Inventory | None = None,
) -> list[int]:
    """Create one job per target of an approved ticket (or of ``only`` those targets), all or none.

    A target that already has a queued, running, waiting, needs_operator or succeeded job for this ticket's
    request gets that job back instead of a new one, so running a ticket twice never repeats its work; only
    a failed or cancelled job is replaced. A changed request on the same ticket is new work. An action that
    resolves per target (``reimage``) needs ``inventory``: each host's job runs the concrete action for it.
    Raises ``NotApproved`` unless the ticket is approved, ``NotPermitted`` when it is resolved or closed,
    ``InvalidRequest`` when the action fits no target, and ``TargetBusy`` (with the blocking job id) when
    another ticket's job holds a target.
    """
    if approved_by is None:
        raise NotApproved(
            f"{ticket.id} is not approved at {ticket.system} (status {ticket.status.value})",
            fix=f"an approver other than {ticket.requester} must approve it: remotehands tickets approve {ticket.id}",
        )
    if ticket.status in (TicketStatus.RESOLVED, TicketStatus.CLOSED):
        raise NotPermitted(
            f"{ticket.id} is {ticket.status.value}; its work is over",
            fix="open a new ticket for new work",
        )
    request = ticket.wanted()
    action = actions.get(request.action)
    targets = [t for t in request.targets if only is None or t in only]
    key = request_key(request)
    stamp = now()
    ids: list[int] = []
    with db.session() as s:
        for target in targets:
            previous = (
                s.execute(
                    select(Job)
                    .where(
                        Job.ticket_id == ticket.id,
                        Job.ticket_system == ticket.system,
                        Job.target == target,
                        or_(Job.request_key == key, Job.request_key.is_(None)),
                    )
                    .order_by(Job.id.desc())
                )
                .scalars()
                .first()
            )
            if previous is not None and previous.state not in (
                JobState.FAILED.value,
                JobState.CANCELLED.value,
            ):
                ids.append(previous.id)
                continue
            holder = s.execute(select(Job).where(Job.active_target == target)).scalar_one_or_none()
            if holder is not None:
                raise TargetBusy(target, holder.id)
            job = Job(
                ticket_system=ticket.system,
                ticket_id=ticket.id,
                action=_concrete(action, target, request.params, inventory),
                target=target,
                active_target=target,
                site=ticket.site,
                params=seal_params(s, dict(request.params), ticket.sensitive),
                data={},
                state=JobState.QUEUED.value,
                purpose=f"{action.purpose or action.name} for {ticket.id}",
                sensitive=ticket.sensitive,
                created_by=actor,
                created_at=stamp,
                updated_at=stamp,
                deadline_at=stamp + timedelta(seconds=action.deadline_seconds),
                next_run_at=stamp,
                request_key=key,
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
            tell(
                s,
                job,
                f"remotehands accepted job {job.id}: {action.name} on {target} (approved by {approved_by}).",
            )
            outbox.enqueue(
                s, ticket.system, ticket.id, "status", TicketStatus.IN_PROGRESS.value, job_id=job.id
            )
    return ids


def _concrete(
    action: actions.Action, target: str, params: dict[str, Any], inventory: Inventory | None
) -> str:
    if action.resolve is None:
        return action.name
    if inventory is None:
        raise InternalError(f"{action.name} resolves per host and was given no inventory")
    return action.resolve(inventory.host(target), params)


def tell(session: Session, job: Job, text: str) -> None:
    """Queue a comment on the job's ticket (encrypted in the outbox when the ticket is sensitive)."""
    outbox.enqueue(
        session, job.ticket_system, job.ticket_id, "comment", text, job_id=job.id, sensitive=job.sensitive
    )


def seal_params(session: Session, params: dict[str, Any], sensitive: bool) -> dict[str, Any]:
    """Params as stored: a sensitive ticket's are kept encrypted (``{"sealed": ...}``)."""
    if not sensitive or not params:
        return params
    return {"sealed": outbox.cipher_of(session).encrypt_text(json.dumps(params))}


def job_params(session: Session, job: Job) -> dict[str, Any]:
    """The job's params in clear, for its steps."""
    sealed = job.params.get("sealed") if job.sensitive else None
    if not isinstance(sealed, str):
        return dict(job.params)
    loaded = json.loads(outbox.cipher_of(session).decrypt_text(sealed))
    return dict(loaded) if isinstance(loaded, dict) else {}


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


def release(db: Database, job_id: int, owner: str) -> None:
    """Give up our lease without changing the job's state."""
    with db.session() as s:
        s.execute(
            update(Job)
            .where(Job.id == job_id, Job.lease_owner == owner)
            .values(lease_owner=None, lease_expires_at=None)
            .execution_options(synchronize_session=False)
        )


def runnable_ids(db: Database, limit: int = 50, only: frozenset[int] | None = None) -> list[int]:
    """Jobs that are due and not leased (or whose lease expired), oldest first; ``only`` narrows to ids."""
    stamp = now()
    query = (
        select(Job.id)
        .where(
            Job.state.in_([JobState.QUEUED.value, JobState.RUNNING.value, JobState.WAITING.value]),
            or_(Job.lease_owner.is_(None), Job.lease_expires_at < stamp),
            or_(Job.next_run_at.is_(None), Job.next_run_at <= stamp, Job.cancel_requested.is_(True)),
        )
        .order_by(Job.next_run_at, Job.id)
        .limit(limit)
    )
    if only is not None:
        query = query.where(Job.id.in_(sorted(only)))
    with db.session() as s:
        return list(s.execute(query).scalars())


def request_cancel(db: Database, job_id: int, actor: str) -> JobState:
    """Ask a job to stop. A queued, waiting or needs_operator job not held by a worker is cancelled at once;
    a running one stops at its next step boundary. Raises ``NotPermitted`` for a finished job."""
    with db.session() as s:
        job = get_job(s, job_id, lock=True)
        if JobState(job.state) in TERMINAL:
            raise NotPermitted(
                f"job {job_id} already {job.state}; nothing to cancel",
                fix="see it with: remotehands jobs show",
            )
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
        job = get_job(s, job_id, lock=True)
        if job.state != JobState.NEEDS_OPERATOR.value:
            raise NotPermitted(
                f"job {job_id} is {job.state}; only a needs_operator job can be retried",
                fix="a failed or cancelled job is re-run by running its ticket again",
            )
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
        tell(s, job, f"job {job_id} retried by {actor}")
        return JobState(job.state)


def confirm_manual(db: Database, job_id: int, actor: str) -> None:
    """Record a technician's confirmation that they did a job's manual step, and wake the job.

    Raises ``NotPermitted`` when the job has ended."""
    with db.session() as s:
        job = get_job(s, job_id, lock=True)
        if JobState(job.state) in TERMINAL:
            raise NotPermitted(
                f"job {job_id} already {job.state}; nothing to confirm",
                fix="see it with: remotehands jobs show",
            )
        job.confirmed_by = actor
        job.confirmed_at = now()
        job.next_run_at = now()
        audit.append(s, actor, "job.confirm", f"job-{job_id}")


def finish(session: Session, job: Job, event: JobEvent, reason: str) -> None:
    """End (or escalate) a job: transition, final comment, and the ticket's status once all its jobs ended."""
    state = transition(session, job, event, reason=reason)
    audit.append(session, "remotehands", f"job.{state.value}", f"job-{job.id}", {"reason": reason})
    tell(session, job, f"job {job.id} ({job.action} on {job.target}) {state.value}: {reason}")
    if state is JobState.NEEDS_OPERATOR:
        outbox.enqueue(
            session,
            job.ticket_system,
            job.ticket_id,
            "escalate",
            f"job {job.id} ({job.action} on {job.target}) needs an operator: {reason}",
            job_id=job.id,
            sensitive=job.sensitive,
        )
    # The ticket's status follows the newest job of each of its targets: a failed first attempt that a
    # re-run replaced does not keep the ticket in needs-attention.
    newest: dict[str, str] = {}
    for target, state_value in session.execute(
        select(Job.target, Job.state)
        .where(Job.ticket_id == job.ticket_id, Job.ticket_system == job.ticket_system)
        .order_by(Job.id)
    ):
        newest[target] = state_value
    siblings = list(newest.values())
    if all(JobState(s) in TERMINAL | {JobState.NEEDS_OPERATOR} for s in siblings):
        ok = all(s == JobState.SUCCEEDED.value for s in siblings)
        status = TicketStatus.RESOLVED if ok else TicketStatus.NEEDS_ATTENTION
        outbox.enqueue(session, job.ticket_system, job.ticket_id, "status", status.value, job_id=job.id)


def get_job(session: Session, job_id: int, *, lock: bool = False, fresh: bool = False) -> Job:
    """The job ``job_id``; ``lock`` takes its row lock (PostgreSQL) for a write; ``fresh`` reloads it.
    Raises ``BadInput`` for an unknown id."""
    from remotehands.errors import BadInput

    job = session.get(Job, job_id, with_for_update=lock or None, populate_existing=fresh)
    if job is None:
        raise BadInput(f"no job {job_id}", fix="list jobs with 'remotehands jobs list'")
    return job


def steps_of(session: Session, job_id: int) -> list[JobStep]:
    return list(
        session.execute(
            select(JobStep).where(JobStep.job_id == job_id).order_by(JobStep.idx, JobStep.attempt)
        ).scalars()
    )


def jobs_for_request(db: Database, system: str, ticket_id: str, key: str) -> list[int]:
    """Ids of every job (any state) made for this request of this ticket."""
    with db.session() as s:
        return list(
            s.execute(
                select(Job.id)
                .where(Job.ticket_system == system, Job.ticket_id == ticket_id, Job.request_key == key)
                .order_by(Job.id)
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
                job.next_run_at = now()  # a new due time: dispatchers send it at once (celery_exec)
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
