"""What the Ansible modules of ``playbooks/library`` do, behind their Ansible glue: ``remotehands_power``
(``power_task``, the path of ``remotehands power <state> --ticket``) and ``remotehands_job`` (``job_task``,
the path of ``remotehands run --ticket`` narrowed to some targets).

A module keeps its documentation, its argument spec and ``AnsibleModule``; it hands its params to
``answer``, which runs the task with remotehands' settings and log file and turns every outcome into the
redacted result Ansible gets. Both tasks go the same way: check the ticket (action, targets, approval, still
open), then in check mode say what would happen, else make (or find) the ticket's jobs and run them here.
A task fails with ``TaskFailed`` (a message and result keys beside it) or a ``RemoteHandsError``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import select

from remotehands import redaction
from remotehands.cli.common import current_user
from remotehands.cli.jobs_cmd import run_jobs
from remotehands.cli.power_cmd import read_all, select_hosts
from remotehands.config import load_settings
from remotehands.errors import (
    ConfigError,
    InvalidRequest,
    NotApproved,
    NotPermitted,
    RemoteHandsError,
    TargetBusy,
)
from remotehands.jobs import actions, store
from remotehands.jobs.states import TERMINAL, JobState
from remotehands.jobs.tables import Job
from remotehands.logfile import log_to_file
from remotehands.runtime import Runtime
from remotehands.tickets.base import TaskRequest, Ticket, TicketStatus
from remotehands.tickets.extract import request_key
from remotehands.tickets.validate import check_request

log = logging.getLogger("remotehands.ansible")

POWER_ACTIONS = {"on": "power.on", "off": "power.off", "cycle": "power.cycle"}
# States a job stays in without a worker: the task stops waiting for it.
SETTLED = frozenset(TERMINAL | {JobState.NEEDS_OPERATOR})

Task = Callable[[Runtime, dict[str, Any], bool], dict[str, Any]]


class TaskFailed(Exception):
    """The task fails with ``msg``; ``extra`` goes into the result beside it."""

    def __init__(self, msg: str, **extra: Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.extra = extra


def answer(name: str, task: Task, params: dict[str, Any], check_mode: bool) -> tuple[bool, dict[str, Any]]:
    """Run ``task`` of module ``name`` and return whether it failed and the result for Ansible, every string
    redacted. Never raises: a remotehands error or ``TaskFailed`` is the failure's message, anything else
    an internal error whose traceback goes to remotehands' log file."""
    failure: dict[str, Any] | None = None
    result: dict[str, Any] = {}
    # Library code may print (Rich); stdout carries the module's JSON answer and nothing else.
    with contextlib.redirect_stdout(sys.stderr):
        try:
            with runtime(params["config"]) as rt:
                result = task(rt, params, check_mode)
        except RemoteHandsError as exc:
            log.info("%s failed: %s", name, exc)
            failure = {"msg": str(exc), "changed": False}
        except TaskFailed as exc:
            failure = {"changed": False, **exc.extra, "msg": exc.msg}
        except Exception as exc:
            log.exception("%s: internal error", name)
            internal = f"internal error ({type(exc).__name__}: {exc})"
            failure = {"msg": f"{internal}; the traceback is in remotehands' log file", "changed": False}
    if failure is not None:
        return True, redaction.redact_data(failure)
    return False, redaction.redact_data(result)


@contextlib.contextmanager
def runtime(config: str | None) -> Iterator[Runtime]:
    """A runtime on the settings of ``config`` (as RH_CONFIG), else of the environment, logging to its log
    file; its database is closed afterwards. Raises ``ConfigError`` for a ``config`` that does not exist
    or does not load."""
    if config and not os.path.isfile(config):
        raise ConfigError(
            f"config names {config}, which does not exist",
            fix="point config at a remotehands.toml, or leave it out to use the environment "
            "(RH_CONFIG, RH_*)",
        )
    settings = load_settings({**os.environ, "RH_CONFIG": config}) if config else load_settings()
    log_to_file(settings)
    rt = Runtime(settings)
    try:
        yield rt
    finally:
        if "db" in rt.__dict__:
            rt.db.dispose()


def power_task(rt: Runtime, params: dict[str, Any], check_mode: bool) -> dict[str, Any]:
    """``remotehands_power``: the checks, then the preview (check mode) or the jobs, one result per host.
    Raises ``RemoteHandsError`` or ``TaskFailed``."""
    verb = str(params["state"])
    t, chosen, approver = checked_power_ticket(rt, str(params["ticket"]), verb, list(params["hosts"] or []))
    head = {"ticket": t.id, "action": POWER_ACTIONS[verb]}
    finished = finished_jobs(rt, t, chosen)
    if finished is not None:
        return head | {
            "changed": False,
            "jobs": finished,
            "results": [host_row(rt, j, False) for j in finished],
        }
    try:
        if check_mode:
            return head | power_preview(rt, t, verb, chosen)
        ids = make_jobs(rt, t, chosen, approver)
        timeout = float(params["timeout"])
        acted_now = run_here(rt, ids, timeout)
        results = [host_row(rt, j, j in acted_now) for j in ids]
        out = {"changed": bool(acted_now), "jobs": ids, "results": results}
        fail_unless_succeeded(
            t, [(r["job"], r["host"], r["state"], r["result"]) for r in results], timeout, out
        )
        return head | out
    except TaskFailed as exc:
        exc.extra = head | exc.extra
        raise


def job_task(rt: Runtime, params: dict[str, Any], check_mode: bool) -> dict[str, Any]:
    """``remotehands_job``: the checks, then the preview (check mode) or the jobs, made and with ``wait``
    run here. Raises ``RemoteHandsError`` or ``TaskFailed``."""
    action = str(params["action"])
    t, chosen, approver = checked_job_ticket(
        rt, str(params["ticket"]), action, list(params["targets"]), dict(params["params"] or {})
    )
    head = {"ticket": t.id, "action": action}
    finished = finished_jobs(rt, t, chosen)
    if finished is not None:
        return head | {"changed": False, "jobs": [describe_job(rt, j, False) for j in finished]}
    try:
        if check_mode:
            return head | job_preview(rt, t, chosen)
        known = {job_id for job_id, _ in reused_jobs(rt, t).values()}
        ids = make_jobs(rt, t, chosen, approver)
        if not params["wait"]:
            jobs = [describe_job(rt, j, j not in known) for j in ids]
            return head | {"changed": any(j["changed"] for j in jobs), "jobs": jobs}
        timeout = float(params["timeout"])
        acted_now = run_here(rt, ids, timeout)
        jobs = [describe_job(rt, j, j in acted_now) for j in ids]
        out = {"changed": bool(acted_now), "jobs": jobs}
        fail_unless_succeeded(
            t, [(j["id"], j["target"], j["state"], j["reason"]) for j in jobs], timeout, out
        )
        return head | out
    except TaskFailed as exc:
        exc.extra = head | exc.extra
        raise


def checked_power_ticket(
    rt: Runtime, ticket_id: str, verb: str, hosts: list[str]
) -> tuple[Ticket, list[str], str]:
    """The ticket, the hosts it is asked to act on and its approver, after the checks of ``remotehands
    power <verb> --ticket``: it asks for ``power.<verb>``, covers every host and is approved at its system
    (whether it is still open is ``finished_jobs``' question). Raises ``NotPermitted``, ``NotApproved``,
    ``UnknownTarget``, ``TicketNotFound``."""
    t = rt.tickets.get(ticket_id)
    request = t.wanted()
    action = POWER_ACTIONS[verb]
    if request.action != action:
        raise NotPermitted(
            f"{t.id} asks for {request.action}, not {action}",
            fix=f"open a ticket for {action} on these hosts",
        )
    chosen = [h.name for h in select_hosts(rt.inventory(), hosts, None, None)] or list(request.targets)
    outside = [h for h in chosen if h not in request.targets]
    if outside:
        raise NotPermitted(
            f"{t.id} does not cover {', '.join(outside)}",
            fix=f"its targets are {', '.join(request.targets)}; open a ticket for the others",
        )
    return t, chosen, approver_of(rt, t)


def checked_job_ticket(
    rt: Runtime, ticket_id: str, action: str, targets: list[str], params: dict[str, Any]
) -> tuple[Ticket, list[str], str]:
    """The ticket, the targets and its approver, once the ticket asks for ``action`` with ``params`` on
    every one of ``targets`` and reads approved at its system, and the request checks against today's
    inventory (whether the ticket is still open is ``finished_jobs``' question). Raises ``NotPermitted``,
    ``NotApproved``, ``InvalidRequest``, ``UnknownTarget``, ``TicketNotFound``."""
    t = rt.tickets.get(ticket_id)
    request = t.wanted()
    chosen = list(dict.fromkeys(targets))
    if not chosen:
        raise InvalidRequest("targets is empty", fix=f"name targets of {t.id}: {', '.join(request.targets)}")
    outside = [x for x in chosen if x not in request.targets]
    if request.action != action or outside or canonical(request.params) != canonical(params):
        asked = in_words(request.action, request.targets, dict(request.params), t.sensitive)
        raise NotPermitted(
            f"{t.id} asks for {asked}; not {in_words(action, chosen, params, t.sensitive)}",
            fix="run the task with what the ticket asks, or open a ticket for this work",
        )
    approver = approver_of(rt, t)
    # The inventory may have changed since the ticket was opened: check again, as a job would find it.
    inv = rt.inventory()
    narrowed = TaskRequest(action=request.action, targets=tuple(chosen), params=dict(request.params))
    check_request(
        narrowed,
        customer=t.customer,
        subscription=t.subscription,
        inventory=inv,
        known_actions=actions.names(),
    )
    resolve = actions.get(action).resolve
    if resolve is not None:
        for target in chosen:
            resolve(inv.host(target), dict(request.params))
    return t, chosen, approver


def approver_of(rt: Runtime, t: Ticket) -> str:
    """Who approved ``t``, as its ticket system says; raises ``NotApproved`` when it is not approved."""
    approval = rt.tickets.approval(t.id)
    if not approval.approved or approval.approver is None:
        raise NotApproved(
            f"{t.id} is not approved (status {t.status.value}); nothing was done",
            fix=f"someone other than {t.requester} runs: remotehands tickets approve {t.id}",
        )
    return approval.approver


def canonical(params: dict[str, Any]) -> str:
    """``params`` as one JSON text with sorted keys: the same data compares equal however it was written."""
    return json.dumps(params, sort_keys=True, default=str)


def in_words(
    action: str, targets: list[str] | tuple[str, ...], params: dict[str, Any], sensitive: bool
) -> str:
    """A request in words; the params of a sensitive ticket are not repeated."""
    if not params:
        said = "no params"
    elif sensitive:
        said = "params (not shown: the ticket is sensitive)"
    else:
        said = f"params {canonical(params)}"
    return f"{action} on {', '.join(targets)} with {said}"


def reused_jobs(rt: Runtime, t: Ticket) -> dict[str, tuple[int, str]]:
    """Per target, the job (id, state) running the ticket again would return instead of making one: the
    newest job for this request that did not fail and was not cancelled (as ``create_jobs_for_ticket``
    decides)."""
    key = request_key(t.wanted())
    newest: dict[str, tuple[int, str]] = {}
    for job in store.jobs_of_ticket(rt.db, t.id):
        if job.ticket_system == t.system and job.request_key in (key, None):
            newest[job.target] = (job.id, job.state)
    return {target: seen for target, seen in newest.items() if seen[1] not in ("failed", "cancelled")}


def finished_jobs(rt: Runtime, t: Ticket, chosen: list[str]) -> list[int] | None:
    """None while ``t`` is open. For a resolved or closed ticket, its succeeded jobs for ``chosen`` when
    every one has one (the task ran before: nothing to do); otherwise raises ``NotPermitted``, as making
    jobs for it would."""
    if t.status not in (TicketStatus.RESOLVED, TicketStatus.CLOSED):
        return None
    reused = reused_jobs(rt, t)
    if all(x in reused and reused[x][1] == "succeeded" for x in chosen):
        return [reused[x][0] for x in chosen]
    raise NotPermitted(f"{t.id} is {t.status.value}; its work is over", fix="open a new ticket for new work")


def busy_check(rt: Runtime, targets: list[str], reused: dict[str, tuple[int, str]]) -> None:
    """Raise ``TargetBusy`` as a real run would when another job holds one of ``targets`` (a target in
    ``reused`` is held by the job a run would return, so it is not busy)."""
    with rt.db.session() as s:
        for target in targets:
            if target in reused:
                continue
            holder = s.execute(select(Job.id).where(Job.active_target == target)).scalar_one_or_none()
            if holder is not None:
                raise TargetBusy(target, holder)


def power_preview(rt: Runtime, t: Ticket, verb: str, chosen: list[str]) -> dict[str, Any]:
    """Check mode of ``remotehands_power``: read each host's power and say what a run would change; no job
    is made. Raises ``TargetBusy``, or ``TaskFailed`` when a host's power cannot be read."""
    reused = reused_jobs(rt, t)
    busy_check(rt, chosen, reused)
    inv = rt.inventory()
    rows = read_all(rt, [inv.host(h) for h in chosen], per_site=32)
    unreadable = [f"{r['host']}: {r['error']}" for r in rows if r["error"]]
    if unreadable:
        raise TaskFailed("could not read the power state of " + "; ".join(unreadable))
    results: list[dict[str, Any]] = []
    for row in rows:
        host, power = row["host"], row["power"]
        entry: dict[str, Any] = {"host": host, "power_before": power, "via": row["via"]}
        if host in reused:
            job_id, state = reused[host]
            said = f"job {job_id} ({state}) already does this request; a run returns it"
            entry |= {"job": job_id, "state": state, "changed": False, "result": said}
        else:
            want = {"on": "on", "off": "off"}.get(verb)
            change = want is None or power != want
            said = f"{host} is {power}; would {verb}" if change else f"{host} is already {power}"
            entry |= {"job": None, "state": "would_run", "changed": change, "result": said}
        results.append(entry)
    return {
        "changed": any(r["changed"] for r in results),
        "jobs": [r["job"] for r in results if r["job"] is not None],
        "results": results,
    }


def job_preview(rt: Runtime, t: Ticket, chosen: list[str]) -> dict[str, Any]:
    """Check mode of ``remotehands_job``: which targets would get a new job and which already have one;
    nothing is made. Raises ``TargetBusy``."""
    reused = reused_jobs(rt, t)
    busy_check(rt, chosen, reused)
    jobs: list[dict[str, Any]] = []
    for target in chosen:
        if target in reused:
            jobs.append(describe_job(rt, reused[target][0], False))
            continue
        jobs.append(
            {
                "id": None,
                "target": target,
                "action": t.wanted().action,
                "state": "would_run",
                "reason": f"a job would be made for {target}",
                "last_step": None,
                "changed": True,
            }
        )
    return {"changed": any(j["changed"] for j in jobs), "jobs": jobs}


def make_jobs(rt: Runtime, t: Ticket, chosen: list[str], approver: str) -> list[int]:
    """The ticket's jobs for ``chosen``, approved by ``approver``, made or found (a job for this request
    that did not fail and was not cancelled is returned, not made again). Raises as
    ``create_jobs_for_ticket`` does: ``NotPermitted``, ``InvalidRequest``, ``TargetBusy``."""
    return store.create_jobs_for_ticket(
        rt.db, t, approver, current_user(), only=frozenset(chosen), inventory=rt.inventory()
    )


def run_here(rt: Runtime, ids: list[int], timeout: float) -> set[int]:
    """Run the jobs ``ids`` in this process until they end or ``timeout`` passes (jobs not ended keep their
    journal); the jobs that acted in this run (a job that had succeeded before it did not)."""
    with rt.db.session() as s:
        done_before = {j for j in ids if store.get_job(s, j).state == "succeeded"}
    run_jobs(rt, ids, quiet=True, timeout=timeout)
    return {j for j in ids if j not in done_before and acted(rt, j)}


def acted(rt: Runtime, job_id: int) -> bool:
    """Whether the job changed the equipment: a step that acts (one re-checking approval) was done, and the
    job does not say it had nothing to do (a power switch already there, a rule already present)."""
    with rt.db.session() as s:
        job = store.get_job(s, job_id)
        data, action = dict(job.data or {}), job.action
        rows = [(r.idx, r.status) for r in store.steps_of(s, job_id)]
    if data.get("noop"):
        return False
    if action != "power.cycle" and "sent" in data and data["sent"] is None:
        return False
    steps = actions.get(action).job_steps(data)
    return any(status == "done" and idx < len(steps) and steps[idx].needs_approval for idx, status in rows)


def fail_unless_succeeded(
    t: Ticket, ended: list[tuple[int, str, str, str | None]], timeout: float, out: dict[str, Any]
) -> None:
    """Raise ``TaskFailed`` (with ``out`` beside the message) unless every job of ``ended`` (id, target,
    state, reason, as read after a run of ``timeout`` seconds) succeeded: naming the jobs still going, else
    the jobs that did not succeed."""
    unsettled = [(job_id, target, state) for job_id, target, state, _ in ended if state not in SETTLED]
    if unsettled:
        names = ", ".join(f"job {job_id} ({target}, {state})" for job_id, target, state in unsettled)
        raise TaskFailed(
            f"{names} not ended after {timeout:g}s; they keep their journal. Fix: let them finish "
            f"with remotehands run --ticket {t.id} (or a remotehands worker) and follow with remotehands "
            "jobs follow ID",
            **out,
        )
    bad = [
        f"{target} job {job_id} {state}: {reason}"
        for job_id, target, state, reason in ended
        if state != "succeeded"
    ]
    if bad:
        raise TaskFailed(
            f"{t.wanted().action} for {t.id}: {'; '.join(bad)}. Fix: see remotehands jobs show ID", **out
        )


def host_row(rt: Runtime, job_id: int, changed: bool) -> dict[str, Any]:
    """A job as ``remotehands_power`` returns it: host, job, state, result, power before, changed."""
    with rt.db.session() as s:
        job = store.get_job(s, job_id)
        return {
            "host": job.target,
            "job": job.id,
            "state": job.state,
            "result": job.reason,
            "power_before": dict(job.data or {}).get("power_before"),
            "changed": changed,
        }


def describe_job(rt: Runtime, job_id: int, changed: bool) -> dict[str, Any]:
    """A job as ``remotehands_job`` returns it: id, target, action, state, reason, newest journal row,
    changed."""
    with rt.db.session() as s:
        job = store.get_job(s, job_id)
        rows = store.steps_of(s, job_id)
        last = rows[-1] if rows else None  # the furthest step reached, its latest attempt
        return {
            "id": job.id,
            "target": job.target,
            "action": job.action,
            "state": job.state,
            "reason": job.reason,
            "last_step": None
            if last is None
            else {"index": last.idx + 1, "name": last.name, "status": last.status, "result": last.result},
            "changed": changed,
        }
