"""Steps every reimage method shares: the identity guard before anything destructive, and the wait for the
new OS and its verification after."""

from __future__ import annotations

import time
from datetime import timedelta

from remotehands.bmc.base import PowerAction, perform_and_confirm
from remotehands.bmc.reachable import ssh_banner
from remotehands.errors import DeviceUnreachable, NeedsOperator, VerificationFailed
from remotehands.jobs.steps import Done, Step, StepContext, Wait
from remotehands.jobs.store import now
from remotehands.reimage import os_facts
from remotehands.reimage.access import image_of, ssh_to
from remotehands.reimage.methods import MACS
from remotehands.ssh import keys


class CheckIdentity(Step):
    """The serial over SSH must be the inventory's. With ``dark_ok`` (methods that reinstall a host whose OS
    is down) a host whose SSH does not answer is identified another way: a Mac on a PDU outlet by switching
    the outlet off and seeing the host stay silent; a server by its BMC, which the inventory names."""

    name = "check-identity"
    description = (
        "read the serial number over SSH and compare it with the inventory's (nothing erased before)"
    )
    idempotent = True

    def __init__(self, *, dark_ok: bool = False) -> None:
        self.dark_ok = dark_ok
        if dark_ok:
            self.description += "; a host whose OS is down: by its outlet or its BMC"
            self.changes_equipment = True  # may switch an outlet off

    def run(self, ctx: StepContext) -> Done | Wait:
        host = ctx.host()
        image_of(ctx)  # an unknown image is refused before anything else
        pinned = keys.pinned(ctx.runtime.db, host.name, host.ssh_host_key)
        ctx.data["old_key"] = pinned.fingerprint if pinned else None
        try:
            with ssh_to(ctx) as ssh:
                seen = os_facts.serial(ssh, host)
                before = os_facts.build(ssh, host)
        except DeviceUnreachable as exc:
            if not self.dark_ok:
                raise
            return _identify_dark(ctx, exc)
        if seen != host.serial_number:
            raise NeedsOperator(
                f"{host.name} reports serial {seen} but the inventory says {host.serial_number}; nothing was "
                "erased",
                fix="find out which machine answers at this address (cabling, DHCP, inventory), fix it, "
                "then retry or cancel the job",
            )
        ctx.data["build_before"] = before
        return Done(f"{host.name} is serial {seen}, as the inventory says; it runs build {before}")


DARK_LOOKS = 3  # SSH must fail this many times, over at least DARK_SPREAD_S, before a dark host is handled
DARK_SPREAD_S = 20.0
DARK_CHECKS = 3  # SSH probes, DARK_PROBE_S apart, that must all fail with the outlet off
DARK_PROBE_S = 0.5


def _identify_dark(ctx: StepContext, exc: DeviceUnreachable) -> Done | Wait:
    host = ctx.host()
    # One failed login is not a dead OS (a reboot, a blip): look again before switching anything off.
    looks = int(ctx.data.get("dark_looks", 0)) + 1
    first = float(ctx.data.setdefault("dark_since", time.time()))
    ctx.data["dark_looks"] = looks
    spread = float(ctx.params.get("dark_confirm_s", DARK_SPREAD_S))
    if looks < DARK_LOOKS or time.time() - first < spread:
        return Wait(
            now() + timedelta(seconds=max(spread / (DARK_LOOKS - 1), 0.1)),
            f"{host.name} does not answer SSH ({exc.message}); looking again before going on",
        )
    profile = host.power
    if profile.type in ("ipmi", "redfish"):
        return Done(
            f"{host.name} has not answered SSH for {time.time() - first:.0f}s ({exc.message}); its OS is taken "
            f"as down and the machine as the one behind its {profile.type} BMC at {profile.address}, which the "
            f"inventory names for serial {host.serial_number}"
        )
    if profile.type != "pdu-outlet":
        raise NeedsOperator(
            f"{host.name} does not answer SSH and has no outlet or BMC to identify it by; nothing was erased",
            fix="have a technician check the serial on the machine, then retry or cancel the job",
        )
    driver = ctx.runtime.power_driver(host, profile)  # checks the PDU's name for the outlet before acting
    try:
        perform_and_confirm(driver, PowerAction.OFF, timeout=30.0)
        for _ in range(DARK_CHECKS):
            time.sleep(DARK_PROBE_S)
            if ssh_banner(host.mgmt_address, host.ssh_port, timeout=1.0) is not None:
                perform_and_confirm(driver, PowerAction.ON, timeout=30.0)
                raise NeedsOperator(
                    f"with {host.name}'s outlet {profile.pdu}/{profile.outlet} off, {host.mgmt_address}:"
                    f"{host.ssh_port} answers SSH: the machine at that address is not on that outlet. The outlet "
                    "was switched on again at once; nothing was erased",
                    fix="find which outlet powers the Mac and which Mac has this address, and what else is on "
                    "that outlet; fix the inventory, then retry or cancel the job",
                )
    finally:
        driver.close()
    ctx.data["identified_by_outlet"] = True
    return Done(
        f"{host.name} has not answered SSH for {time.time() - first:.0f}s ({exc.message}); its outlet "
        f"{profile.pdu}/{profile.outlet}, which the PDU names {profile.outlet_name or '(unnamed)'}, was "
        f"switched off and nothing answers at {host.mgmt_address}:{host.ssh_port}; left off for now"
    )


POLL_CAP_S = 5.0  # a dark host is polled at most this far apart (a TCP connect each)


def window_passed(ctx: StepContext, key: str, limit: float, start: float) -> float | None:
    """How long a wait has run past ``limit`` seconds since ``start`` (kept in ``ctx.data[key]``), or None
    while it has not. When it has, the step stops for an operator; ``jobs retry`` then gives it a new
    window from the retry on (the flag set here is kept with the job's data)."""
    if ctx.data.pop(f"{key}_expired", False):
        ctx.data[key] = time.time()
    started = float(ctx.data.setdefault(key, start))
    waited = time.time() - started
    if waited <= limit:
        return None
    ctx.data[f"{key}_expired"] = True
    return waited


def poll_delay(ctx: StepContext, polls: int, *, cap: float | None = None) -> float:
    """Seconds before the ``polls``-th look of a wait: 0.25 s doubling, up to ``[reimage] poll_max_seconds``
    (and ``cap``)."""
    most = float(ctx.runtime.settings.reimage.poll_max_seconds)
    return min(0.25 * float(2 ** min(polls, 8)), most if cap is None else min(cap, most))


class WaitForNewOs(Step):
    """Wait until the host answers SSH with a new host key (its OS was reinstalled), pin that key for it."""

    name = "wait-new-os"
    description = "wait (up to the install deadline) for the host to answer SSH with its new OS, pin its key"
    idempotent = True

    def run(self, ctx: StepContext) -> Done | Wait:
        host = ctx.host()
        started = float(ctx.data.get("install_started_at") or time.time())
        limit = float(
            ctx.params.get("install_timeout", ctx.runtime.settings.reimage.install_deadline_minutes * 60)
        )

        try:
            if ssh_banner(host.mgmt_address, host.ssh_port, timeout=2.0) is None:
                # Dark (installing): a TCP connect says so without an SSH handshake, which costs both sides.
                raise DeviceUnreachable(f"{host.name} does not answer on SSH")
            # Taking a new key refuses the old OS's (it is still up, the install has not begun): see ssh_to.
            with ssh_to(ctx, take_new_key=ctx.data.get("pinned_key") is None) as ssh:
                ctx.data["build_after"] = os_facts.build(ssh, host)
        except DeviceUnreachable as exc:
            if window_passed(ctx, "os_wait_from", limit, started) is not None:
                raise NeedsOperator(
                    f"{host.name} did not come back with a new OS within {limit / 60:.0f} min ({exc.message}); "
                    "it may still be installing, stuck in the installer or at Setup Assistant",
                    fix="look at the host's screen (KVM or a technician); if it is still installing, "
                    f"'remotehands jobs retry {ctx.job_id}' waits {limit / 60:.0f} min more, else cancel the job",
                ) from None
            polls = int(ctx.data.get("os_polls", 0)) + 1
            ctx.data["os_polls"] = polls
            delay = poll_delay(ctx, polls, cap=POLL_CAP_S)
            return Wait(now() + timedelta(seconds=delay), f"installing: waiting for {host.name} to come back")
        return Done(
            f"{host.name} is back {time.time() - started:.0f}s after the install began, running build "
            f"{ctx.data['build_after']}"
        )


class VerifyInstall(Step):
    name = "verify"
    description = "the OS build is the image's, the serial is unchanged, Macs restart after a power failure"
    idempotent = True

    def run(self, ctx: StepContext) -> Done:
        host = ctx.host()
        if ctx.params.get("image"):
            _, image = image_of(ctx)
            wanted, what = image.build, f"{image.os} {image.version} ({image.build})"
        else:  # an erase that keeps the OS (mdm-erase): the build it had
            wanted = str(ctx.data.get("build_before") or "")
            what = f"build {wanted or '?'}, as before the erase"
        with ssh_to(ctx) as ssh:
            seen_build = os_facts.build(ssh, host)
            seen_serial = os_facts.serial(ssh, host)
            notes = []
            if host.kind in MACS:
                if not os_facts.autorestart(ssh):
                    os_facts.set_autorestart(ssh)
                    notes.append("pmset autorestart was off: set to 1")
                else:
                    notes.append("pmset autorestart is 1")
        if wanted and seen_build != wanted:
            raise VerificationFailed(
                f"{host.name} runs build {seen_build}, not {wanted}",
                fix="the install may have used another installer; check the host, then retry or cancel",
            )
        if seen_serial != host.serial_number:
            raise NeedsOperator(
                f"after the install {host.name} reports serial {seen_serial}, not {host.serial_number}",
                fix="another machine answers at this address: check the cabling and the inventory",
            )
        return Done(f"{host.name} runs {what}; serial {seen_serial}; " + "; ".join(notes))


class PowerBackOn(Step):
    """After the identity check switched a dark Mac's outlet off, switch it on again (and read it back)."""

    name = "power-back-on"
    description = "switch the outlet back on if the identity check switched it off"
    idempotent = True
    changes_equipment = True

    def run(self, ctx: StepContext) -> Done:
        if not ctx.data.get("identified_by_outlet"):
            return Done("nothing was switched off", quiet=True)
        host = ctx.host()
        driver = ctx.runtime.power_driver(host, host.power)
        try:
            perform_and_confirm(driver, PowerAction.ON, timeout=30.0)
        finally:
            driver.close()
        return Done(f"{host.name}'s outlet is on again")
