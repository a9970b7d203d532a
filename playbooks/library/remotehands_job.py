#!/usr/bin/python
"""Ansible module ``remotehands_job``: run any remotehands action a ticket asks for, as that ticket's
journaled jobs, and wait for them (the path of ``remotehands run --ticket``, narrowed to some targets).

It runs on the controller, in a python that has remotehands installed.
"""

from __future__ import annotations

import sys
from typing import Any

from ansible.module_utils.basic import AnsibleModule  # type: ignore[import-untyped]

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


def main() -> None:
    """Entry point: runs the task and answers Ansible; never a traceback, secrets redacted."""
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        from remotehands.ansible.modules import answer, job_task
    except ImportError as exc:
        module.fail_json(
            msg=f"remotehands cannot be imported by {sys.executable} ({exc}). Fix: set "
            "ansible_python_interpreter to the python of the environment remotehands is installed in"
        )
        return
    failed, result = answer("remotehands_job", job_task, module.params, module.check_mode)
    if failed:
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
