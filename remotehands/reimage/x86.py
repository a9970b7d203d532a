"""pxe and virtual-media: reinstall an ESXi or Linux server through its BMC.

pxe: write the host's PXE entry and answer file, set the next boot (once) to PXE, power cycle, wait for the
installer's report on ``/callbacks/{job}``, set the boot to disk, wait for SSH with the new OS (new host key,
pinned by this job), verify.

virtual-media (Redfish): the same with the image's ISO in the BMC's virtual CD and a one-time boot from it;
the CD is ejected after the installer reported.

The power cycle is the one of ``power.cycle`` (``bmc.tasks``): native with the BMC's event log as proof, or
off-dwell-on, so a crash at any step never cycles twice. Setting a boot device, inserting and ejecting
media read back before they count, and are harmless to repeat.
"""

from __future__ import annotations

from remotehands.bmc.base import BootDevice, PowerAction
from remotehands.bmc.tasks import ConfirmOff, ConfirmPower, ReadPower, SendCycle, SendOn
from remotehands.jobs.approval import CheckApproval
from remotehands.jobs.steps import Step
from remotehands.reimage import methods
from remotehands.reimage.common import CheckIdentity, VerifyInstall, WaitForNewOs
from remotehands.reimage.network import (
    EjectMedia,
    InsertMedia,
    PrepareInstall,
    SetBootDisk,
    SetBootOnce,
    WaitInstaller,
)


def cycle() -> list[Step]:
    return [
        ReadPower(PowerAction.CYCLE),
        SendCycle(),
        ConfirmOff(),
        SendOn(),
        ConfirmPower(PowerAction.CYCLE),
    ]


def pxe_steps() -> list[Step]:
    return [
        CheckApproval(),
        CheckIdentity(dark_ok=True),
        PrepareInstall(pxe=True),
        SetBootOnce(BootDevice.PXE),
        *cycle(),
        WaitInstaller(),
        SetBootDisk(),
        WaitForNewOs(),
        VerifyInstall(),
    ]


def virtual_media_steps() -> list[Step]:
    return [
        CheckApproval(),
        CheckIdentity(dark_ok=True),
        PrepareInstall(media=True),
        InsertMedia(),
        SetBootOnce(BootDevice.CD),
        *cycle(),
        WaitInstaller(),
        EjectMedia(),
        SetBootDisk(),
        WaitForNewOs(),
        VerifyInstall(),
    ]


methods.register(
    methods.Method(
        "pxe",
        "boot the server's installer from the network once (BMC boot override, power cycle), wait for it",
        methods.REFUSALS["pxe"],
        pxe_steps,
    )
)
methods.register(
    methods.Method(
        "virtual-media",
        "boot the server once from the image's ISO in its Redfish BMC's virtual CD, wait for the installer",
        methods.REFUSALS["virtual-media"],
        virtual_media_steps,
    )
)
