"""``playbook.run``: a playbook from the ``playbooks`` directory on one host of a ticket (one job per host,
``--limit`` to it), its progress coalesced onto the ticket, cancel and the job's deadline honoured.

Params: ``playbook`` (a name in the playbooks directory), ``vars`` (extra variables), ``secret_vars`` (extra
variables given as credential references, resolved at run time and registered for redaction: the playbook
must mark the tasks that use them ``no_log``), ``check`` (``--check --diff``: report, change nothing).
Connection settings (user, key, interpreter) are the inventory's own ``ansible_*`` variables; the host key is
remotehands' pin for the host (``ssh_host_key`` or ``remotehands ssh pin``).

The playbooks are idempotent, so a worker that died mid-run simply runs the playbook again.
"""

from __future__ import annotations

from typing import Any

from remotehands import secrets
from remotehands.ansible.progress import Progress
from remotehands.ansible.runner import PlaybookResult, playbook_path, run_playbook
from remotehands.errors import DeviceRefused, DeviceUnreachable, InvalidRequest, JobCancelled
from remotehands.inventory.models import Host
from remotehands.jobs import actions, store
from remotehands.jobs.approval import CheckApproval
from remotehands.jobs.steps import Done, Step, StepContext
from remotehands.ssh import keys

DEADLINE_S = 4 * 3600  # a macOS update with its restart, an ESXi patch with maintenance mode


def check_params(params: dict[str, Any], host: Host) -> None:
    """Refused at intake: no playbook named, vars that are not a mapping, a secret var that is not a
    reference."""
    if not isinstance(params.get("playbook"), str) or not params["playbook"]:
        raise InvalidRequest("playbook is missing", fix="name a playbook of the playbooks directory")
    for key in ("vars", "secret_vars"):
        if not isinstance(params.get(key, {}), dict):
            raise InvalidRequest(f"{key} must be a mapping of variable names to values")
    for name, ref in dict(params.get("secret_vars", {})).items():
        if not secrets.is_reference(str(ref)):
            raise InvalidRequest(
                f"secret_vars.{name} is not a credential reference", fix=secrets.HOW_TO_REFERENCE
            )


def _known_hosts(ctx: StepContext, host: Host) -> str:
    pin = keys.pinned(ctx.runtime.db, host.name, host.ssh_host_key)
    if pin is None:
        raise DeviceRefused(
            f"no SSH host key is pinned for {host.name}",
            fix=f"put ssh_host_key in the inventory, or check it and run: remotehands ssh pin {host.name}",
        )
    where = host.mgmt_address if host.ssh_port == 22 else f"[{host.mgmt_address}]:{host.ssh_port}"
    return f"{where} {pin.key_type} {pin.key_base64}\n"


class PlaybookRun(Step):
    name = "playbook-run"
    description = "run the playbook on the host; progress to the ticket; stop on cancel or at the deadline"
    idempotent = True  # the shipped playbooks are idempotent: after a crash the run starts over
    changes_equipment = True
    long = True  # a run can take longer than a broker holds a message

    def run(self, ctx: StepContext) -> Done:
        """Raises ``ConfigError`` (no such playbook), ``SecretError``, ``DeviceRefused`` (a task failed, or
        no pinned key), ``DeviceUnreachable`` (the host did not answer; retried)."""
        settings = ctx.runtime.settings
        book = playbook_path(settings.playbooks, str(ctx.params.get("playbook", "")))
        host = ctx.host()
        extravars = dict(ctx.params.get("vars", {}))
        for name, ref in dict(ctx.params.get("secret_vars", {})).items():
            extravars[name] = secrets.resolve(str(ref), field=f"params.secret_vars.{name}")
        check = bool(ctx.params.get("check"))
        label = f"{book.name} on {host.name}" + (" (check mode)" if check else "")
        db = ctx.runtime.db

        def to_ticket(text: str) -> None:
            with db.session() as s:
                store.tell(s, store.get_job(s, ctx.job_id), text)

        def cancelled() -> bool:
            with db.session() as s:
                return bool(store.get_job(s, ctx.job_id).cancel_requested)

        with db.session() as s:
            left = (store.aware(store.get_job(s, ctx.job_id).deadline_at) - store.now()).total_seconds()
        progress = Progress(label, to_ticket)
        result = run_playbook(
            book,
            settings.inventory,
            limit=host.name,
            known_hosts=_known_hosts(ctx, host),
            extravars=extravars,
            check=check,
            on_event=progress.event,
            cancelled=cancelled,
            timeout_s=int(left),
        )
        progress.flush()
        ctx.attach(f"{book.stem}-{host.name}-stdout.txt", result.stdout.encode())
        return _outcome(label, result)


def _outcome(label: str, result: PlaybookResult) -> Done:
    recap = result.recap()
    if result.status == "successful":
        return Done(f"{label}: recap {recap}")
    if result.status == "canceled":
        raise JobCancelled(f"{label}: stopped on cancel; recap so far {recap}")
    if result.status == "timeout":
        raise DeviceRefused(f"{label}: the job's deadline ended the run; recap so far {recap}")
    if "Host key verification failed" in result.stdout or "IDENTIFICATION HAS CHANGED" in result.stdout:
        raise DeviceRefused(
            f"{label}: the host presented an SSH host key that is not the one pinned for it; nothing ran",
            fix="if the host was reinstalled, check its key at the console and pin it: remotehands ssh pin HOST",
        )
    if result.stats and all(c.get("dark", 0) for c in result.stats.values()):
        raise DeviceUnreachable(f"{label}: the host did not answer; recap {recap}")
    raise DeviceRefused(
        f"{label}: failed (exit {result.rc}); recap {recap}",
        fix="the failed task and its message are on the ticket and in the attached output",
    )


actions.register(
    actions.Action(
        "playbook.run",
        "run a playbook from the playbooks directory on each target host, progress on the ticket",
        lambda: [CheckApproval(), PlaybookRun()],
        DEADLINE_S,
        "playbook",
        check_params=check_params,
    )
)
