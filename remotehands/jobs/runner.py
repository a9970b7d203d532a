"""Advancing one job: claim its lease, then run, journal and reconcile its steps until it ends or waits.

The journal protocol, per step:
  1. read the step's baseline (evidence before acting);
  2. commit a ``started`` row holding it            <- a crash after this is reconciled, never re-run blindly
  3. act (``step.run``);
  4. commit ``done`` + the step's ticket comment + the job's next index, in one transaction.
A ``Wait`` commits a ``waiting`` row and frees the worker; the step is simply run again when due.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from remotehands import audit, redaction
from remotehands.errors import NeedsOperator, RemoteHandsError
from remotehands.jobs import actions, faults, outbox, store
from remotehands.jobs.states import JobEvent, JobState
from remotehands.jobs.steps import Done, Reconciled, Step, StepContext, Verdict, Wait
from remotehands.jobs.tables import Job, JobStep

if TYPE_CHECKING:
    from remotehands.runtime import Runtime

log = logging.getLogger(__name__)

MAX_RETRIES = 5


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
    except Exception as exc:
        # A bug, or the database went away: record what we can, never leave the lease dangling.
        log.exception("job %s: unexpected error", job_id)
        try:
            with db.session() as s:
                job = store.get_job(s, job_id)
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


def _advance_one_step(runtime: Runtime, job_id: int, owner: str, lease: int) -> JobState | None:
    db = runtime.db
    with db.session() as s:
        job = store.get_job(s, job_id)
        if job.lease_owner != owner:
            return None
        state = JobState(job.state)
        if job.cancel_requested:
            store.finish(s, job, JobEvent.CANCEL, "cancelled on request")
            return JobState.CANCELLED
        if store.now() > store.aware(job.deadline_at):
            store.finish(s, job, JobEvent.FAIL, f"deadline passed at step {job.step_index + 1}")
            return JobState.FAILED
        steps = actions.get(job.action).steps()
        if state is not JobState.RUNNING:
            store.transition(s, job, JobEvent.START)
            job.lease_owner, job.lease_expires_at = owner, store.now() + timedelta(seconds=lease)
        if job.step_index >= len(steps):
            store.finish(s, job, JobEvent.SUCCEED, _summary(s, job))
            return JobState.SUCCEEDED
        store.renew(s, job, owner, lease)
        idx = job.step_index
        step = steps[idx]
        last = (
            s.execute(
                select(JobStep)
                .where(JobStep.job_id == job_id, JobStep.idx == idx)
                .order_by(JobStep.attempt.desc())
            )
            .scalars()
            .first()
        )
        ctx = StepContext(
            job.id,
            job.ticket_id,
            job.action,
            job.target,
            dict(job.params),
            dict(job.data),
            runtime,
            confirmed_by=job.confirmed_by,
        )
        last_status = last.status if last else None
        last_attempt = last.attempt if last else 0
        last_baseline = dict(last.baseline) if last else {}

    if last_status == "started":
        decided = _reconcile(step, ctx, last_baseline)
        log.info(
            "job %s step %s: reconciled after a stopped worker: %s (%s)",
            job_id,
            step.name,
            decided.verdict.value,
            decided.message,
        )
        if decided.verdict is Verdict.DONE:
            return _commit_done(
                runtime,
                job_id,
                owner,
                idx,
                last_attempt,
                step,
                ctx,
                Done(f"{decided.message} (confirmed after a worker restart)"),
            )
        if decided.verdict is Verdict.RETRY:
            with db.session() as s:
                _close_step(s, job_id, idx, last_attempt, "reconciled", decided.message)
        if decided.verdict is Verdict.NEEDS_OPERATOR:
            with db.session() as s:
                job = store.get_job(s, job_id)
                _close_step(s, job_id, idx, last_attempt, "failed", decided.message)
                store.finish(s, job, JobEvent.ESCALATE, decided.message)
            return JobState.NEEDS_OPERATOR

    # Run the step (fresh, after a wait, or after a reconcile said RETRY).
    try:
        baseline = step.baseline(ctx)
    except RemoteHandsError as exc:
        return _fail(runtime, job_id, owner, idx, None, step, exc)
    faults.checkpoint(step.name, "before-started")
    attempt = last_attempt if last_status == "waiting" else last_attempt + 1
    with db.session() as s:
        job = store.get_job(s, job_id)
        store.renew(s, job, owner, lease)
        if last_status == "waiting" and last is not None:
            row = s.execute(
                select(JobStep).where(
                    JobStep.job_id == job_id, JobStep.idx == idx, JobStep.attempt == attempt
                )
            ).scalar_one()
            row.status = "started"
        else:
            s.add(
                JobStep(
                    job_id=job_id,
                    idx=idx,
                    name=step.name,
                    attempt=attempt,
                    status="started",
                    baseline=baseline,
                    owner=owner,
                    started_at=store.now(),
                )
            )
    faults.checkpoint(step.name, "after-started")
    try:
        result = step.run(ctx)
    except RemoteHandsError as exc:
        return _fail(runtime, job_id, owner, idx, attempt, step, exc)
    faults.checkpoint(step.name, "after-act")
    if isinstance(result, Wait):
        with db.session() as s:
            job = store.get_job(s, job_id)
            _close_step(s, job_id, idx, attempt, "waiting", result.reason, finished=False)
            _enqueue_notes(s, job, ctx)
            job.data = ctx.data
            job.next_run_at = result.until
            store.transition(s, job, JobEvent.WAIT, reason=result.reason)
        return JobState.WAITING
    outcome = _commit_done(runtime, job_id, owner, idx, attempt, step, ctx, result)
    faults.checkpoint(step.name, "after-done")
    return outcome


def _reconcile(step: Step, ctx: StepContext, baseline: dict[str, object]) -> Reconciled:
    try:
        return step.reconcile(ctx, baseline)
    except RemoteHandsError as exc:
        return Reconciled(
            Verdict.NEEDS_OPERATOR,
            f"the worker stopped during '{step.name}' and the equipment could not be read "
            f"to tell whether it took effect: {exc}",
        )


def _commit_done(
    runtime: Runtime,
    job_id: int,
    owner: str,
    idx: int,
    attempt: int,
    step: Step,
    ctx: StepContext,
    done: Done,
) -> JobState | None:
    with runtime.db.session() as s:
        job = store.get_job(s, job_id)
        store.renew(s, job, owner, runtime.settings.lease_seconds)
        _close_step(s, job_id, idx, attempt, "done", done.message)
        job.step_index = idx + 1
        job.data = ctx.data
        job.next_run_at = None
        job.retries = 0
        _enqueue_notes(s, job, ctx)
        if not done.quiet:
            outbox.enqueue(
                s,
                job.ticket_system,
                job.ticket_id,
                "comment",
                f"job {job.id} step {idx + 1} {step.name}: {done.message}",
                job_id=job.id,
            )
        audit.append(
            s, "remotehands", "job.step", f"job-{job.id}", {"step": step.name, "result": done.message}
        )
    return None


def _enqueue_notes(s: Session, job: Job, ctx: StepContext) -> None:
    for note in ctx.notes:
        outbox.enqueue(s, job.ticket_system, job.ticket_id, "comment", f"job {job.id}: {note}", job_id=job.id)
    ctx.notes.clear()


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
) -> JobState:
    message = str(exc)
    with runtime.db.session() as s:
        job = store.get_job(s, job_id)
        will_retry = exc.retryable and job.retries < MAX_RETRIES
        if attempt is not None:
            _close_step(s, job_id, idx, attempt, "retry" if will_retry else "failed", message)
        if will_retry:
            job.retries += 1
            delay = min(2**job.retries, 60)
            job.next_run_at = store.now() + timedelta(seconds=delay)
            log.warning(
                "job %s step %s: retry %s in %.0fs: %s", job_id, step.name, job.retries, delay, message
            )
            store.transition(s, job, JobEvent.WAIT, reason=f"retrying {step.name} in {delay:.0f}s: {message}")
            return JobState.WAITING
        event = JobEvent.ESCALATE if isinstance(exc, NeedsOperator) else JobEvent.FAIL
        store.finish(s, job, event, f"step {idx + 1} {step.name} failed: {message}")
        return JobState(job.state)


def retry_delay(retries: int) -> float:
    """Seconds before the ``retries``-th retry of a step that failed transiently (2, 4, 8 ... 60)."""
    return float(min(2**retries, 60))


def _summary(s: Session, job: Job) -> str:
    steps = store.steps_of(s, job.id)
    done = [st for st in steps if st.status == "done"]
    last = done[-1].result if done else "no steps"
    return f"all {len(done)} steps done; {last}"
