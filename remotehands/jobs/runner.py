"""Advancing one job: claim its lease, then run, journal and reconcile its steps until it ends or waits.

The journal protocol, per step:
  1. read the step's baseline (evidence before acting);
  2. commit a ``started`` row holding it            <- a crash after this is reconciled, never re-run blindly
  3. act (``step.run``);
  4. commit ``done`` + the step's ticket comment + the job's next index, in one transaction.
A ``Wait`` commits a ``waiting`` row and frees the worker; the step is simply run again when due.

A step that is not safe to repeat and fails with an *unknown outcome* (the device stopped answering after
the command may have left) keeps its ``started`` row: the next attempt reconciles it against the baseline
instead of acting again. Cancel and deadlines wait for that reconcile too, so the host is never released
while nobody knows what a half-sent command did.

Every write checks that this worker still holds the lease (a conditional UPDATE that also renews it), so a
worker whose lease was taken over stops without writing.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from remotehands import audit, redaction
from remotehands.errors import (
    DeviceUnreachable,
    InternalError,
    JobCancelled,
    NeedsOperator,
    NotApproved,
    RemoteHandsError,
)
from remotehands.jobs import actions, faults, outbox, store
from remotehands.jobs.approval import require_approval
from remotehands.jobs.heartbeat import heartbeat
from remotehands.jobs.states import JobEvent, JobState
from remotehands.jobs.steps import Done, Reconciled, Step, StepContext, Verdict, Wait
from remotehands.jobs.tables import Job, JobStep

if TYPE_CHECKING:
    from remotehands.runtime import Runtime

log = logging.getLogger(__name__)

MAX_RETRIES = 5
# After a command's outcome became unknown, wait this long before reading the device's event log: the
# client library may still be retransmitting the abandoned request (pyghmi does for up to ~20 s).
UNKNOWN_OUTCOME_SETTLE_S = 30.0


class LeaseLost(InternalError):
    """Another worker holds the job now; this one stops without writing."""


def advance(runtime: Runtime, job_id: int, owner: str) -> JobState | None:
    """Run job ``job_id`` as far as it goes now. Returns its state afterwards, or None if another worker
    holds it. Never raises for a job's own failure: that is recorded on the job."""
    db = runtime.db
    lease = runtime.settings.lease_seconds
    if not store.claim(db, job_id, owner, lease):
        return None
    try:
        while True:
            outcome = _advance_one_step(runtime, job_id, owner, lease)
            if outcome is not None:
                return outcome
    except LeaseLost:
        log.warning("job %s: lease lost to another worker; stopped without acting further", job_id)
        return None
    except Exception as exc:
        # A bug, or the database went away: record what we can, never leave the lease dangling.
        log.exception("job %s: unexpected error", job_id)
        try:
            with db.session() as s:
                job = store.get_job(s, job_id, lock=True)
                if job.lease_owner == owner and job.state == JobState.RUNNING.value:
                    store.finish(
                        s,
                        job,
                        JobEvent.ESCALATE,
                        f"internal error in remotehands ({type(exc).__name__}: {redaction.redact(str(exc))}); "
                        "check the log, then retry or cancel the job",
                    )
        finally:
            store.release(db, job_id, owner)
        return None


def hold(s: Session, job_id: int, owner: str, lease: int) -> Job:
    """Renew our lease (conditional UPDATE, which also locks the row on PostgreSQL) and load the job.

    Raises ``LeaseLost`` when another worker holds it."""
    renewed = s.execute(
        update(Job)
        .where(Job.id == job_id, Job.lease_owner == owner)
        .values(lease_expires_at=store.now() + timedelta(seconds=lease))
        .execution_options(synchronize_session=False)
    )
    if renewed.rowcount != 1:  # type: ignore[attr-defined]
        raise LeaseLost(f"job {job_id}: lease lost")
    return store.get_job(s, job_id, lock=True, fresh=True)


def _advance_one_step(runtime: Runtime, job_id: int, owner: str, lease: int) -> JobState | None:
    db = runtime.db
    with db.session() as s:
        job = hold(s, job_id, owner, lease)
        steps = actions.get(job.action).job_steps(dict(job.data or {}))
        if job.state != JobState.RUNNING.value:
            store.transition(s, job, JobEvent.START)
            job.lease_owner, job.lease_expires_at = owner, store.now() + timedelta(seconds=lease)
        stop = _stop_reason(job)
        if stop is not None and stop[0] is JobEvent.FAIL and (undone := _past_no_return(job, steps)):
            stop = JobEvent.ESCALATE, f"{stop[1]}, after {undone} changed what cannot be undone"
        if job.step_index >= len(steps):
            store.finish(s, job, JobEvent.SUCCEED, _summary(s, job))
            return JobState.SUCCEEDED
        idx = min(job.step_index, len(steps) - 1)
        step = steps[idx]
        last = _last_row(s, job_id, idx)
        ctx = StepContext(
            job.id,
            job.ticket_id,
            job.action,
            job.target,
            store.job_params(s, job),
            dict(job.data),
            runtime,
            confirmed_by=job.confirmed_by,
            ticket_system=job.ticket_system,
        )
        last_status = last.status if last else None
        last_attempt = last.attempt if last else 0
        last_baseline = dict(last.baseline) if last else {}
        half_done = last_status == "started" and job.step_index < len(steps)
        if stop is not None and not (half_done and not step.idempotent):
            store.finish(s, job, *stop)
            return JobState(job.state)
        # A step with nothing to check or read before it acts (no approval re-check, no baseline) is marked
        # started in this same transaction: one commit less per step and per look of a wait. A kill before
        # this commit leaves no started row, exactly as a kill at "before-started" does.
        started_here = not half_done and not step.needs_approval and type(step).baseline is Step.baseline
        if started_here:
            faults.checkpoint(step.name, "before-started")
            attempt = _mark_started(s, job_id, idx, step, last_status, last_attempt, {}, owner)

    if half_done:
        try:
            decided = _reconcile(step, ctx, last_baseline)
        except RemoteHandsError as exc:
            if exc.retryable and stop is None:
                return _fail(runtime, job_id, owner, idx, last_attempt, step, exc, unknown_outcome=True)
            decided = Reconciled(
                Verdict.NEEDS_OPERATOR,
                f"'{step.name}' may have acted and {ctx.target} could not be read to tell: {exc}; "
                "check the equipment, then retry or cancel the job",
            )
        log.info(
            "job %s step %s: reconciled: %s (%s)", job_id, step.name, decided.verdict.value, decided.message
        )
        if decided.verdict is Verdict.DONE:
            done = Done(f"{decided.message} (confirmed from the device after an interrupted attempt)")
            _commit_done(runtime, job_id, owner, idx, last_attempt, step, ctx, done)
        elif decided.verdict is Verdict.RETRY:
            with db.session() as s:
                job = hold(s, job_id, owner, lease)
                _enqueue_notes(s, job, ctx)  # evidence the reconcile gathered (a rollback's log)
                _close_step(s, job_id, idx, last_attempt, "reconciled", decided.message)
        else:
            with db.session() as s:
                job = hold(s, job_id, owner, lease)
                _enqueue_notes(s, job, ctx)  # e.g. the diff a failed rollback left, for the operator
                _close_step(s, job_id, idx, last_attempt, "failed", decided.message)
                reason = decided.message if stop is None else f"{stop[1]}, but {decided.message}"
                store.finish(s, job, JobEvent.ESCALATE, reason)
            return JobState.NEEDS_OPERATOR
        if stop is not None:
            with db.session() as s:
                job = hold(s, job_id, owner, lease)
                store.finish(s, job, *stop)
                return JobState(job.state)
        if decided.verdict is Verdict.DONE:
            return None

    # Run the step (fresh, after a wait, or after a reconcile said RETRY).
    if not started_here or half_done:
        try:
            if step.needs_approval:
                require_approval(runtime, ctx.ticket_system, ctx.ticket_id, f"step '{step.name}'")
            baseline = step.baseline(ctx)
        except RemoteHandsError as exc:
            return _fail(runtime, job_id, owner, idx, None, step, exc)
        faults.checkpoint(step.name, "before-started")
        with db.session() as s:
            hold(s, job_id, owner, lease)
            attempt = _mark_started(s, job_id, idx, step, last_status, last_attempt, baseline, owner)
    faults.checkpoint(step.name, "after-started")
    try:
        with heartbeat(runtime.db, job_id, owner, lease):
            result = step.run(ctx)
    except RemoteHandsError as exc:
        unknown = isinstance(exc, DeviceUnreachable) and not step.idempotent
        return _fail(runtime, job_id, owner, idx, attempt, step, exc, unknown_outcome=unknown, ctx=ctx)
    faults.checkpoint(step.name, "after-act")
    if isinstance(result, Wait):
        with db.session() as s:
            job = hold(s, job_id, owner, lease)
            _close_step(s, job_id, idx, attempt, "waiting", result.reason, finished=False)
            _enqueue_notes(s, job, ctx)
            job.data = ctx.data
            job.next_run_at = result.until
            store.transition(s, job, JobEvent.WAIT, reason=result.reason)
        return JobState.WAITING
    _commit_done(runtime, job_id, owner, idx, attempt, step, ctx, result)
    faults.checkpoint(step.name, "after-done")
    return None


def _mark_started(
    s: Session,
    job_id: int,
    idx: int,
    step: Step,
    last_status: str | None,
    last_attempt: int,
    baseline: dict[str, Any],
    owner: str,
) -> int:
    """Journal that ``step`` acts now (a new attempt, or the waiting one resumed); returns the attempt."""
    if last_status == "waiting":
        row = _last_row(s, job_id, idx)
        assert row is not None
        row.status = "started"
        return last_attempt
    s.add(
        JobStep(
            job_id=job_id,
            idx=idx,
            name=step.name,
            attempt=last_attempt + 1,
            status="started",
            baseline=baseline,
            owner=owner,
            started_at=store.now(),
        )
    )
    return last_attempt + 1


def _past_no_return(job: Job, steps: list[Step]) -> str | None:
    """The irreversible step this job has done (``Step.irreversible``), or None."""
    return next((st.name for st in steps[: job.step_index] if st.irreversible), None)


def _stop_reason(job: Job) -> tuple[JobEvent, str] | None:
    if job.cancel_requested:
        return JobEvent.CANCEL, "cancelled on request"
    if store.now() > store.aware(job.deadline_at):
        return JobEvent.FAIL, f"deadline passed at step {job.step_index + 1}"
    return None


def _last_row(s: Session, job_id: int, idx: int) -> JobStep | None:
    query = (
        select(JobStep).where(JobStep.job_id == job_id, JobStep.idx == idx).order_by(JobStep.attempt.desc())
    )
    return s.execute(query).scalars().first()


def _reconcile(step: Step, ctx: StepContext, baseline: dict[str, object]) -> Reconciled:
    """The step's verdict on its own half-done attempt; retryable read errors propagate to be retried."""
    if step.idempotent:
        return Reconciled(Verdict.RETRY, f"{step.name} reads before it acts; safe to run again")
    return step.reconcile(ctx, baseline)


def _commit_done(
    runtime: Runtime,
    job_id: int,
    owner: str,
    idx: int,
    attempt: int,
    step: Step,
    ctx: StepContext,
    done: Done,
) -> None:
    with runtime.db.session() as s:
        job = hold(s, job_id, owner, runtime.settings.lease_seconds)
        _close_step(s, job_id, idx, attempt, "skipped" if done.quiet else "done", done.message)
        job.step_index = idx + 1
        job.data = ctx.data
        job.next_run_at = None
        job.retries = 0
        _enqueue_notes(s, job, ctx)
        if not done.quiet:
            store.tell(s, job, f"job {job.id} step {idx + 1} {step.name}: {done.message}")
        audit.append(
            s, "remotehands", "job.step", f"job-{job.id}", {"step": step.name, "result": done.message}
        )


def _enqueue_notes(s: Session, job: Job, ctx: StepContext) -> None:
    for note in ctx.notes:
        store.tell(s, job, f"job {job.id}: {note}")
    for name, data in ctx.attachments:
        outbox.enqueue(
            s,
            job.ticket_system,
            job.ticket_id,
            "attach",
            name,
            job_id=job.id,
            payload=data,
            sensitive=job.sensitive,
        )
    ctx.notes.clear()
    ctx.attachments.clear()


def _close_step(
    s: Session, job_id: int, idx: int, attempt: int, status: str, result: str, *, finished: bool = True
) -> None:
    row = s.execute(
        select(JobStep).where(JobStep.job_id == job_id, JobStep.idx == idx, JobStep.attempt == attempt)
    ).scalar_one_or_none()
    if row is None:
        return
    row.status = status
    row.result = redaction.redact(result)
    if finished:
        row.finished_at = store.now()


def _fail(
    runtime: Runtime,
    job_id: int,
    owner: str,
    idx: int,
    attempt: int | None,
    step: Step,
    exc: RemoteHandsError,
    *,
    unknown_outcome: bool = False,
    ctx: StepContext | None = None,
) -> JobState:
    """Record a failed attempt: retry with back-off when the error is retryable, else fail or escalate.

    With ``unknown_outcome`` the attempt's ``started`` row is kept, so the retry reconciles it first."""
    message = str(exc)
    with runtime.db.session() as s:
        job = hold(s, job_id, owner, runtime.settings.lease_seconds)
        if ctx is not None:
            _enqueue_notes(s, job, ctx)
            if isinstance(exc, NeedsOperator):
                job.data = ctx.data  # what the step recorded for a retry (e.g. a wait's new window)
        will_retry = exc.retryable and job.retries < MAX_RETRIES
        if attempt is not None:
            if unknown_outcome and will_retry:
                row = _last_row(s, job_id, idx)
                if row is not None:
                    row.result = redaction.redact(f"outcome unknown, will check: {message}")
            else:
                _close_step(s, job_id, idx, attempt, "retry" if will_retry else "failed", message)
        if will_retry:
            job.retries += 1
            delay = retry_delay(job.retries)
            if unknown_outcome:
                delay = max(delay, UNKNOWN_OUTCOME_SETTLE_S)
            job.next_run_at = store.now() + timedelta(seconds=delay)
            log.warning(
                "job %s step %s: retry %s in %.0fs: %s", job_id, step.name, job.retries, delay, message
            )
            store.transition(s, job, JobEvent.WAIT, reason=f"retrying {step.name} in {delay:.0f}s: {message}")
            return JobState.WAITING
        undone = _past_no_return(job, actions.get(job.action).job_steps(dict(job.data or {})))
        if isinstance(exc, NotApproved | JobCancelled):
            store.finish(s, job, JobEvent.CANCEL, f"cancelled at step {idx + 1} {step.name}: {message}")
        elif undone and not isinstance(exc, NeedsOperator):
            store.finish(
                s,
                job,
                JobEvent.ESCALATE,
                f"step {idx + 1} {step.name} failed: {message}; {undone} already changed what cannot be "
                f"undone: fix the cause, then 'remotehands jobs retry {job.id}' (it resumes at this step)",
            )
        elif unknown_outcome or isinstance(exc, NeedsOperator):
            store.finish(
                s,
                job,
                JobEvent.ESCALATE,
                f"step {idx + 1} {step.name}: {message}; it cannot be told whether it took effect, "
                "check the equipment, then retry or cancel the job",
            )
        else:
            store.finish(s, job, JobEvent.FAIL, f"step {idx + 1} {step.name} failed: {message}")
        return JobState(job.state)


def retry_delay(retries: int) -> float:
    """Seconds before the ``retries``-th retry of a step that failed transiently (2, 4, 8 ... 60)."""
    return float(min(2**retries, 60))


def _summary(s: Session, job: Job) -> str:
    steps = store.steps_of(s, job.id)
    done = [st for st in steps if st.status == "done"]
    skipped = sum(1 for st in steps if st.status == "skipped")
    last = done[-1].result if done else "no steps"
    return f"{len(done)} steps done" + (f", {skipped} not needed" if skipped else "") + f"; {last}"
