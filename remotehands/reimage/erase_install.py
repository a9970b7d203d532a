"""erase-install: reinstall macOS on a Mac whose OS still runs, from the Mac itself.

SSH in, check it is the right Mac, make sure the installer for the image's version is there
(``softwareupdate --fetch-full-installer``), run ``startosinstall --eraseinstall`` (Apple silicon: the
volume owner's credentials, the password on stdin, never on a command line), wait through the reboots
for the new OS (new host key, pinned for this host by this job), verify.

After a crash mid-``startosinstall`` the step is reconciled from what the Mac shows: still the old OS
with nothing running means it never started (run it); the Mac gone dark or answering with a new host key
means the erase is under way or done (never run it twice).
"""

from __future__ import annotations

import re
import shlex
import time
from typing import Any

from remotehands import secrets
from remotehands.errors import DeviceRefused, DeviceUnreachable, InvalidRequest
from remotehands.jobs.approval import CheckApproval
from remotehands.jobs.steps import Done, Reconciled, Step, StepContext, Verdict
from remotehands.reimage import methods, os_facts
from remotehands.reimage.access import image_of, ssh_to
from remotehands.reimage.common import CheckIdentity, VerifyInstall, WaitForNewOs

_INSTALLER = re.compile(r"^(Install macOS [^/\n]+\.app)$", re.M)


class EnsureInstaller(Step):
    name = "ensure-installer"
    description = "fetch the full macOS installer of the image's version (softwareupdate) unless present"
    idempotent = True

    def run(self, ctx: StepContext) -> Done:
        _, image = image_of(ctx)
        with ssh_to(ctx) as ssh:
            fetched = ssh.run(
                f"softwareupdate --fetch-full-installer --full-installer-version {shlex.quote(image.version)}",
                timeout=3600,
            )
            if not fetched.ok:
                raise DeviceRefused(
                    f"{ctx.target}: softwareupdate could not fetch the macOS {image.version} installer: "
                    f"{(fetched.stderr or fetched.stdout).strip()[:200]}",
                    fix="check the Mac's network access to Apple's servers or a caching server",
                )
            apps = _INSTALLER.findall(ssh.run("ls /Applications", timeout=30).stdout)
        if not apps:
            raise DeviceRefused(
                f"{ctx.target}: no 'Install macOS ….app' in /Applications after fetching it",
                fix="check the Mac's disk space and softwareupdate's log",
            )
        ctx.data["installer"] = f"/Applications/{apps[-1]}"
        return Done(f"installer ready: {apps[-1]} (macOS {image.version})")


class StartInstall(Step):
    name = "start-install"
    description = "run startosinstall --eraseinstall (erases the Mac; exactly once)"
    idempotent = False

    def baseline(self, ctx: StepContext) -> dict[str, Any]:
        return {"build_before": ctx.data.get("build_before"), "old_key": ctx.data.get("old_key")}

    def run(self, ctx: StepContext) -> Done:
        host = ctx.host()
        installer = str(ctx.data.get("installer") or "")
        if not installer:
            raise InvalidRequest("no installer was found by the step before", fix="retry the job")
        _, image = image_of(ctx)
        command = [
            "sudo",  # startosinstall runs as root; the volume owner authorizes the erase on Apple silicon
            f"{installer}/Contents/Resources/startosinstall",
            "--eraseinstall",
            "--agreetolicense",
            "--nointeraction",
            "--newvolumename",
            "Macintosh HD",
        ]
        if image.provisioning_package:
            command += ["--installpackage", image.provisioning_package]
        stdin = None
        if host.model == "apple-silicon":
            owner = ctx.runtime.settings.reimage.volume_owner
            if owner is None:
                raise InvalidRequest(
                    "an Apple silicon Mac needs a volume owner to erase-install",
                    fix="set [reimage] volume_owner = {username = ..., password = env:...} in remotehands.toml",
                )
            password = secrets.resolve(owner.password, field="reimage.volume_owner.password")
            command += ["--user", owner.username, "--stdinpass"]
            stdin = (password + "\n").encode()
        with ssh_to(ctx) as ssh:
            result = ssh.run(" ".join(shlex.quote(c) for c in command), stdin=stdin, timeout=3600)
        if not result.ok:
            raise DeviceRefused(
                f"{host.name}: startosinstall failed with exit {result.exit_status}: "
                f"{(result.stderr or result.stdout).strip()[-300:]}",
                fix="nothing was erased; check the installer and the volume owner, then retry",
            )
        ctx.data["install_started_at"] = time.time()
        return Done(f"startosinstall accepted the erase-install of macOS {image.version} on {host.name}")

    def reconcile(self, ctx: StepContext, baseline: dict[str, Any]) -> Reconciled:
        host = ctx.host()
        try:
            with ssh_to(ctx) as ssh:
                build = os_facts.build(ssh, host)
                running = ssh.run("pgrep -x startosinstall", timeout=30).ok
        except DeviceUnreachable:
            ctx.data.setdefault("install_started_at", time.time())
            return Reconciled(Verdict.DONE, f"{host.name} has gone dark: the erase-install is under way")
        except DeviceRefused as exc:
            if "host key" in str(exc):
                ctx.data.setdefault("install_started_at", time.time())
                return Reconciled(
                    Verdict.DONE, f"{host.name} answers with a new host key: it was reinstalled"
                )
            raise
        if running:
            ctx.data.setdefault("install_started_at", time.time())
            return Reconciled(Verdict.DONE, f"startosinstall is running on {host.name}")
        if build == baseline.get("build_before"):
            return Reconciled(Verdict.RETRY, f"{host.name} still runs build {build} and no install runs")
        return Reconciled(
            Verdict.NEEDS_OPERATOR,
            f"{host.name} runs build {build}, neither the old {baseline.get('build_before')} nor gone dark",
        )


def steps() -> list[Step]:
    return [
        CheckApproval(),
        CheckIdentity(),
        EnsureInstaller(),
        StartInstall(),
        WaitForNewOs(),
        VerifyInstall(),
    ]


methods.register(
    methods.Method(
        "erase-install",
        "reinstall macOS from the running Mac (startosinstall --eraseinstall)",
        methods.REFUSALS["erase-install"],
        steps,
    )
)
