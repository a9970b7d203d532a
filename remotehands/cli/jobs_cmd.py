"""``remotehands jobs`` (list, show, follow, cancel), ``remotehands run`` and ``remotehands worker``."""

from __future__ import annotations

import signal
import time
from typing import Any

import typer

from remotehands.cli.common import current_user, print_table, runtime
from remotehands.cli.output import JsonOption, SafeTable, emit, say
from remotehands.errors import InvalidRequest, NotApproved
from remotehands.jobs import store
from remotehands.jobs.executor import LocalExecutor
from remotehands.jobs.states import ACTIVE, TERMINAL, JobState
from remotehands.jobs.tables import Job, JobStep
from remotehands.jobs.views import job_dict
from remotehands.runtime import Runtime

app = typer.Typer(help="Jobs: list, show, follow and cancel.", no_args_is_help=True)

SETTLED = TERMINAL | {JobState.NEEDS_OPERATOR}


def _load(rt: Runtime, job_id: int) -> tuple[Job, list[JobStep]]:
    with rt.db.session() as s:
        return store.get_job(s, job_id), store.steps_of(s, job_id)


@app.command("list")
def list_(
    active: bool = typer.Option(
        False, "--active", help="Only queued, running, waiting or needs_operator jobs."
    ),
    as_json: bool = JsonOption,
) -> None:
    """List jobs, newest first."""
    jobs = store.list_jobs(runtime().db, active_only=active)

    def render() -> None:
        table = SafeTable(title="jobs")
        for col in ("id", "ticket", "action", "target", "state", "step", "reason"):
            table.add_column(col)
        for j in jobs:
            table.add_row(str(j.id), j.ticket_id, j.action, j.target, j.state, str(j.step_index), j.reason)
        print_table(table)

    emit([job_dict(j) for j in jobs], as_json, render)


@app.command()
def show(job_id: int = typer.Argument(..., help="Job id."), as_json: bool = JsonOption) -> None:
    """Show a job: state, purpose (what holds the target), and each journaled step with its duration."""
    job, steps = _load(runtime(), job_id)
    data = job_dict(job, steps)

    def render() -> None:
        say(f"job {job.id}: {job.action} on {job.target} for {job.ticket_id}: {job.state}", style="bold")
        say(f"purpose: {job.purpose}")
        if job.reason:
            say(f"reason: {job.reason}")
        for st in data["steps"]:
            secs = f"{st['seconds']:.2f}s" if st["seconds"] is not None else "-"
            say(
                f"  {st['index']}. {st['name']} [{st['status']}] (attempt {st['attempt']}, {secs}) {st['result']}"
            )

    emit(data, as_json, render)


class StepPrinter:
    """Prints each journal row once as it changes: the live progress of ``run`` and ``follow``."""

    def __init__(self, rt: Runtime, job_ids: list[int], quiet: bool) -> None:
        self.rt, self.job_ids, self.quiet = rt, job_ids, quiet
        self.seen: set[tuple[int, int, int, str]] = set()
        self.states: dict[int, str] = {}

    def __call__(self) -> None:
        for job_id in self.job_ids:
            job, steps = _load(self.rt, job_id)
            for st in steps:
                key = (job_id, st.idx, st.attempt, st.status)
                if key in self.seen:
                    continue
                self.seen.add(key)
                if not self.quiet and st.status not in ("started", "skipped"):
                    say(f"job {job_id} {job.target}: step {st.idx + 1} {st.name} {st.status}: {st.result}")
            if self.states.get(job_id) != job.state:
                self.states[job_id] = job.state
                if not self.quiet and JobState(job.state) in SETTLED:
                    style = "green" if job.state == JobState.SUCCEEDED.value else "red"
                    say(f"job {job_id} {job.target}: {job.state}: {job.reason}", style=style)

    def settled(self) -> bool:
        with self.rt.db.session() as s:
            return all(JobState(store.get_job(s, j).state) in SETTLED for j in self.job_ids)


def _exit_code(rt: Runtime, job_ids: list[int]) -> int:
    with rt.db.session() as s:
        states = [store.get_job(s, j).state for j in job_ids]
    return 0 if all(st == JobState.SUCCEEDED.value for st in states) else 1


def run_jobs(rt: Runtime, ids: list[int], *, quiet: bool, timeout: float = 900) -> list[dict[str, Any]]:
    """Advance ``ids`` in the foreground until they settle (or ``timeout``); their final records."""
    printer = StepPrinter(rt, ids, quiet=quiet)
    executor = LocalExecutor(rt, only=frozenset(ids))
    try:
        executor.run_until(printer.settled, timeout=timeout, on_tick=printer)
        printer()
    finally:
        executor.shutdown()
    with rt.db.session() as s:
        return [job_dict(store.get_job(s, j), store.steps_of(s, j)) for j in ids]


def run(
    ticket: str = typer.Option(..., "--ticket", help="Ticket id, e.g. RH-12."),
    timeout: float = typer.Option(
        900, "--timeout", help="Stop waiting after this many seconds (jobs keep going)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Run an approved ticket's jobs in the foreground with live progress; approval is re-read first."""
    rt = runtime()
    t = rt.tickets.get(ticket)
    approval = rt.tickets.approval(t.id)
    if not approval.approved:
        raise NotApproved(
            f"{t.id} is not approved (status {t.status.value}); nothing was done",
            fix=f"someone other than {t.requester} runs: remotehands tickets approve {t.id}",
        )
    ids = store.create_jobs_for_ticket(rt.db, t, approval.approver, current_user(), inventory=rt.inventory())
    data = run_jobs(rt, ids, quiet=as_json, timeout=timeout)
    emit({"ticket": t.id, "jobs": data}, as_json, lambda: None)
    raise typer.Exit(_exit_code(rt, ids))


@app.command()
def follow(job_id: int = typer.Argument(..., help="Job id."), as_json: bool = JsonOption) -> None:
    """Print a job's steps as they happen until it ends (a worker or 'run' must be advancing it)."""
    rt = runtime()
    printer = StepPrinter(rt, [job_id], quiet=as_json)
    while True:
        printer()
        if printer.settled():
            break
        time.sleep(0.5)
    job, steps = _load(rt, job_id)
    emit(job_dict(job, steps), as_json, lambda: None)
    raise typer.Exit(_exit_code(rt, [job_id]))


@app.command()
def cancel(job_id: int = typer.Argument(..., help="Job id."), as_json: bool = JsonOption) -> None:
    """Cancel a job: at once if no worker holds it, else at its next step boundary or wait."""
    state = store.request_cancel(runtime().db, job_id, current_user())
    msg = (
        "cancelled"
        if state is JobState.CANCELLED
        else "cancel requested; the worker stops at the next step boundary"
    )
    emit(
        {"id": job_id, "state": state.value, "cancel_requested": True},
        as_json,
        lambda: say(f"job {job_id}: {msg}"),
    )


@app.command()
def confirm(job_id: int = typer.Argument(..., help="Job id."), as_json: bool = JsonOption) -> None:
    """Confirm you did a job's manual step (e.g. pressed the power button); the job then goes on."""
    store.confirm_manual(runtime().db, job_id, current_user())
    emit({"id": job_id, "confirmed_by": current_user()}, as_json, lambda: say(f"job {job_id}: confirmed"))


@app.command()
def retry(job_id: int = typer.Argument(..., help="Job id."), as_json: bool = JsonOption) -> None:
    """Send a needs_operator job back to the queue once you have checked the equipment; it resumes at the
    step that stopped it (a worker or 'run' must then advance it)."""
    state = store.request_retry(runtime().db, job_id, current_user())
    emit({"id": job_id, "state": state.value}, as_json, lambda: say(f"job {job_id}: {state.value}"))


def worker(
    until_idle: bool = typer.Option(False, "--until-idle", help="Exit once no job is active or due."),
    workers: int = typer.Option(None, "--workers", help="Threads (default: the 'workers' setting)."),
    site: str = typer.Option(
        None, "--site", help="celery executor: the site whose queue this worker serves."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Run the local executor: advance due jobs, deliver ticket updates, sweep dead leases, until stopped.
    With executor celery: a Celery worker on the queue of --site, dispatching that site's due jobs."""
    rt = runtime()
    if rt.settings.executor == "celery":
        from remotehands.jobs.celery_exec import run_worker

        if not site:
            raise InvalidRequest("--site is missing", fix="a celery worker serves one site: --site NAME")
        if site not in rt.inventory().sites:
            raise InvalidRequest(
                f"unknown site {site!r}", fix="sites: " + ", ".join(sorted(rt.inventory().sites))
            )
        owner = store.new_owner()
        if not as_json:
            say(f"worker {owner} for site {site} started (celery)", style="bold")
        run_worker(rt, site, owner, workers or rt.settings.workers)
        return
    executor = LocalExecutor(rt, workers=workers)
    signal.signal(signal.SIGTERM, lambda *_: executor.stop())

    def idle() -> bool:
        if not until_idle:
            return False
        with rt.db.session() as s:
            from sqlalchemy import select

            active = s.execute(
                select(Job.state).where(
                    Job.state.in_([st.value for st in ACTIVE if st is not JobState.NEEDS_OPERATOR])
                )
            ).first()
        return active is None

    if not as_json:
        say(f"worker {executor.owner} started", style="bold")
    try:
        executor.run_until(idle)
    finally:
        executor.shutdown()
    emit(
        {"worker": executor.owner, "stopped": True}, as_json, lambda: say(f"worker {executor.owner} stopped")
    )
