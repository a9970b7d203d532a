"""mdm-erase: erase a T2 or Apple silicon Mac through the MDM server (EraseDevice), with no SSH needed to
start it, then wait for the device to acknowledge, re-enroll and come back on SSH with a new host key.

Identity: the MDM server's record of the device (its serial) must match the inventory before the erase is
sent; when SSH answers, the OS's serial is checked as well. The command's UUID is derived from the job, so
re-sending it after a crash is the same command, which the server (and the device) take once.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from remotehands import secrets
from remotehands.errors import (
    DeviceRefused,
    DeviceUnreachable,
    InvalidRequest,
    NeedsOperator,
    VerificationFailed,
)
from remotehands.jobs.approval import CheckApproval
from remotehands.jobs.steps import Done, Reconciled, Step, StepContext, Verdict, Wait
from remotehands.jobs.store import now
from remotehands.mdm import CommandState, MdmClient
from remotehands.reimage import methods, os_facts
from remotehands.reimage.access import ssh_to
from remotehands.reimage.common import VerifyInstall, WaitForNewOs, poll_delay, window_passed
from remotehands.ssh import keys

NAMESPACE = uuid.UUID("6f1c1c52-6a1e-4c39-9a7b-7d0c6a0f1a11")


def _client(ctx: StepContext) -> MdmClient:
    settings = ctx.runtime.settings.reimage
    if not settings.mdm_url or not settings.mdm_key:
        raise InvalidRequest(
            "mdm-erase needs the MDM server",
            fix="set [reimage] mdm_url and mdm_key (a reference) in remotehands.toml",
        )
    return MdmClient(settings.mdm_url, secrets.resolve(settings.mdm_key, field="reimage.mdm_key"))


def _udid(ctx: StepContext) -> str:
    host = ctx.host()
    if not host.mdm_udid:
        raise InvalidRequest(f"{host.name} has no mdm_udid in the inventory", fix="add the device's MDM UDID")
    return host.mdm_udid


def _deadline(ctx: StepContext) -> float:
    return float(
        ctx.params.get("install_timeout", ctx.runtime.settings.reimage.install_deadline_minutes * 60)
    )


class CheckMdmIdentity(Step):
    name = "check-identity"
    description = "the MDM server's device record (and the OS, when SSH answers) has the inventory's serial"
    idempotent = True

    def run(self, ctx: StepContext) -> Done:
        host = ctx.host()
        udid = _udid(ctx)
        with _client(ctx) as mdm:
            device = mdm.device(udid)
        if not device.enrolled:
            raise DeviceRefused(
                f"{host.name} ({udid}) is not enrolled in MDM", fix="use erase-install or dfu-restore"
            )
        seen = [("MDM", device.serial)]
        try:
            with ssh_to(ctx) as ssh:
                seen.append(("the OS", os_facts.serial(ssh, host)))
                ctx.data["build_before"] = os_facts.build(ssh, host)
        except DeviceUnreachable:
            pass  # a Mac whose OS is broken: the MDM record is the identity we have
        wrong = [f"{where} reports {serial}" for where, serial in seen if serial != host.serial_number]
        if wrong:
            raise NeedsOperator(
                f"{host.name}: {'; '.join(wrong)}, the inventory says {host.serial_number}; nothing was erased",
                fix="check the inventory's serial and mdm_udid for this Mac, then retry or cancel",
            )
        pinned = keys.pinned(ctx.runtime.db, host.name, host.ssh_host_key)
        ctx.data["old_key"] = pinned.fingerprint if pinned else None
        return Done(f"{host.name} is serial {host.serial_number} per " + " and ".join(w for w, _ in seen))


class SendErase(Step):
    name = "send-erase"
    description = "enqueue EraseDevice for the Mac at the MDM server and push (exactly once)"
    idempotent = False

    def run(self, ctx: StepContext) -> Done:
        command = str(uuid.uuid5(NAMESPACE, f"job-{ctx.job_id}")).upper()
        with _client(ctx) as mdm:
            mdm.erase(_udid(ctx), command_uuid=command)
        ctx.data["command_uuid"] = command
        ctx.data["install_started_at"] = time.time()
        ctx.data["erase_sent_at"] = datetime.now(UTC).isoformat()
        return Done(f"EraseDevice {command} queued for {ctx.target} and pushed")

    def reconcile(self, ctx: StepContext, baseline: dict[str, Any]) -> Reconciled:
        # The same job always sends the same CommandUUID, and the server takes a UUID once: sending again
        # is safe whether or not the first attempt arrived.
        return Reconciled(
            Verdict.RETRY, "EraseDevice carries this job's own CommandUUID; re-sending it is idempotent"
        )


class WaitAcknowledged(Step):
    name = "wait-acknowledged"
    description = "wait for the Mac to acknowledge EraseDevice (NotNow: it retries by itself)"
    idempotent = True

    def run(self, ctx: StepContext) -> Done | Wait:
        with _client(ctx) as mdm:
            status = mdm.command_status(str(ctx.data["command_uuid"]))
        if status.state is CommandState.ACKNOWLEDGED:
            return Done(f"{ctx.target} acknowledged EraseDevice")
        if status.state is CommandState.ERROR:
            raise VerificationFailed(
                f"{ctx.target} refused EraseDevice: {status.error_text()}",
                fix="the Mac was not erased; try erase-install, or dfu-restore for a broken Apple silicon Mac",
            )
        return _wait_or_fail(
            ctx, f"waiting for {ctx.target} to answer EraseDevice ({status.state.value})", "ack_polls"
        )


class WaitReenrolled(Step):
    name = "wait-reenrolled"
    description = "wait for the erased Mac to enroll in MDM again"
    idempotent = True

    def run(self, ctx: StepContext) -> Done | Wait:
        since = datetime.fromisoformat(str(ctx.data["erase_sent_at"]))
        with _client(ctx) as mdm:
            back = mdm.enrolled(_udid(ctx), since=since)
        if back:
            return Done(f"{ctx.target} enrolled in MDM again")
        return _wait_or_fail(ctx, f"waiting for {ctx.target} to enroll again after the erase", "enroll_polls")


def _wait_or_fail(ctx: StepContext, reason: str, counter: str) -> Wait:
    started = float(ctx.data.get("install_started_at") or time.time())
    if window_passed(ctx, f"{counter}_from", _deadline(ctx), started) is not None:
        raise NeedsOperator(
            f"{ctx.target}: {reason} for more than {_deadline(ctx) / 60:.0f} min",
            fix="look at the Mac (KVM or a technician); if it is still busy, 'remotehands jobs retry "
            f"{ctx.job_id}' waits as long again; else cancel and try erase-install, or dfu-restore",
        )
    polls = int(ctx.data.get(counter, 0)) + 1
    ctx.data[counter] = polls
    return Wait(now() + timedelta(seconds=poll_delay(ctx, polls)), reason)


def steps() -> list[Step]:
    return [
        CheckApproval(),
        CheckMdmIdentity(),
        SendErase(),
        WaitAcknowledged(),
        WaitReenrolled(),
        WaitForNewOs(),
        VerifyInstall(),
    ]


methods.register(
    methods.Method(
        "mdm-erase",
        "erase a T2 or Apple silicon Mac through the MDM server (EraseDevice)",
        methods.REFUSALS["mdm-erase"],
        steps,
    )
)
