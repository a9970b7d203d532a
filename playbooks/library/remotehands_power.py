#!/usr/bin/python
"""Ansible module ``remotehands_power``: power hosts on, off, or cycle them under an approved remotehands
ticket, through remotehands' own checks and journaled jobs (the path of ``remotehands power <state>
--ticket``), and wait for the jobs to end.

It runs on the controller, in a python that has remotehands installed; the hosts are inventory names of
remotehands, not hosts Ansible connects to.
"""

from __future__ import annotations

import sys
from typing import Any

from ansible.module_utils.basic import AnsibleModule  # type: ignore[import-untyped]

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

# The choices are remotehands.ansible.modules.POWER_ACTIONS: written out, the spec holds without remotehands.
ARGUMENT_SPEC: dict[str, Any] = {
    "hosts": {"type": "list", "elements": "str", "default": []},
    "state": {"type": "str", "required": True, "choices": ["on", "off", "cycle"]},
    "ticket": {"type": "str", "required": True},
    "config": {"type": "path"},
    "timeout": {"type": "float", "default": 900.0},
}


def main() -> None:
    """Entry point: runs the task and answers Ansible; never a traceback, secrets redacted."""
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        from remotehands.ansible.modules import answer, power_task
    except ImportError as exc:
        module.fail_json(
            msg=f"remotehands cannot be imported by {sys.executable} ({exc}). Fix: set "
            "ansible_python_interpreter to the python of the environment remotehands is installed in"
        )
        return
    failed, result = answer("remotehands_power", power_task, module.params, module.check_mode)
    if failed:
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
