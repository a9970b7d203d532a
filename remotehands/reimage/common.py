"""Steps every reimage method shares: the identity guard before anything destructive, and the wait for the
new OS and its verification after."""

from __future__ import annotations

import time
from datetime import timedelta

import paramiko

from remotehands.errors import DeviceUnreachable, NeedsOperator, VerificationFailed
from remotehands.jobs.steps import Done, Step, StepContext, Wait
from remotehands.jobs.store import now
from remotehands.reimage import os_facts
from remotehands.reimage.access import image_of, ssh_to
from remotehands.reimage.methods import MACS
from remotehands.ssh import keys


class CheckIdentity(Step):
    name = "check-identity"
    description = (
        "read the serial number over SSH and compare it with the inventory's (nothing erased before)"
    )
    idempotent = True

    def run(self, ctx: StepContext) -> Done:
        host = ctx.host()
        image_of(ctx)  # an unknown image is refused before anything else
        with ssh_to(ctx) as ssh:
            seen = os_facts.serial(ssh, host)
            before = os_facts.build(ssh, host)
        if seen != host.serial_number:
            raise NeedsOperator(
                f"{host.name} reports serial {seen} but the inventory says {host.serial_number}; nothing was "
                "erased",
                fix="find out which machine answers at this address (cabling, DHCP, inventory), fix it, "
                "then retry or cancel the job",
            )
        pinned = keys.pinned(ctx.runtime.db, host.name, host.ssh_host_key)
        ctx.data["build_before"] = before
        ctx.data["old_key"] = pinned.fingerprint if pinned else None
        return Done(f"{host.name} is serial {seen}, as the inventory says; it runs build {before}")


class StillOldOs(DeviceUnreachable):
    """The host answers with the host key of the OS that was to be erased: the install has not run yet."""


class WaitForNewOs(Step):
    """Wait until the host answers SSH with a new host key (its OS was reinstalled), pin that key for it."""

    name = "wait-new-os"
    description = "wait (up to the install deadline) for the host to answer SSH with its new OS, pin its key"
    idempotent = True

    def run(self, ctx: StepContext) -> Done | Wait:
        host = ctx.host()
        old = ctx.data.get("old_key")
        started = float(ctx.data.get("install_started_at") or time.time())
        limit = float(
            ctx.params.get("install_timeout", ctx.runtime.settings.reimage.install_deadline_minutes * 60)
        )

        def refuse_old(key: paramiko.PKey) -> None:
            if keys.fingerprint(key.asbytes()) == old:
                raise StillOldOs(f"{host.name} still presents the old OS's host key")

        try:
            if ctx.data.get("pinned_key") is None:
                # Probe first: a host still running the old OS must not get its old key re-pinned.
                probe = _probe_key(ctx)
                if probe is not None:
                    refuse_old(probe)
            with ssh_to(ctx, take_new_key=ctx.data.get("pinned_key") is None) as ssh:
                ctx.data["build_after"] = os_facts.build(ssh, host)
        except DeviceUnreachable as exc:
            waited = time.time() - started
            if waited > limit:
                raise VerificationFailed(
                    f"{host.name} did not come back with a new OS within {limit / 60:.0f} min of the install "
                    f"starting ({exc})",
                    fix="look at the host's screen (KVM or a technician): the installer may be stuck; "
                    "then retry or cancel the job",
                ) from None
            polls = int(ctx.data.get("os_polls", 0)) + 1
            ctx.data["os_polls"] = polls
            delay = min(0.5 * 2 ** min(polls, 6), 30.0)
            return Wait(now() + timedelta(seconds=delay), f"installing: waiting for {host.name} to come back")
        return Done(
            f"{host.name} is back {time.time() - started:.0f}s after the install began, running build "
            f"{ctx.data['build_after']}"
        )


def _probe_key(ctx: StepContext) -> paramiko.PKey | None:
    """The host key the host presents now (no login), or None when it does not answer."""
    host = ctx.host()
    try:
        transport = paramiko.Transport((host.mgmt_address, host.ssh_port))
    except (OSError, paramiko.SSHException):
        raise DeviceUnreachable(f"{host.name} does not answer on SSH") from None
    try:
        transport.start_client(timeout=10)
        return transport.get_remote_server_key()
    except (OSError, paramiko.SSHException):
        raise DeviceUnreachable(f"{host.name} does not answer on SSH") from None
    finally:
        transport.close()


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
