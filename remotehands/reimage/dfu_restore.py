"""dfu-restore: the last resort for an Apple silicon Mac whose macOS and recoveryOS are both broken.

On the controller Mac the inventory pairs with the target (``dfu_controller``; a USB-C cable between the
two DFU ports), ``macvdmtool dfu`` reboots the target into DFU mode; the target's ECID must then appear in
``cfgutil list`` (it was not there before); ``cfgutil --ecid ECID restore -i IPSW`` restores the image's
IPSW; then wait for the new OS on SSH and verify. A restored Mac reaches SSH through automated device
enrollment (the MDM's account configuration and its provisioning).

Without a paired controller Mac (or when it cannot be reached) a technician is asked on the ticket to put the
Mac in DFU mode by hand and restore it with Apple Configurator, and the job waits for ``jobs confirm``.

After a crash during the restore, the controller tells: the target still in DFU mode means the restore never
began (run it); gone from the list means it is restoring or restored (never run it twice).
"""

from __future__ import annotations

import re
import shlex
import time
from datetime import timedelta
from typing import Any

from remotehands.bmc.tasks import MANUAL_POLL_S
from remotehands.errors import (
    DeviceRefused,
    DeviceUnreachable,
    InvalidRequest,
    NeedsOperator,
    RemoteHandsError,
)
from remotehands.inventory.models import Host
from remotehands.jobs.approval import CheckApproval
from remotehands.jobs.steps import Done, Reconciled, Step, StepContext, Verdict, Wait
from remotehands.jobs.store import now
from remotehands.reimage import methods
from remotehands.reimage.access import image_of, ssh_to
from remotehands.reimage.common import CheckIdentity, PowerBackOn, VerifyInstall, WaitForNewOs, window_passed
from remotehands.ssh.client import HostSsh

_ECID = re.compile(r"ECID:\s*(0x[0-9A-Fa-f]+)")
DFU_APPEAR_S = 60.0  # how long the target has to show up in DFU mode after macvdmtool


def _controller(ctx: StepContext) -> Host | None:
    """The paired controller Mac, or None (no pairing, or it does not answer: the manual path)."""
    host = ctx.host()
    if not host.dfu_controller:
        return None
    try:
        controller = ctx.runtime.inventory().host(host.dfu_controller)
    except RemoteHandsError:
        raise InvalidRequest(
            f"{host.name}'s dfu_controller {host.dfu_controller} is not in the inventory",
            fix="add the controller Mac to the inventory or correct dfu_controller",
        ) from None
    return controller


def _listed(ssh: HostSsh) -> list[str]:
    result = ssh.run("cfgutil list", timeout=60)
    if not result.ok:
        raise DeviceRefused(
            f"{ssh.name}: cfgutil list failed: {(result.stderr or result.stdout).strip()[:200]}",
            fix="install Apple Configurator's automation tools (cfgutil) on the controller Mac",
        )
    return [e.upper().replace("0X", "0x") for e in _ECID.findall(result.stdout)]


def _ipsw(ctx: StepContext) -> str:
    name, image = image_of(ctx)
    if not image.ipsw:
        raise InvalidRequest(
            f"image {name} has no ipsw", fix=f"set ipsw (its path on the controller Mac) in [images.{name}]"
        )
    return image.ipsw


class ListDfu(Step):
    """What the controller Mac sees in DFU mode before the target is sent there: the ECID that appears
    after ``macvdmtool dfu`` is then the target's (committed before macvdmtool runs, so a crash in between
    cannot hide it)."""

    name = "list-dfu"
    description = (
        "list the devices in DFU mode on the paired controller Mac (before sending the target there)"
    )
    idempotent = True

    def run(self, ctx: StepContext) -> Done:
        controller = _controller(ctx)
        if controller is None:
            return Done("no controller Mac is paired: a technician will be asked", quiet=True)
        try:
            with ssh_to(ctx, host=controller) as ssh:
                ctx.data["before_dfu"] = _listed(ssh)
        except DeviceUnreachable as exc:
            ctx.data["controller_down"] = exc.message
            return Done(f"the controller Mac {controller.name} does not answer ({exc.message})")
        return Done(
            f"{controller.name} sees {len(ctx.data['before_dfu'])} device(s) in DFU mode before {ctx.target} is sent"
        )


class EnterDfu(Step):
    name = "enter-dfu"
    description = (
        "on the paired controller Mac, macvdmtool dfu; the target's ECID must appear (or ask a technician)"
    )
    idempotent = True
    changes_equipment = True

    def run(self, ctx: StepContext) -> Done | Wait:
        ipsw = _ipsw(ctx)
        controller = _controller(ctx)
        if controller is None or ctx.data.get("manual"):
            return self._manual(ctx, ipsw, "it has no controller Mac paired in the inventory")
        if ctx.data.get("controller_down"):
            return self._manual(
                ctx,
                ipsw,
                f"its controller Mac {controller.name} does not answer ({ctx.data['controller_down']})",
            )
        before = list(ctx.data.get("before_dfu") or [])
        try:
            with ssh_to(ctx, host=controller) as ssh:
                if "dfu_sent_at" not in ctx.data:
                    # Harmless to repeat after a crash: a target already in DFU mode stays there.
                    vdm = ssh.run("sudo macvdmtool dfu", timeout=120)
                    if not vdm.ok:
                        raise DeviceRefused(
                            f"{controller.name}: macvdmtool dfu failed: {(vdm.stderr or vdm.stdout).strip()[-200:]}",
                            fix=f"check the USB-C cable between the DFU ports of {controller.name} and {ctx.target}",
                        )
                    ctx.data["dfu_sent_at"] = time.time()
                new = [e for e in _listed(ssh) if e not in before]
        except DeviceUnreachable as exc:
            return self._manual(
                ctx, ipsw, f"its controller Mac {controller.name} stopped answering ({exc.message})"
            )
        if len(new) == 1:
            ctx.data["ecid"] = new[0]
            return Done(f"{ctx.target} is in DFU mode on {controller.name}'s port: ECID {new[0]}")
        if len(new) > 1:
            raise NeedsOperator(
                f"{controller.name} sees {len(new)} new devices in DFU mode ({', '.join(new)}); cannot tell which "
                f"is {ctx.target}; nothing was restored",
                fix="disconnect the other devices from the controller Mac, then retry",
            )
        if window_passed(ctx, "dfu_wait_from", DFU_APPEAR_S, float(ctx.data["dfu_sent_at"])) is not None:
            ctx.data.pop("dfu_sent_at", None)  # a retry sends macvdmtool again
            raise NeedsOperator(
                f"{ctx.target} did not appear in DFU mode on {controller.name} within {DFU_APPEAR_S:.0f}s; "
                "nothing was restored",
                fix=f"check the cable between the DFU ports and that {ctx.target} has power, then retry",
            )
        return Wait(now() + timedelta(seconds=2), f"waiting for {ctx.target} to appear in DFU mode")

    def _manual(self, ctx: StepContext, ipsw: str, why: str) -> Done | Wait:
        host = ctx.host()
        if ctx.confirmed_by:
            ctx.data["install_started_at"] = time.time()
            return Done(f"{ctx.confirmed_by} confirmed: {host.name} was put in DFU mode and restored by hand")
        if not ctx.data.get("manual"):
            ctx.data["manual"] = True
            ctx.tell_ticket(
                f"TECHNICIAN NEEDED: {host.name} (site {host.site}, rack {host.rack}, serial {host.serial_number}) "
                f"needs a DFU restore and {why}. Connect a Mac with Apple Configurator to its DFU port (USB-C), "
                "hold the power button and start it in DFU mode, restore "
                f"{ipsw.rsplit('/', 1)[-1]}, then run: remotehands jobs confirm {ctx.job_id}"
            )
        return Wait(
            now() + timedelta(seconds=MANUAL_POLL_S), f"waiting for a technician to confirm job {ctx.job_id}"
        )


class Restore(Step):
    name = "restore"
    description = "cfgutil restore of the image's IPSW to the target's ECID (erases it; exactly once)"
    idempotent = False

    def baseline(self, ctx: StepContext) -> dict[str, Any]:
        return {"ecid": ctx.data.get("ecid")}

    def run(self, ctx: StepContext) -> Done:
        if ctx.data.get("manual"):
            return Done("restored by the technician", quiet=True)
        ipsw, ecid = _ipsw(ctx), str(ctx.data["ecid"])
        controller = _controller(ctx)
        assert controller is not None
        ctx.data["install_started_at"] = time.time()
        with ssh_to(ctx, host=controller) as ssh:
            result = ssh.run(f"sudo cfgutil --ecid {ecid} restore -i {shlex.quote(ipsw)}", timeout=3 * 3600)
        if not result.ok:
            raise DeviceRefused(
                f"{controller.name}: cfgutil restore to {ecid} failed: {(result.stderr or result.stdout).strip()[-300:]}",
                fix=f"see the controller's log; {ctx.target} may still be in DFU mode: retry, or restore by hand",
            )
        return Done(f"{ipsw.rsplit('/', 1)[-1]} restored to {ctx.target} ({ecid}) from {controller.name}")

    def reconcile(self, ctx: StepContext, baseline: dict[str, Any]) -> Reconciled:
        if ctx.data.get("manual"):
            return Reconciled(Verdict.RETRY, "the technician restored it")
        controller = _controller(ctx)
        assert controller is not None
        with ssh_to(ctx, host=controller) as ssh:
            listed = _listed(ssh)
        if baseline.get("ecid") in listed:
            return Reconciled(Verdict.RETRY, f"{ctx.target} is still in DFU mode: the restore never began")
        ctx.data.setdefault("install_started_at", time.time())
        return Reconciled(Verdict.DONE, f"{ctx.target} has left DFU mode: the restore is under way or done")


def steps() -> list[Step]:
    return [
        CheckApproval(),
        CheckIdentity(dark_ok=True),
        PowerBackOn(),
        ListDfu(),
        EnterDfu(),
        Restore(),
        WaitForNewOs(),
        VerifyInstall(),
    ]


methods.register(
    methods.Method(
        "dfu-restore",
        "restore an Apple silicon Mac in DFU mode from its paired controller Mac (macvdmtool, cfgutil)",
        methods.REFUSALS["dfu-restore"],
        steps,
    )
)
