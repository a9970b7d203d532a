"""netboot: reinstall a legacy Intel Mac (no T2 chip) from a NetInstall image served over BSDP.

SSH in, check it is the right Mac, write the installer's answer file (callback URL and this job's token),
``bless --netboot --server bsdp://... --nextonly`` so the next boot (only) is from the network, power cycle
through the PDU outlet, wait for the NetInstall image's post-install report on ``/callbacks/{job}``, wait for
the new OS on SSH (new host key, pinned by this job), verify. T2 and Apple silicon Macs cannot NetBoot and
are refused before anything runs.
"""

from __future__ import annotations

import shlex

from remotehands.errors import DeviceRefused, InvalidRequest
from remotehands.jobs.approval import CheckApproval
from remotehands.jobs.steps import Done, Step, StepContext
from remotehands.reimage import methods
from remotehands.reimage.access import image_of, ssh_to
from remotehands.reimage.common import CheckIdentity, VerifyInstall, WaitForNewOs
from remotehands.reimage.network import PrepareInstall, WaitInstaller
from remotehands.reimage.x86 import cycle


class BlessNetboot(Step):
    name = "bless-netboot"
    description = "bless --netboot --nextonly: the Mac's next boot (only) is the image's NetInstall server"
    idempotent = True
    changes_equipment = True

    def run(self, ctx: StepContext) -> Done:
        name, image = image_of(ctx)
        server = image.netboot_server
        if not server or not server.startswith("bsdp://"):
            raise InvalidRequest(
                f"image {name} has no netboot_server",
                fix=f"set netboot_server = 'bsdp://…' in [images.{name}]",
            )
        with ssh_to(ctx) as ssh:
            result = ssh.run(f"sudo bless --netboot --server {shlex.quote(server)} --nextonly", timeout=60)
        if not result.ok:
            raise DeviceRefused(
                f"{ctx.target}: bless --netboot failed with exit {result.exit_status}: "
                f"{(result.stderr or result.stdout).strip()[:200]}",
                fix="NetBoot needs an Intel Mac without a T2 chip; otherwise use erase-install or mdm-erase",
            )
        return Done(f"{ctx.target} boots from {server} next time (once)")


def steps() -> list[Step]:
    return [
        CheckApproval(),
        CheckIdentity(),
        PrepareInstall(),
        BlessNetboot(),
        *cycle(),
        WaitInstaller(),
        WaitForNewOs(),
        VerifyInstall(),
    ]


methods.register(
    methods.Method(
        "netboot",
        "NetBoot a legacy Intel Mac into a NetInstall image (bless --netboot, PDU power cycle)",
        methods.REFUSALS["netboot"],
        steps,
    )
)
