"""The lab process and the API that starts, finds and stops it.

``python -m remotehands.lab.process --dir DIR --hosts N [--redfish R] [--macs M] [--cycle-delay S]
[--mac-models apple-silicon,t2] [--time-scale X]`` runs the
simulated site of ``remotehands.lab.site`` on 127.0.0.1: N IPMI BMCs (esx-NN), R servers behind a Redfish
service (rf-NN) and M Macs on a switched PDU's outlets (mac-NN). Once every device answers it writes an
Ansible inventory to ``DIR/inventory/`` and then ``DIR/lab.json`` (the signal that the lab is up). SIGTERM
or SIGINT stops it, removes ``DIR/lab.json`` and exits 0. Every command a device executes is a line in
``DIR/bmc-log.jsonl``.

Tests and the CLI use ``start_lab``, ``read_lab``, ``stop_lab``, ``read_bmc_log`` and ``read_outlet_log``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from remotehands import redaction
from remotehands.errors import ActionFailed, BadInput

log = logging.getLogger("remotehands.lab.process")  # not __main__ when run with -m

ADDRESS = "127.0.0.1"
USERNAME = "admin"
MAX_HOSTS = 500  # pyghmi select()s on every socket of the process: stay well under 1,024
SITE = "lab1"
RACK = "r1"
SUBSCRIPTIONS = {"acme-0001": "acme", "globex-0001": "globex"}
PROCESS_MARKER = b"remotehands.lab.process"

# Lab processes this interpreter started and has not reaped yet (so a stopped lab leaves no zombie).
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class LabHost:
    """Where one simulated server's BMC listens."""

    address: str
    port: int
    kind: str
    ssh_port: int = 0  # its OS's SSH port (0: this server has no simulated OS)
    boot_mac: str = ""


@dataclass(frozen=True)
class LabOutlet:
    """Where one simulated Mac's power comes from (an outlet of a simulated PDU), its SSH port, and what it is."""

    pdu: str
    outlet: int
    address: str
    port: int
    ssh_port: int = 0
    serial: str = ""
    model: str = ""  # apple-silicon, t2 or intel-legacy


@dataclass(frozen=True)
class LabInfo:
    """A running lab, as ``DIR/lab.json`` describes it."""

    pid: int
    state_dir: Path
    inventory_dir: Path
    log_path: Path
    password_file: Path
    hosts: Mapping[str, LabHost]  # IPMI servers
    redfish_hosts: Mapping[str, LabHost] = field(default_factory=dict)  # port: the Redfish service
    macs: Mapping[str, LabOutlet] = field(default_factory=dict)
    redfish_ca: Path | None = None
    known_hosts: Path | None = None  # the simulated hosts' current SSH host keys (OpenSSH format)
    mdm_url: str | None = None  # the lab's NanoMDM-style server
    mdm_key_file: Path | None = None  # its API key
    install_dir: Path | None = None  # what installers read (set [reimage] install_config_dir to it)
    controllers: Mapping[str, LabOutlet] = field(default_factory=dict)  # controller Macs for DFU restores

    def password(self) -> str:
        """The BMC password every simulated BMC of this lab accepts for user ``admin``."""
        return self.password_file.read_text().strip()


def start_lab(
    state_dir: Path,
    hosts: int = 4,
    cycle_delay: float = 1.0,
    timeout: float = 20.0,
    *,
    redfish: int = 2,
    macs: int = 2,
    mac_models: Sequence[str] | None = None,
    time_scale: float | None = None,
) -> LabInfo:
    """Start a lab process for ``state_dir`` and return once every BMC answers.

    ``mac_models``: the Macs' models in turn (default ``site.DEFAULT_MAC_MODELS``); ``time_scale``: real
    seconds per simulated second on the Macs (default ``ssh_host.DEFAULT_TIME_SCALE``).

    Raises ``BadInput`` when a lab already runs there or ``hosts`` is out of range, and ``ActionFailed``
    (with the end of ``DIR/lab.out``) when the process exits early or is not ready within ``timeout``.
    """
    if not 1 <= hosts <= MAX_HOSTS:
        raise BadInput(
            f"a lab has 1 to {MAX_HOSTS} hosts, not {hosts}", fix=f"ask for at most {MAX_HOSTS} hosts"
        )
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    running = read_lab(state_dir)
    if running is not None:
        raise BadInput(
            f"a lab already runs in {state_dir} (pid {running.pid})",
            fix="stop it first (remotehands lab down, or stop_lab) or use another directory",
        )
    (state_dir / "lab.json").unlink(missing_ok=True)
    out_path = state_dir / "lab.out"
    command = [
        sys.executable,
        "-m",
        "remotehands.lab.process",
        "--dir",
        str(state_dir),
        "--hosts",
        str(hosts),
    ]
    command += ["--cycle-delay", str(cycle_delay), "--redfish", str(redfish), "--macs", str(macs)]
    if mac_models:
        command += ["--mac-models", ",".join(mac_models)]
    if time_scale is not None:
        command += ["--time-scale", str(time_scale)]
    with out_path.open("wb") as out:
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    _children[proc.pid] = proc
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = proc.poll()
        if status is not None:
            _children.pop(proc.pid, None)
            raise ActionFailed(
                f"the lab process exited with status {status} before it was ready; end of {out_path}:\n"
                + _tail(out_path),
                fix=f"read {state_dir / 'lab.log'} for the cause",
            )
        info = read_lab(state_dir)
        if info is not None and info.pid == proc.pid:
            return info
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    _children.pop(proc.pid, None)
    raise ActionFailed(
        f"the lab process was not ready within {timeout:g}s and was killed; end of {out_path}:\n"
        + _tail(out_path),
        fix="retry with a longer timeout or fewer hosts, and read lab.log in the same directory",
    )


def read_lab(state_dir: Path) -> LabInfo | None:
    """The lab running for ``state_dir``, or None when there is no ``lab.json`` or its process is gone."""
    state_dir = state_dir.resolve()
    try:
        raw = json.loads((state_dir / "lab.json").read_text())
    except (OSError, ValueError):
        return None
    pid = int(raw["pid"])
    if not _alive(pid):
        return None
    return LabInfo(
        pid=pid,
        state_dir=state_dir,
        inventory_dir=state_dir / "inventory",
        log_path=Path(raw["log"]),
        password_file=state_dir / "secrets" / "bmc_password",
        hosts={name: _host(h) for name, h in raw["hosts"].items()},
        redfish_hosts={name: _host(h) for name, h in raw.get("redfish", {}).items()},
        macs={name: _outlet(m) for name, m in raw.get("macs", {}).items()},
        controllers={name: _outlet(m) for name, m in raw.get("controllers", {}).items()},
        install_dir=Path(raw["install_dir"]) if raw.get("install_dir") else None,
        redfish_ca=Path(raw["redfish_ca"]) if raw.get("redfish_ca") else None,
        known_hosts=Path(raw["known_hosts"]) if raw.get("known_hosts") else None,
        mdm_url=raw.get("mdm", {}).get("url"),
        mdm_key_file=Path(raw["mdm"]["key_file"]) if raw.get("mdm") else None,
    )


def _host(h: dict[str, Any]) -> LabHost:
    return LabHost(h["address"], int(h["port"]), h["kind"], int(h.get("ssh_port", 0)), h.get("boot_mac", ""))


def _outlet(m: dict[str, Any]) -> LabOutlet:
    return LabOutlet(
        m["pdu"],
        int(m["outlet"]),
        m["address"],
        int(m["port"]),
        int(m.get("ssh_port", 0)),
        m.get("serial", ""),
        m.get("model", ""),
    )


def stop_lab(state_dir: Path, timeout: float = 10) -> bool:
    """Stop the lab of ``state_dir`` (SIGTERM, then SIGKILL after ``timeout`` s); False when none was running.

    A stale ``lab.json`` (its process is gone) is removed either way.
    """
    state_dir = state_dir.resolve()
    info = read_lab(state_dir)
    if info is None:
        (state_dir / "lab.json").unlink(missing_ok=True)
        return False
    if not _signal_and_wait(info.pid, signal.SIGTERM, timeout):
        log.warning("lab process %d ignored SIGTERM for %gs; killing it", info.pid, timeout)
        _signal_and_wait(info.pid, signal.SIGKILL, 5.0)
    _children.pop(info.pid, None)
    (state_dir / "lab.json").unlink(missing_ok=True)
    return True


def read_bmc_log(log_path: Path, host: str | None = None, command: str | None = None) -> list[dict[str, Any]]:
    """The lines of a lab's BMC command log, optionally only those of ``host`` and/or ``command``."""
    try:
        text = log_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    entries = []
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            break  # a line being written right now
        entry = json.loads(line)
        if (host is None or entry.get("bmc") == host) and (
            command is None or entry.get("command") == command
        ):
            entries.append(entry)
    return entries


def _signal_and_wait(pid: int, sig: signal.Signals, timeout: float) -> bool:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None  # also reaps it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        # A recycled pid must not pass for the lab (stop_lab would signal a stranger).
        if PROCESS_MARKER not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return False
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        return True


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) or "(empty)"
    except OSError:
        return "(missing)"


def read_outlet_log(log_path: Path, outlet: LabOutlet, command: str | None = None) -> list[dict[str, Any]]:
    """Lines of the command log for one PDU outlet (``outlet_on``, ``outlet_off``, ``outlet_reboot``)."""
    return [
        e
        for e in read_bmc_log(log_path, host=outlet.pdu, command=command)
        if e.get("outlet") == outlet.outlet
    ]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry of the lab process."""
    parser = argparse.ArgumentParser(
        prog="python -m remotehands.lab.process", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--dir", type=Path, required=True, help="state directory of the lab")
    parser.add_argument("--hosts", type=int, default=4, help=f"number of simulated servers (1-{MAX_HOSTS})")
    parser.add_argument(
        "--cycle-delay", type=float, default=1.0, help="seconds a power cycle keeps a host off"
    )
    parser.add_argument("--redfish", type=int, default=2, help="simulated servers behind a Redfish service")
    parser.add_argument("--macs", type=int, default=2, help="simulated Macs on switched PDU outlets")
    parser.add_argument(
        "--mac-models", default="", help="the Macs' models in turn, e.g. apple-silicon,t2,intel-legacy"
    )
    parser.add_argument("--time-scale", type=float, default=None, help="real seconds per simulated second")
    args = parser.parse_args(argv)
    if not 1 <= args.hosts <= MAX_HOSTS:
        parser.error(f"--hosts must be 1 to {MAX_HOSTS}")
    state_dir: Path = args.dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        filename=state_dir / "lab.log",
        level=logging.INFO,
        format="%(asctime)s %(process)d %(threadName)s %(levelname)s %(name)s: %(message)s",
    )
    redaction.install_record_factory()
    from remotehands.lab.site import DEFAULT_MAC_MODELS, run_lab

    models = [m for m in args.mac_models.split(",") if m] or list(DEFAULT_MAC_MODELS)
    try:
        return run_lab(
            state_dir,
            args.hosts,
            args.cycle_delay,
            redfish=args.redfish,
            macs=args.macs,
            mac_models=models,
            time_scale=args.time_scale,
        )
    except Exception as exc:
        log.exception("the lab failed")
        print(f"lab failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
