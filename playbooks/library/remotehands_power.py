#!/usr/bin/python
"""Ansible module ``remotehands_power``: power hosts on, off, or cycle them under an approved remotehands
ticket, through remotehands' own checks and journaled jobs (the path of ``remotehands power <state>
--ticket``), and wait for the jobs to end.

It runs on the controller, in a python that has remotehands installed; the hosts are inventory names of
remotehands, not hosts Ansible connects to.
"""

from __future__ import annotations

import contextlib
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
module: remotehands_power
short_description: Power hosts on, off or cycle them under an approved remotehands ticket
description:
  - Runs C(power.on), C(power.off) or C(power.cycle) for hosts of the remotehands inventory as remotehands
    jobs, exactly as C(remotehands power <state> --ticket TICKET) does, and waits until they end.
  - The ticket must ask for that power action, cover every host named, and read approved at its own ticket
    system; otherwise the task fails with remotehands' message, which names the fix, and nothing is done.
  - Running the task again for the same ticket returns the jobs it already made (a succeeded job is not
    repeated) and reports no change.
  - Runs on the controller. Use C(delegate_to=localhost) (or C(connection=local)) and set
    C(ansible_python_interpreter) to a python that has remotehands installed, e.g. the C(.venv/bin/python)
    of a remotehands checkout.
  - Settings (database, inventory, log file) come from O(config), else from the environment of the module
    like the remotehands CLI (C(RH_CONFIG), C(RH_DB_URL), C(RH_INVENTORY), ...; C(environment:) on the task
    sets them). The job's actor is C(RH_USER), else the login name.
options:
  hosts:
    description:
      - Inventory names of remotehands hosts to act on; each must be a target of O(ticket).
      - Empty or left out, every target of the ticket.
    type: list
    elements: str
    default: []
  state:
    description:
      - V(on) powers on (a host that is on is left alone), V(off) powers off hard, V(cycle) power-cycles
        and confirms the host is back on.
      - The ticket must ask for the matching action, C(power.on), C(power.off) or C(power.cycle).
    type: str
    required: true
    choices: ["on", "off", cycle]
  ticket:
    description: The approved ticket the change is done under, e.g. C(RH-12).
    type: str
    required: true
  config:
    description:
      - Path of the C(remotehands.toml) to use (as C(RH_CONFIG)); C(RH_*) environment variables still
        override its keys.
      - Left out, the environment decides, as for the CLI.
    type: path
  timeout:
    description:
      - Seconds to wait for the jobs to end. Jobs not ended by then keep their journal and resume under
        C(remotehands worker) or C(remotehands run --ticket); the task then fails naming them.
    type: float
    default: 900
attributes:
  check_mode:
    description: Can run in check mode and report what would change without changing anything.
    support: full
    details: Reads each host's power state and reports what would change; makes no job and sends nothing.
notes:
  - C(changed) is true when a job acted in this run. For V(on) and V(off) a host already in that state is
    no change; V(cycle) always is. A job found already succeeded for this ticket is no change.
  - Secrets are never in the result; every string passes remotehands' redactor.
author:
  - remotehands
"""

EXAMPLES = r"""
- name: Power-cycle these hosts under ticket RH-12
  hosts: localhost
  gather_facts: false
  vars:
    ansible_python_interpreter: /opt/remotehands/.venv/bin/python
  tasks:
    - name: Cycle esx-01 and esx-02
      remotehands_power:
        hosts: [esx-01, esx-02]
        state: cycle
        ticket: RH-12
      environment:
        RH_CONFIG: /etc/remotehands/remotehands.toml

# The play's hosts are remotehands hosts: one task for all of them, run on the controller.
- name: Power on the rack after maintenance
  hosts: rack_r1
  gather_facts: false
  tasks:
    - name: Power on every host of the play
      remotehands_power:
        hosts: "{{ ansible_play_hosts }}"
        state: "on"
        ticket: RH-31
        config: /etc/remotehands/remotehands.toml
      delegate_to: localhost
      run_once: true
      vars:
        ansible_python_interpreter: /opt/remotehands/.venv/bin/python

- name: See what a cycle would do (check mode reads power states only)
  remotehands_power:
    hosts: [esx-03]
    state: cycle
    ticket: RH-14
  check_mode: true
  delegate_to: localhost
"""

RETURN = r"""
ticket:
  description: The ticket the jobs ran under.
  returned: always
  type: str
  sample: RH-12
action:
  description: The remotehands action.
  returned: always
  type: str
  sample: power.cycle
jobs:
  description: Ids of the jobs, one per host (empty in check mode unless a job for the request exists).
  returned: success and when jobs ran
  type: list
  elements: int
  sample: [41, 42]
results:
  description: One entry per host, in the order asked.
  returned: success and when jobs ran
  type: list
  elements: dict
  contains:
    host:
      description: Inventory name of the host.
      type: str
    job:
      description: The job's id; null in check mode when none would be reused.
      type: int
    state:
      description: >-
        The job's state (succeeded, failed, cancelled, needs_operator; queued, running or waiting when
        the timeout passed). In check mode V(would_run) or the existing job's state.
      type: str
    result:
      description: The job's reason (its last word); in check mode what would happen.
      type: str
    changed:
      description: Whether this host's power was (or, in check mode, would be) changed.
      type: bool
    power_before:
      description: The power state read before acting (on, off, unknown); null when not read.
      type: str
    via:
      description: Check mode only, the power path that answered.
      type: str
msg:
  description: On failure, remotehands' one-line message naming the fix.
  returned: failure
  type: str
"""

ACTIONS = {"on": "power.on", "off": "power.off", "cycle": "power.cycle"}

ARGUMENT_SPEC: dict[str, Any] = {
    "hosts": {"type": "list", "elements": "str", "default": []},
    "state": {"type": "str", "required": True, "choices": list(ACTIONS)},
    "ticket": {"type": "str", "required": True},
    "config": {"type": "path"},
    "timeout": {"type": "float", "default": 900.0},
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


def checked_ticket(rt: Runtime, ticket_id: str, verb: str, hosts: list[str]) -> tuple[Ticket, list[str], str]:
    """The ticket, the hosts it is asked to act on and its approver, after the checks of ``remotehands
    power <verb> --ticket``: it asks for ``power.<verb>``, covers every host and is approved at its system
    (whether it is still open is ``finished_jobs``' question). Raises ``NotPermitted``/``NotApproved``, ``UnknownTarget``, ``TicketNotFound``."""
    from remotehands.cli.power_cmd import select_hosts
    from remotehands.errors import NotApproved, NotPermitted

    t = rt.tickets.get(ticket_id)
    request = t.wanted()
    action = ACTIONS[verb]
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
    approval = rt.tickets.approval(t.id)
    if not approval.approved or approval.approver is None:
        raise NotApproved(
            f"{t.id} is not approved (status {t.status.value}); nothing was done",
            fix=f"someone other than {t.requester} runs: remotehands tickets approve {t.id}",
        )
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


def preview(rt: Runtime, t: Ticket, verb: str, chosen: list[str]) -> dict[str, Any]:
    """Check mode: read each host's power and say what a run would change; no job is made."""
    from remotehands.cli.power_cmd import read_all

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
            entry |= {
                "job": job_id,
                "state": state,
                "changed": False,
                "result": f"job {job_id} ({state}) already does this request; a run returns it",
            }
        else:
            want = {"on": "on", "off": "off"}.get(verb)
            change = want is None or power != want
            entry |= {
                "job": None,
                "state": "would_run",
                "changed": change,
                "result": f"{host} is {power}; would {verb}" if change else f"{host} is already {power}",
            }
        results.append(entry)
    return {
        "changed": any(r["changed"] for r in results),
        "jobs": [r["job"] for r in results if r["job"] is not None],
        "results": results,
    }


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


def host_rows(rt: Runtime, ids: list[int], done_before: set[int]) -> list[dict[str, Any]]:
    """One result per job: host, job, state, result, power before, and ``changed`` (it acted now: a job
    that had succeeded before this run did not)."""
    from remotehands.jobs import store

    rows: list[dict[str, Any]] = []
    for job_id in ids:
        with rt.db.session() as s:
            job = store.get_job(s, job_id)
            row = {
                "host": job.target,
                "job": job.id,
                "state": job.state,
                "result": job.reason,
                "power_before": dict(job.data or {}).get("power_before"),
            }
        rows.append(row | {"changed": job_id not in done_before and acted(rt, job_id)})
    return rows


def change(rt: Runtime, t: Ticket, chosen: list[str], approver: str, timeout: float) -> dict[str, Any]:
    """Make (or find) the ticket's jobs for ``chosen``, run them in this process until they end or
    ``timeout``, and report per host. Raises ``TaskFailed`` when a job did not succeed."""
    from remotehands.cli.common import current_user
    from remotehands.cli.jobs_cmd import run_jobs
    from remotehands.jobs import store

    ids = store.create_jobs_for_ticket(
        rt.db, t, approver, current_user(), only=frozenset(chosen), inventory=rt.inventory()
    )
    with rt.db.session() as s:
        done_before = {j for j in ids if store.get_job(s, j).state == "succeeded"}
    run_jobs(rt, ids, quiet=True, timeout=timeout)
    results = host_rows(rt, ids, done_before)
    out = {"changed": any(r["changed"] for r in results), "jobs": ids, "results": results}
    unsettled = [r for r in results if r["state"] not in SETTLED]
    if unsettled:
        names = ", ".join(f"job {r['job']} ({r['host']}, {r['state']})" for r in unsettled)
        raise TaskFailed(
            f"{names} not ended after {timeout:g}s; they keep their journal. Fix: let them finish with "
            f"remotehands run --ticket {t.id} (or a remotehands worker) and follow with remotehands jobs "
            "follow ID",
            **out,
        )
    bad = [r for r in results if r["state"] != "succeeded"]
    if bad:
        names = "; ".join(f"{r['host']} job {r['job']} {r['state']}: {r['result']}" for r in bad)
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
        verb = str(params["state"])
        t, chosen, approver = checked_ticket(rt, str(params["ticket"]), verb, list(params["hosts"] or []))
        head = {"ticket": t.id, "action": ACTIONS[verb]}
        finished = finished_jobs(rt, t, chosen)
        if finished is not None:
            return head | {
                "changed": False,
                "jobs": finished,
                "results": host_rows(rt, finished, set(finished)),
            }
        try:
            body = (
                preview(rt, t, verb, chosen)
                if check_mode
                else change(rt, t, chosen, approver, float(params["timeout"]))
            )
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
            log.info("remotehands_power failed: %s", exc)
            failure = {"msg": str(exc), "changed": False}
        except TaskFailed as exc:
            failure = {"changed": False, **exc.extra, "msg": exc.msg}
        except Exception as exc:
            log.exception("remotehands_power: internal error")
            failure = {
                "msg": f"internal error ({type(exc).__name__}: {exc}); the traceback is in remotehands' log file",
                "changed": False,
            }
    if failure is not None:
        module.fail_json(**redaction.redact_data(failure))
    module.exit_json(**redaction.redact_data(result))


if __name__ == "__main__":
    main()
