"""Steps of the reimage methods that boot an installer over the network or from virtual media (pxe,
virtual-media, netboot): the installer's answer file with the job's callback token, a boot override for the
next boot only, the wait for the installer's report, and putting the boot order back.

The installer reports with ``POST /callbacks/{job}``: ``{"event": "started"}`` when it begins (the PXE
entry is then withdrawn, so a reboot cannot start it again) and ``{"event": "installed", "build": ...}`` at
the end; a report wakes the waiting job at once, and the wait polls the stored callbacks in case the wake-up is
missed. Every wait has the install deadline; when it passes, the job stops for an operator with the host's
state read from its BMC, and ``jobs retry`` waits one deadline more.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from remotehands.bmc.base import (
    BootControl,
    BootDevice,
    BootSetting,
    PowerAction,
    VirtualMedia,
    perform_and_confirm,
)
from remotehands.errors import (
    DeviceRefused,
    DeviceUnreachable,
    InvalidRequest,
    NeedsOperator,
    RemoteHandsError,
    SecretError,
)
from remotehands.intake import callbacks
from remotehands.jobs.steps import Done, Step, StepContext, Wait
from remotehands.jobs.store import now
from remotehands.reimage import answers
from remotehands.reimage.access import image_of
from remotehands.reimage.common import poll_delay, window_passed

STARTED, INSTALLED = "started", "installed"  # the events an installer reports


def _bmc(ctx: StepContext) -> Any:
    """The driver of the host's first BMC (IPMI or Redfish, in inventory order) that answers a power read:
    it sets boot devices and media too. A Redfish BMC that does not answer falls back to the IPMI one."""
    host = ctx.host()
    bmcs = [p for p in host.power_paths if p.type in ("ipmi", "redfish")]
    if not bmcs:
        raise InvalidRequest(
            f"{host.name} has no BMC to set its boot device", fix="use a method for this host"
        )
    failures: list[str] = []
    for profile in bmcs:
        driver = ctx.runtime.power_driver(host, profile)
        try:
            driver.state()
        except SecretError:
            driver.close()
            raise
        except RemoteHandsError as exc:
            driver.close()
            failures.append(f"{profile.type} {profile.address}: {exc.message}")
            continue
        if failures:
            ctx.data["bmc_fallback"] = failures  # the newest fallback, shown in jobs show
        return driver
    raise DeviceUnreachable(
        f"no BMC of {host.name} answers ({'; '.join(failures)})", fix="check the BMCs' network"
    )


def deadline_s(ctx: StepContext) -> float:
    settings = ctx.runtime.settings.reimage
    return float(ctx.params.get("install_timeout", settings.callback_deadline_minutes * 60))


class PrepareInstall(Step):
    """Write the installer's answer file (and the PXE entry) with a fresh callback token for this job."""

    name = "prepare-install"
    description = "write the installer's answer file (image, callback URL, this job's token)"
    idempotent = True

    def __init__(self, *, pxe: bool = False, media: bool = False) -> None:
        self.pxe, self.media = pxe, media
        if pxe:
            self.description += " and the host's PXE entry"

    def run(self, ctx: StepContext) -> Done:
        host = ctx.host()
        name, image = image_of(ctx)
        root = answers.directory(ctx.runtime.settings.reimage.install_config_dir)
        if self.pxe and host.boot_mac is None:
            raise InvalidRequest(
                f"{host.name} has no boot_mac in the inventory",
                fix="add boot_mac: aa:bb:cc:dd:ee:ff (its PXE NIC)",
            )
        if self.media and not image.iso_url:
            raise InvalidRequest(f"image {name} has no iso_url", fix=f"set iso_url in [images.{name}]")
        token = callbacks.issue_token(ctx.runtime.db, ctx.job_id)
        base = ctx.runtime.settings.reimage.callback_url.rstrip("/")
        answer = answers.Answer(
            ctx.job_id, host.name, name, image.os, image.version, image.build,
            f"{base}/callbacks/{ctx.job_id}", token, image.iso_url if self.media else None,
        )  # fmt: skip
        written = answers.write(root, answer, boot_mac=host.boot_mac if self.pxe else None)
        ctx.data["callbacks_after"] = callbacks.last_id(ctx.runtime.db, ctx.job_id)
        ctx.data["pxe_entry"] = self.pxe
        return Done("installer config written: " + ", ".join(str(p.relative_to(root)) for p in written))


def _boot(ctx: StepContext, device: BootDevice, *, once: bool) -> BootSetting:
    """Set the next boot (or every boot) to ``device`` through the host's BMC; returns what it reads after."""
    bmc = _bmc(ctx)
    try:
        if not isinstance(bmc, BootControl):
            raise DeviceRefused(f"{ctx.target}: its BMC cannot set a boot device", fix="set it in the BIOS")
        bmc.set_boot_device(device, once=once)
        return bmc.get_boot_device()
    finally:
        bmc.close()


def _media(ctx: StepContext, act: Callable[[Any], None]) -> str | None:
    """``act(bmc)`` on the host's BMC's virtual media; returns the image it holds after."""
    bmc = _bmc(ctx)
    try:
        if not isinstance(bmc, VirtualMedia):
            raise DeviceRefused(f"{ctx.target}: its BMC has no virtual media", fix="use pxe")
        act(bmc)
        return bmc.inserted()
    finally:
        bmc.close()


class SetBootOnce(Step):
    """Set the next boot (only) to ``device`` and read it back."""

    idempotent = True
    changes_equipment = True

    def __init__(self, device: BootDevice) -> None:
        self.device = device
        self.name = f"boot-{device.value}-once"
        self.description = f"set the host's next boot (once) to {device.value} and read it back"

    def run(self, ctx: StepContext) -> Done:
        seen = _boot(ctx, self.device, once=True)
        if seen.device is not self.device:
            raise DeviceRefused(
                f"{ctx.target}: the BMC accepted the boot override but reads "
                f"{seen.device.value if seen.device else 'no override'}, not {self.device.value}",
                fix="the BMC may be in POST or ignore overrides: check its boot settings, then retry",
            )
        return Done(f"next boot of {ctx.target}: {self.device.value} (once){' UEFI' if seen.uefi else ''}")


class InsertMedia(Step):
    name = "insert-media"
    description = "insert the image's ISO into the BMC's virtual CD (nothing if it is in)"
    idempotent = True
    changes_equipment = True

    def run(self, ctx: StepContext) -> Done:
        name, image = image_of(ctx)
        url = image.iso_url
        if not url:
            raise InvalidRequest(f"image {name} has no iso_url", fix=f"set iso_url in [images.{name}]")
        seen = _media(ctx, lambda bmc: bmc.insert(url))
        if seen != url:
            raise DeviceRefused(
                f"{ctx.target}: the virtual CD reads {seen or 'empty'} after inserting {url}",
                fix="check the BMC's virtual media (license, image URL reachable from the BMC), then retry",
            )
        return Done(f"{url} inserted in {ctx.target}'s virtual CD")


class EjectMedia(Step):
    """Eject the virtual CD; a BMC that ejects only with the host off gets it off, ejected, and on again
    (each read before it acts, so a crash in between repeats nothing)."""

    name = "eject-media"
    description = "eject the virtual CD (powering the host off for it if the BMC needs that)"
    idempotent = True
    changes_equipment = True

    def run(self, ctx: StepContext) -> Done:
        note = ""
        try:
            left = _media(ctx, lambda bmc: bmc.eject())
        except DeviceRefused as exc:
            bmc = _bmc(ctx)
            try:
                perform_and_confirm(bmc, PowerAction.OFF, timeout=120.0)
                bmc.eject()
                left = bmc.inserted()
                perform_and_confirm(bmc, PowerAction.ON, timeout=120.0)
            finally:
                bmc.close()
            note = f" (the BMC refused while the host was on: {exc.message}; it was powered off for the eject and on again)"
        if left is not None:
            raise DeviceRefused(
                f"{ctx.target}: the virtual CD still holds {left} after the eject",
                fix="eject it in the BMC's web interface, then retry",
            )
        return Done(f"virtual CD of {ctx.target} ejected{note}")


class SetBootDisk(Step):
    name = "boot-disk"
    description = "set the host to boot from its disk and read it back"
    idempotent = True
    changes_equipment = True

    def run(self, ctx: StepContext) -> Done:
        seen = _boot(ctx, BootDevice.DISK, once=False)
        if seen.device not in (BootDevice.DISK, None):
            raise DeviceRefused(
                f"{ctx.target}: the BMC reads next boot {seen.device.value}, not disk",
                fix="set the boot order in the BMC or BIOS, then retry",
            )
        return Done(f"{ctx.target} boots from its disk")


class WaitInstaller(Step):
    """Wait for the installer's ``installed`` callback, up to the install deadline."""

    name = "wait-installer"
    description = "wait (up to the install deadline) for the installer to report on /callbacks/{job}"
    idempotent = True

    def run(self, ctx: StepContext) -> Done | Wait:
        host = ctx.host()
        after = int(ctx.data.get("callbacks_after") or 0)
        reports = _reported(ctx, after, INSTALLED)
        started = float(ctx.data.get("sent_at") or time.time())
        if ctx.data.get("pxe_entry") and not ctx.data.get("pxe_withdrawn") and _reported(ctx, after, STARTED):
            # The installer runs: a reboot from now on must boot the disk (or the new installation), not
            # this installer again, even where the BIOS puts the network first.
            root = ctx.runtime.settings.reimage.install_config_dir
            if root is not None and host.boot_mac:
                answers.remove_pxe(root, host.boot_mac)
            ctx.data["pxe_withdrawn"] = True
            ctx.tell_ticket(f"the installer on {host.name} started; its PXE entry was withdrawn")
        if reports:
            payload = reports[-1]["payload"]
            ctx.data["reported_build"] = str(payload.get("build", ""))
            root = ctx.runtime.settings.reimage.install_config_dir
            if root is not None:
                answers.remove(root, host.name, host.boot_mac)
            ctx.data["install_started_at"] = started
            return Done(
                f"the installer on {host.name} reported: installed build {payload.get('build', '?')} "
                f"({time.time() - started:.0f}s after the boot); its answer file was removed"
            )
        limit = deadline_s(ctx)
        if window_passed(ctx, "installer_wait_from", limit, started) is not None:
            raise NeedsOperator(
                f"the installer on {host.name} did not report within {limit / 60:.0f} min of the boot; "
                f"{_state(ctx)}; its answer file is still in place, so a late report is taken",
                fix=f"look at the host's console: if the installer is still running, 'remotehands jobs "
                f"retry {ctx.job_id}' waits {limit / 60:.0f} min more; if it stopped, fix the cause and cancel, "
                "then run the ticket again (the host's next boot is its disk)",
            )
        polls = int(ctx.data.get("installer_polls", 0)) + 1
        ctx.data["installer_polls"] = polls
        return Wait(now() + timedelta(seconds=poll_delay(ctx, polls)), f"installing {host.name}")


def _reported(ctx: StepContext, after: int, event: str) -> list[dict[str, Any]]:
    """The job's callbacks with ``event`` received since the installer's files were written."""
    return [
        c
        for c in callbacks.callbacks_of(ctx.runtime.db, ctx.job_id, after=after)
        if c["payload"].get("event") == event
    ]


def _state(ctx: StepContext) -> str:
    """What the host's first power path reads now (power; a BMC's next boot and virtual CD), for an
    operator; never raises."""
    host = ctx.host()
    try:
        driver = ctx.runtime.power_driver(host, host.power)
    except RemoteHandsError as exc:
        return f"its power could not be read ({exc.message})"
    where = "its BMC" if host.power.type in ("ipmi", "redfish") else f"its {host.power.type}"
    try:
        text = f"{where} reads power {driver.state().value}"
        if isinstance(driver, BootControl):
            boot = driver.get_boot_device()
            text += f", next boot {boot.device.value if boot.device else 'disk (no override)'}"
        if isinstance(driver, VirtualMedia) and (media := driver.inserted()):
            text += f", virtual CD {media}"
        return text
    except RemoteHandsError as exc:
        return f"{where} could not be read ({exc.message})"
    finally:
        driver.close()
