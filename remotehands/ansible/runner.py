"""One ansible-playbook run through ansible-runner (``run_async``), with its events handed to a callback,
a cancel check and a time limit, and nothing secret left behind.

The run happens in a private data directory (mode 0700, removed afterwards): ansible-runner writes the extra
variables, the environment and every event there, and a secret extra variable would sit in those files in
clear. What leaves the run is what the callback chose to keep and the redacted stdout. SSH host keys are
checked against a known_hosts file made from remotehands' pins (``StrictHostKeyChecking=yes``); the run never
accepts a key it was not given.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from remotehands import redaction
from remotehands.errors import ConfigError, InternalError

log = logging.getLogger(__name__)

# ansible-runner asks the cancel callback on every pass of its loop; the job row is read at most this often.
CANCEL_POLL_S = 1.0
STATS = ("ok", "changed", "failures", "dark", "skipped")


@dataclass
class PlaybookResult:
    status: str  # successful | failed | canceled | timeout
    rc: int
    stats: dict[str, dict[str, int]] = field(default_factory=dict)  # host -> ok/changed/failures/dark/skipped
    stdout: str = ""  # redacted

    def recap(self) -> str:
        """``mac-01: ok=3 changed=1 unreachable=0 failed=0 skipped=1`` per host, ``; `` between."""
        lines = []
        for host, counts in sorted(self.stats.items()):
            lines.append(
                f"{host}: ok={counts.get('ok', 0)} changed={counts.get('changed', 0)} "
                f"unreachable={counts.get('dark', 0)} failed={counts.get('failures', 0)} "
                f"skipped={counts.get('skipped', 0)}"
            )
        return "; ".join(lines) or "no hosts matched"


def playbook_path(directory: Path, name: str) -> Path:
    """The playbook ``name`` (``macos_update`` or ``macos_update.yml``) in ``directory``; ``ConfigError``
    for a name outside it or one that does not exist, listing what is there."""
    file = name if name.endswith((".yml", ".yaml")) else f"{name}.yml"
    path = (directory / file).resolve()
    if path.parent != directory.resolve() or not path.is_file():
        known = sorted(p.stem for p in directory.glob("*.yml")) if directory.is_dir() else []
        raise ConfigError(
            f"no playbook {name!r} in {directory}",
            fix="playbooks: " + (", ".join(known) or "none (set 'playbooks' in remotehands.toml)"),
        )
    return path


def run_playbook(
    playbook: Path,
    inventory: Path,
    *,
    limit: str,
    known_hosts: str,
    extravars: dict[str, Any] | None = None,
    check: bool = False,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    timeout_s: int | None = None,
) -> PlaybookResult:
    """Run ``playbook`` against ``inventory`` limited to ``limit``; ``check`` adds ``--check --diff``.

    ``known_hosts`` holds the OpenSSH lines of the pinned host keys. ``on_event`` gets each ansible-runner
    event (already redacted); ``cancelled`` is asked about once a second and stops the run when true;
    ``timeout_s`` ends it with status ``timeout``. Raises ``InternalError`` when ansible-runner cannot start."""
    import ansible_runner

    private = Path(tempfile.mkdtemp(prefix="rh-playbook-"))
    os.chmod(private, 0o700)
    try:
        (private / "known_hosts").write_text(known_hosts)
        ssh_args = (
            f"-o UserKnownHostsFile={private / 'known_hosts'} -o StrictHostKeyChecking=yes "
            "-o ControlMaster=auto -o ControlPersist=10s"
        )
        last_look, stop = [0.0], [False]

        def cancel_callback() -> bool:
            if cancelled is not None and not stop[0] and time.monotonic() - last_look[0] >= CANCEL_POLL_S:
                last_look[0] = time.monotonic()
                stop[0] = cancelled()
            return stop[0]

        def event_handler(event: dict[str, Any]) -> bool:
            if on_event is not None:
                on_event(_redacted(event))
            return True

        settings: dict[str, Any] = {"suppress_ansible_output": True}
        if timeout_s is not None:
            settings["job_timeout"] = max(1, int(timeout_s))
        thread, runner = ansible_runner.run_async(
            private_data_dir=str(private),
            playbook=str(playbook),
            inventory=str(inventory),
            limit=limit,
            extravars=extravars or {},
            cmdline="--check --diff" if check else None,
            envvars={
                # the ansible-playbook next to this interpreter (a virtualenv's bin is often not on PATH)
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                "ANSIBLE_SSH_ARGS": ssh_args,
                # ansible-runner turns host key checking off unless told otherwise
                "ANSIBLE_HOST_KEY_CHECKING": "True",
                "ANSIBLE_SSH_CONTROL_PATH_DIR": str(private / "cp"),
                "ANSIBLE_LOCAL_TEMP": str(private / "tmp"),
                "ANSIBLE_PIPELINING": "True",
                "ANSIBLE_NOCOLOR": "1",
            },
            suppress_env_files=True,  # extra vars (secrets among them) are not written to disk
            settings=settings,
            event_handler=event_handler,
            cancel_callback=cancel_callback,
            quiet=True,
        )
        thread.join()
        stdout = ""
        try:
            stdout = runner.stdout.read()
        except (OSError, ValueError, AttributeError):
            stdout = ""
        stats = {
            host: {name: int((runner.stats or {}).get(name, {}).get(host, 0)) for name in STATS}
            for host in set().union(*((runner.stats or {}).get(n, {}) for n in STATS))
        }
        return PlaybookResult(str(runner.status), int(runner.rc or 0), stats, redaction.redact(stdout))
    except (OSError, RuntimeError, ValueError) as exc:
        raise InternalError(
            f"ansible-runner could not run {playbook.name}: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _redacted(event: dict[str, Any]) -> dict[str, Any]:
    """The parts of an event a caller may keep, every string redacted."""
    data = event.get("event_data") or {}
    found = data.get("res")
    res: dict[str, Any] = found if isinstance(found, dict) else {}
    return {
        "event": event.get("event", ""),
        "play": redaction.redact(str(data.get("play", ""))),
        "task": redaction.redact(str(data.get("task", ""))),
        "host": str(data.get("host", "")),
        # a no_log task's result is censored to one key; its display line still says "changed: [host]"
        "changed": bool(res.get("changed")) or str(event.get("stdout", "")).lstrip().startswith("changed"),
        "msg": redaction.redact(str(res.get("msg", ""))[:300]) if res else "",
    }
