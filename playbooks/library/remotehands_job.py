#!/usr/bin/python
"""Ansible module ``remotehands_job``: run any remotehands action a ticket asks for, as that ticket's
journaled jobs, and wait for them (the path of ``remotehands run --ticket``, narrowed to some targets).

It runs on the controller, in a python that has remotehands installed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import os
import sys
from typing import TYPE_CHECKING, Any

from ansible.module_utils.basic import AnsibleModule  # type: ignore[import-untyped]

if TYPE_CHECKING:
    from remotehands.config import Settings
    from remotehands.runtime import Runtime
    from remotehands.tickets.base import Ticket

DOCUMENTATION = r"""
---
module: remotehands_job
short_description: Run the remotehands action an approved ticket asks for, and wait for its jobs
description:
  - Makes the jobs of an approved remotehands ticket for O(targets) (one job per target) and runs them in
    this process until they end, exactly as C(remotehands run --ticket TICKET) does for all its targets.
  - The ticket must ask for O(action) with O(params) (compared as data, so key order and quoting do not
    matter) on targets that include every one of O(targets), and read approved at its own ticket system.
    Otherwise the task fails saying what the ticket asks for, and nothing is done.
  - Running the task again returns the jobs already made for the ticket's request (a succeeded job is not
    repeated); only a failed or cancelled job is replaced by a new one.
  - Runs on the controller. Use C(delegate_to=localhost) (or C(connection=local)) and set
    C(ansible_python_interpreter) to a python that has remotehands installed, e.g. the C(.venv/bin/python)
    of a remotehands checkout.
  - Settings come from O(config), else from the module's environment like the remotehands CLI
    (C(RH_CONFIG), C(RH_DB_URL), C(RH_INVENTORY), ...). The job's actor is C(RH_USER), else the login name.
options:
  action:
    description:
      - The remotehands action, e.g. C(power.cycle), C(reimage), C(net.firewall_rule), C(storage.expand_lun).
      - Must be the action the ticket asks for.
    type: str
    required: true
  targets:
    description: Inventory names of the hosts, network devices or arrays; each must be a target of the ticket.
    type: list
    elements: str
    required: true
  ticket:
    description: The approved ticket, e.g. C(RH-12).
    type: str
    required: true
  params:
    description: The action's parameters; must equal the ticket's (an empty dict for actions without any).
    type: dict
    default: {}
  config:
    description:
      - Path of the C(remotehands.toml) to use (as C(RH_CONFIG)); C(RH_*) environment variables still
        override its keys. Left out, the environment decides.
    type: path
  timeout:
    description:
      - Seconds to wait for the jobs to end (with O(wait)). Jobs not ended by then keep their journal and
        resume under C(remotehands worker) or C(remotehands run --ticket); the task then fails naming them.
    type: float
    default: 900
  wait:
    description:
      - Run the jobs here and wait until they end.
      - V(false) only makes (or finds) the jobs and returns them queued, for a running C(remotehands worker)
        to run; C(changed) then says whether a job was made.
    type: bool
    default: true
attributes:
  check_mode:
    description: Can run in check mode and report what would happen without changing anything.
    support: full
    details: >-
      Checks the ticket (request, approval, status) and the targets and params against the inventory, and
      reports which targets would get a new job; makes no job.
notes:
  - C(changed) is true when a job ran a step that acts on the equipment in this run, and did not find the
    work already done (a host already in the wanted power state, a rule already present).
  - Secrets are never in the result; every string passes remotehands' redactor, and the params of a
    sensitive ticket are not repeated in messages.
author:
  - remotehands
"""

EXAMPLES = r"""
- name: Add the firewall rule of RH-40
  remotehands_job:
    action: net.firewall_rule
    targets: [fw-asa-01]
    ticket: RH-40
    params:
      source: 203.0.113.0/24
      destination: 198.51.100.20
      protocol: tcp
      ports: "443"
      from_zone: outside
      to_zone: inside
  delegate_to: localhost
  vars:
    ansible_python_interpreter: /opt/remotehands/.venv/bin/python

- name: Queue the reimage of RH-41 for the worker, without waiting
  remotehands_job:
    action: reimage
    targets: [mac-01]
    ticket: RH-41
    params: {image: macos-15}
    wait: false
    config: /etc/remotehands/remotehands.toml
  delegate_to: localhost
"""

RETURN = r"""
ticket:
  description: The ticket the jobs belong to.
  returned: always
  type: str
  sample: RH-40
action:
  description: The action asked.
  returned: always
  type: str
  sample: net.firewall_rule
jobs:
  description: One entry per target (in check mode, per target that already has a job, with C(would) set).
  returned: success and when jobs ran
  type: list
  elements: dict
  contains:
    id:
      description: The job's id (null in check mode for a job that would be made).
      type: int
    target:
      description: The target.
      type: str
    action:
      description: The concrete action the job runs (C(reimage) resolves per host, e.g. C(reimage.mdm-erase)).
      type: str
    state:
      description: >-
        The job's state (succeeded, failed, cancelled, needs_operator; queued, running or waiting when not
        waited for or past the timeout); V(would_run) in check mode for a job that would be made.
      type: str
    reason:
      description: The job's reason (its last word).
      type: str
    last_step:
      description: The newest journal row of the job (index, name, status, result); null before any step.
      type: dict
    changed:
      description: Whether this job acted in this run (would be made, in check mode).
      type: bool
msg:
  description: On failure, remotehands' one-line message naming the fix, or what the ticket asks for.
  returned: failure
  type: str
"""

ARGUMENT_SPEC: dict[str, Any] = {
    "action": {"type": "str", "required": True},
    "targets": {"type": "list", "elements": "str", "required": True},
    "ticket": {"type": "str", "required": True},
    "params": {"type": "dict", "default": {}},
    "config": {"type": "path"},
    "timeout": {"type": "float", "default": 900.0},
    "wait": {"type": "bool", "default": True},
}

SETTLED = ("succeeded", "failed", "cancelled", "needs_operator")

log = logging.getLogger("remotehands.ansible")


class TaskFailed(Exception):
    """The task fails with ``msg``; ``extra`` goes into the result beside it."""

    def __init__(self, msg: str, **extra: Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.extra = extra


def load(config: str | None) -> Settings:
    """The settings: ``config`` as RH_CONFIG when given, else the environment. Raises ``ConfigError``."""
    from remotehands.config import load_settings
    from remotehands.errors import ConfigError

    if not config:
        return load_settings()
    if not os.path.isfile(config):
        raise ConfigError(
            f"config names {config}, which does not exist",
            fix="point config at a remotehands.toml, or leave it out to use the environment (RH_CONFIG, RH_*)",
        )
    return load_settings({**os.environ, "RH_CONFIG": config})


def log_to_file(settings: Settings) -> str | None:
    """Log (redacted) to remotehands' log file, as the CLI does; the path, or None if it cannot be opened."""
    from remotehands import redaction

    path = settings.resolved_log_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=5_000_000, backupCount=3)
    except OSError:
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"))
    handler.addFilter(redaction.RedactingFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for noisy in ("alembic", "pyghmi", "redfish", "httpx", "paramiko"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return str(path)


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


def checked_ticket(
    rt: Runtime, ticket_id: str, action: str, targets: list[str], params: dict[str, Any]
) -> tuple[Ticket, list[str], str]:
    """The ticket, the targets and its approver, once the ticket asks for ``action`` with ``params`` on
    every one of ``targets`` and reads approved at its system, and the request checks against today's
    inventory (whether the ticket is still open is ``finished_jobs``' question). Raises ``NotPermitted``/``NotApproved``, ``InvalidRequest``, ``UnknownTarget``,
    ``TicketNotFound``."""
    from remotehands.errors import InvalidRequest, NotApproved, NotPermitted
    from remotehands.jobs import actions
    from remotehands.tickets.base import TaskRequest
    from remotehands.tickets.validate import check_request

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
    approval = rt.tickets.approval(t.id)
    if not approval.approved or approval.approver is None:
        raise NotApproved(
            f"{t.id} is not approved (status {t.status.value}); nothing was done",
            fix=f"someone other than {t.requester} runs: remotehands tickets approve {t.id}",
        )
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
    return t, chosen, approval.approver


def reused_jobs(rt: Runtime, t: Ticket) -> dict[str, tuple[int, str]]:
    """Per target, the job running the ticket again would return instead of making one: the newest job for
    this request that did not fail and was not cancelled (as ``create_jobs_for_ticket`` decides)."""
    from remotehands.jobs import store
    from remotehands.tickets.extract import request_key

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
    from remotehands.errors import NotPermitted
    from remotehands.tickets.base import TicketStatus

    if t.status not in (TicketStatus.RESOLVED, TicketStatus.CLOSED):
        return None
    reused = reused_jobs(rt, t)
    if all(x in reused and reused[x][1] == "succeeded" for x in chosen):
        return [reused[x][0] for x in chosen]
    raise NotPermitted(f"{t.id} is {t.status.value}; its work is over", fix="open a new ticket for new work")


def busy_check(rt: Runtime, targets: list[str], reused: dict[str, tuple[int, str]]) -> None:
    """Raise ``TargetBusy`` as a real run would when another job holds one of ``targets``."""
    from sqlalchemy import select

    from remotehands.errors import TargetBusy
    from remotehands.jobs.tables import Job

    with rt.db.session() as s:
        for target in targets:
            if target in reused:
                continue
            holder = s.execute(select(Job.id).where(Job.active_target == target)).scalar_one_or_none()
            if holder is not None:
                raise TargetBusy(target, holder)


def acted(rt: Runtime, job_id: int) -> bool:
    """Whether the job changed the equipment: a step that acts (one re-checking approval) was done, and the
    job does not say it had nothing to do (a power switch already there, a rule already present)."""
    from remotehands.jobs import actions, store

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


def describe_job(rt: Runtime, job_id: int, changed: bool) -> dict[str, Any]:
    """A job as the task returns it: id, target, action, state, reason, newest journal row, changed."""
    from remotehands.jobs import store

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


def preview(rt: Runtime, t: Ticket, chosen: list[str]) -> dict[str, Any]:
    """Check mode: which targets would get a new job and which already have one; nothing is made."""
    reused = reused_jobs(rt, t)
    busy_check(rt, chosen, reused)
    jobs: list[dict[str, Any]] = []
    for target in chosen:
        if target in reused:
            jobs.append(describe_job(rt, reused[target][0], False))
        else:
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


def execute(
    rt: Runtime, t: Ticket, chosen: list[str], approver: str, wait: bool, timeout: float
) -> dict[str, Any]:
    """Make (or find) the ticket's jobs for ``chosen``; with ``wait`` run them here until they end or
    ``timeout``. Raises ``TaskFailed`` when a waited-for job did not succeed."""
    from remotehands.cli.common import current_user
    from remotehands.cli.jobs_cmd import run_jobs
    from remotehands.jobs import store

    known = {job_id for job_id, _ in reused_jobs(rt, t).values()}
    ids = store.create_jobs_for_ticket(
        rt.db, t, approver, current_user(), only=frozenset(chosen), inventory=rt.inventory()
    )
    if not wait:
        jobs = [describe_job(rt, j, j not in known) for j in ids]
        return {"changed": any(j["changed"] for j in jobs), "jobs": jobs}
    with rt.db.session() as s:
        done_before = {j for j in ids if store.get_job(s, j).state == "succeeded"}
    run_jobs(rt, ids, quiet=True, timeout=timeout)
    jobs = [describe_job(rt, j, j not in done_before and acted(rt, j)) for j in ids]
    out = {"changed": any(j["changed"] for j in jobs), "jobs": jobs}
    unsettled = [j for j in jobs if j["state"] not in SETTLED]
    if unsettled:
        names = ", ".join(f"job {j['id']} ({j['target']}, {j['state']})" for j in unsettled)
        raise TaskFailed(
            f"{names} not ended after {timeout:g}s; they keep their journal. Fix: let them finish with "
            f"remotehands run --ticket {t.id} (or a remotehands worker) and follow with remotehands jobs "
            "follow ID",
            **out,
        )
    bad = [j for j in jobs if j["state"] != "succeeded"]
    if bad:
        names = "; ".join(f"{j['target']} job {j['id']} {j['state']}: {j['reason']}" for j in bad)
        raise TaskFailed(f"{t.wanted().action} for {t.id}: {names}. Fix: see remotehands jobs show ID", **out)
    return out


def run(params: dict[str, Any], check_mode: bool) -> dict[str, Any]:
    """The task: checks, then the preview (check mode) or the jobs. Raises ``RemoteHandsError`` or
    ``TaskFailed``."""
    from remotehands.runtime import Runtime

    settings = load(params["config"])
    log_to_file(settings)
    rt = Runtime(settings)
    try:
        action = str(params["action"])
        t, chosen, approver = checked_ticket(
            rt, str(params["ticket"]), action, list(params["targets"]), dict(params["params"] or {})
        )
        head = {"ticket": t.id, "action": action}
        finished = finished_jobs(rt, t, chosen)
        if finished is not None:
            return head | {"changed": False, "jobs": [describe_job(rt, j, False) for j in finished]}
        try:
            if check_mode:
                body = preview(rt, t, chosen)
            else:
                body = execute(rt, t, chosen, approver, bool(params["wait"]), float(params["timeout"]))
        except TaskFailed as exc:
            exc.extra = head | exc.extra
            raise
        return head | body
    finally:
        if "db" in rt.__dict__:
            rt.db.dispose()


def main() -> None:
    """Entry point: runs the task and answers Ansible; never a traceback, secrets redacted."""
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        from remotehands import redaction
        from remotehands.errors import RemoteHandsError
    except ImportError as exc:
        module.fail_json(
            msg=f"remotehands cannot be imported by {sys.executable} ({exc}). Fix: set "
            "ansible_python_interpreter to the python of the environment remotehands is installed in"
        )
        return
    failure: dict[str, Any] | None = None
    result: dict[str, Any] = {}
    # Library code may print (Rich); stdout carries the module's JSON answer and nothing else.
    with contextlib.redirect_stdout(sys.stderr):
        try:
            result = run(module.params, module.check_mode)
        except RemoteHandsError as exc:
            log.info("remotehands_job failed: %s", exc)
            failure = {"msg": str(exc), "changed": False}
        except TaskFailed as exc:
            failure = {"changed": False, **exc.extra, "msg": exc.msg}
        except Exception as exc:
            log.exception("remotehands_job: internal error")
            failure = {
                "msg": f"internal error ({type(exc).__name__}: {exc}); the traceback is in remotehands' log file",
                "changed": False,
            }
    if failure is not None:
        module.fail_json(**redaction.redact_data(failure))
    module.exit_json(**redaction.redact_data(result))


if __name__ == "__main__":
    main()
