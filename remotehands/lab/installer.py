"""The lab's boot and install services: what answers a simulated server that boots from the network or from
virtual media, and a legacy Mac that NetBoots.

It reads what remotehands wrote to the install directory (``remotehands.reimage.answers``): on a PXE boot
the host's ``pxelinux.cfg/01-<mac>`` entry (none: the host boots its disk, as pxelinux's fallback does) and
its answer file; on a boot from the virtual CD the answer file, whose ``media`` must be the inserted image;
on a NetBoot the answer file. It asks remotehands whether the job still wants the install (``GET
/callbacks/{job}`` with the token; an ended job's installer stops there, as a kickstart ``%pre`` check
does), then reports ``{"event": "started"}`` and starts the install on the simulated host (``SshHosts.begin_install``:
dark for the install time, back with the build and a new host key) and, once the host listens again, posts
``{"event": "installed", "host", "build"}`` to the answer's callback URL with its token, as a kickstart's
``%firstboot`` or a NetInstall post-install script does. Every decision is a line of the command log
(``pxe_boot``, ``cd_boot``, ``installer_report`` ...), the token never.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from pathlib import Path

import httpx

from remotehands.lab.ssh_host import CommandLogLike, SshHosts
from remotehands.reimage import answers

log = logging.getLogger(__name__)

REPORT_TRIES = 10
STARTED, INSTALLED = "started", "installed"


class LabInstaller:
    def __init__(
        self, hosts: SshHosts, root: Path, command_log: CommandLogLike, boot_macs: dict[str, str]
    ) -> None:
        self.hosts = hosts
        self.root = root
        self.command_log = command_log
        self.boot_macs = boot_macs
        root.mkdir(parents=True, exist_ok=True)

    # Hooks: called from device threads; the work runs on its own thread so no device waits for it.

    def bmc_booted(self, host: str, device: str) -> None:
        """An IPMI host booted with ``device`` (boot flags' selector name, ``disk`` without override)."""
        if device == "pxe":
            self._spawn(self._pxe, host)

    def redfish_booted(self, host: str, target: str, image: str | None) -> None:
        """A Redfish system booted with override ``target`` and ``image`` in its virtual CD."""
        if target == "Pxe":
            self._spawn(self._pxe, host)
        elif target == "Cd":
            self._spawn(self._cd, host, image)

    def netbooted(self, host: str, server: str) -> None:
        """A Mac blessed for NetBoot powered on (``SshHosts.on_netboot``)."""
        self._spawn(self._netboot, host, server)

    # -- what the boot servers do --------------------------------------------------------------------------

    def _pxe(self, host: str) -> None:
        mac = self.boot_macs.get(host)
        entry = answers.pxe_path(self.root, mac) if mac else None
        if entry is None or not entry.exists():
            self.command_log.write(host, "pxe_boot", host=host, entry=None, result="no entry: boots its disk")
            return
        self._install(host, "pxe", entry=entry.name)

    def _cd(self, host: str, image: str | None) -> None:
        answer = answers.read(self.root, host)
        if image is None or answer is None or answer.media != image:
            self.command_log.write(
                host, "cd_boot", host=host, image=image, result="no installer: boots its disk"
            )
            return
        self._install(host, "virtual-media", image=image)

    def _netboot(self, host: str, server: str) -> None:
        self._install(host, "netboot", server=server)

    def _install(self, host: str, method: str, **seen: object) -> None:
        answer = answers.read(self.root, host)
        if answer is None:
            self.command_log.write(
                host, f"{method}_boot", host=host, result="no answer file: installer stops", **seen
            )
            return
        wanted = self._still_wanted(answer)
        self.command_log.write(
            host, f"{method}_boot", host=host, job=answer.job, build=answer.build, wanted=wanted, **seen
        )
        if wanted is not True:
            return  # the job has ended (or does not answer): the installer stops before erasing anything
        self._spawn(self._post, answer, STARTED)
        self.hosts.begin_install(
            host,
            answer.build,
            functools.partial(self._spawn, self._post, answer, INSTALLED),
            version=answer.version,
            method=method,
        )

    def _still_wanted(self, answer: answers.Answer) -> bool | str:
        """Ask remotehands (``GET /callbacks/{job}``) whether the job still wants this install."""
        try:
            reply = httpx.get(
                answer.callback, headers={"Authorization": f"Bearer {answer.token}"}, timeout=10.0
            )
        except httpx.HTTPError as exc:
            return type(exc).__name__
        if reply.status_code != 200:
            return f"HTTP {reply.status_code}"
        return bool(reply.json().get("install"))

    def _post(self, answer: answers.Answer, event: str) -> None:
        body = {"event": event, "host": answer.host, "build": answer.build}
        status: int | str = "not sent"
        for attempt in range(REPORT_TRIES):
            try:
                reply = httpx.post(
                    answer.callback,
                    json=body,
                    headers={"Authorization": f"Bearer {answer.token}"},
                    timeout=10.0,
                )
                status = reply.status_code
                if reply.status_code < 500:
                    break
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            time.sleep(min(0.2 * 2**attempt, 5.0))
        self.command_log.write(
            answer.host, "installer_report", host=answer.host, job=answer.job, event=event, status=status
        )

    @staticmethod
    def _spawn(target: object, *args: object) -> None:
        def run() -> None:
            try:
                target(*args)  # type: ignore[operator]
            except Exception:
                log.exception("lab installer: %s failed", getattr(target, "__name__", target))

        threading.Thread(target=run, daemon=True, name="lab-installer").start()
