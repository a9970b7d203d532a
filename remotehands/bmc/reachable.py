"""Macs on PDU outlets: an outlet reading "on" does not prove the Mac booted, so a power job waits until the
Mac answers on its SSH port with an SSH banner."""

from __future__ import annotations

import socket
import time
from datetime import timedelta

from remotehands.errors import VerificationFailed
from remotehands.jobs.steps import Done, Step, StepContext, Wait
from remotehands.jobs.store import now

BOOT_TIMEOUT_S = 900.0  # a Mac takes one to three minutes to boot; an update may add several


def ssh_banner(address: str, port: int, timeout: float = 2.0) -> str | None:
    """The SSH server's banner at ``address:port``, or None when nothing (or not SSH) answers."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            line = conn.recv(256).split(b"\r\n", 1)[0]
    except OSError:
        return None
    return line.decode(errors="replace") if line.startswith(b"SSH-") else None


class WaitReachable(Step):
    """A Mac on a PDU outlet: the outlet reading "on" does not prove the Mac booted, so wait until its
    SSH port answers with an SSH banner. Other hosts are confirmed by their BMC's power state alone."""

    name = "wait-reachable"
    description = "wait until the host answers on its SSH port (Macs)"
    idempotent = True

    def run(self, ctx: StepContext) -> Done | Wait:
        host = ctx.host()
        if not host.kind.startswith("mac"):
            return Done("not needed for this host", quiet=True)
        if ctx.data.get("sent") is None:  # already on, or a technician did it (manual steps send nothing)
            return Done("nothing was switched", quiet=True)
        banner = ssh_banner(host.mgmt_address, host.ssh_port)
        polls = int(ctx.data.get("ssh_polls", 0)) + 1
        ctx.data["ssh_polls"] = polls
        started = float(ctx.data.get("sent_at") or time.time())
        if banner is not None:
            return Done(
                f"{host.name} is back: SSH answers on {host.mgmt_address}:{host.ssh_port} "
                f"{time.time() - started:.1f}s after power on"
            )
        limit = float(ctx.params.get("boot_timeout", BOOT_TIMEOUT_S))
        if time.time() - started > limit:
            raise VerificationFailed(
                f"{host.name} has power but did not answer on {host.mgmt_address}:{host.ssh_port} within {limit:.0f}s",
                fix="look at the Mac's screen (KVM or a technician): it may be stuck at boot or in recoveryOS",
            )
        delay = min(0.25 * 2 ** min(polls, 5), 10.0)
        return Wait(now() + timedelta(seconds=delay), f"waiting for {host.name} to answer on SSH")
