"""Faults of the lab's simulated hosts and BMCs, set from outside the lab process: ``set_lab_fault`` writes
``DIR/faults.json``, the lab process's ``FaultFile`` applies what changed and acknowledges in
``DIR/faults.applied``."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from remotehands.errors import ActionFailed
from remotehands.lab.netdev_model import NET_FAULTS


def set_lab_fault(state_dir: Path, host: str, fault: str, enabled: bool = True, timeout: float = 5.0) -> None:
    """Turn a fault of a simulated host on or off in the running lab of ``state_dir``; returns once the lab
    applied it. Faults of the host's OS (``ssh_host.FAULTS``): wrong_serial, install_never_finishes,
    installer_missing, os_broken; of a Redfish server's BMC: boot_override_busy (its next two boot-override
    PATCHes answer 400 UnableToModifyDuringSystemPOST, as a BMC whose host is in POST), eject_needs_off (its
    virtual CD is ejected only while the host is off); of a firewall (``netdev_model``): reject_second_line,
    drop_after_first_line, no_return_after_commit (each fires once); of a storage array (``arrays``):
    resize_error (the next resize fails, nothing changes), error_after_resize (the next resize happens but
    fails, and the LUN cannot be read until the fault is cleared); of a host's SAN view: san_rescan_fails."""
    path = state_dir / "faults.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {"seq": 0, "faults": {}}
    faults = set(data["faults"].get(host, []))
    faults = faults | {fault} if enabled else faults - {fault}
    data["faults"][host] = sorted(faults)
    data["seq"] = int(data["seq"]) + 1
    tmp = path.with_name(f".faults.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            if int((state_dir / "faults.applied").read_text()) >= data["seq"]:
                return
        time.sleep(0.02)
    raise ActionFailed(
        f"the lab in {state_dir} did not apply the fault within {timeout:g}s", fix="is it running?"
    )


BOOT_OVERRIDE_BUSY = "boot_override_busy"
EJECT_NEEDS_OFF = "eject_needs_off"
BUSY_PATCHES = 2


class FaultFile:
    """Faults of the simulated hosts set from outside the lab process (``process.set_lab_fault``): the lab
    applies ``DIR/faults.json`` (``{"seq": N, "faults": {host: [fault, ...]}}``) when it changes and then
    writes N to ``DIR/faults.applied``."""

    def __init__(
        self,
        state_dir: Path,
        ssh_hosts: Any,
        systems: dict[str, Any],
        firewalls: Any = None,
        arrays: Any = None,
    ) -> None:
        self.path, self.applied = state_dir / "faults.json", state_dir / "faults.applied"
        self.ssh_hosts = ssh_hosts
        self.systems = systems  # Redfish systems, for BMC faults
        self.firewalls = firewalls  # netdev_sim.NetDevServer, for the firewalls' faults (netdev_model)
        self.arrays = arrays  # arrays.LabArrays, for the storage arrays' faults
        self.seq = -1
        self.last: dict[str, set[str]] = {}

    def apply(self) -> None:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        if data.get("seq") == self.seq:
            return
        self.seq = data.get("seq")
        # Only what changed since the last file: a fault the lab cleared itself (an install ends os_broken)
        # stays cleared when another host's fault is set.
        faults = {host: set(names) for host, names in data.get("faults", {}).items()}
        for host in set(faults) | set(self.last):
            for fault in faults.get(host, set()) ^ self.last.get(host, set()):
                enabled = fault in faults.get(host, set())
                if fault == BOOT_OVERRIDE_BUSY and host in self.systems:
                    # The BMC is in POST: the next boot-override PATCHes answer 400 (HPE iLO does).
                    self.systems[host].configure(post_busy_patches=BUSY_PATCHES if enabled else 0)
                elif fault == EJECT_NEEDS_OFF and host in self.systems:
                    self.systems[host].configure(eject_needs_off=enabled)
                elif fault in NET_FAULTS and self.firewalls is not None:
                    self.firewalls.set_fault(host, fault, enabled)
                elif self.arrays is not None and host in self.arrays.sims:
                    self.arrays.set_fault(host, fault, enabled)
                else:
                    self.ssh_hosts.set_fault(host, fault, enabled)
        self.last = faults
        _write_atomic(self.applied, f"{self.seq}\n")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
