"""Reading a host's identity and OS over SSH, per kind: serial number, OS build, Mac power settings."""

from __future__ import annotations

import re

from remotehands.errors import DeviceRefused
from remotehands.inventory.models import Host
from remotehands.reimage.methods import MACS
from remotehands.ssh.client import HostSsh

_IOREG_SERIAL = re.compile(r'"IOPlatformSerialNumber"\s*=\s*"([^"]+)"')
_ESXI_SERIAL = re.compile(r"^\s*Serial Number:\s*(\S+)", re.M)
_ESXI_BUILD = re.compile(r"^\s*Build:\s*(?:Releasebuild-)?(\S+)", re.M)
_AUTORESTART = re.compile(r"^\s*autorestart\s+(\d)", re.M)


def _out(ssh: HostSsh, command: str) -> str:
    result = ssh.run(command, timeout=30)
    if not result.ok:
        raise DeviceRefused(
            f"{ssh.name}: '{command.split(maxsplit=1)[0]}' failed with exit {result.exit_status}: {result.stderr.strip()[:200]}",
            fix="check the host's OS at its console",
        )
    return result.stdout


def serial(ssh: HostSsh, host: Host) -> str:
    """The serial number the OS reports (Mac: ioreg; ESXi: esxcli; Linux: DMI)."""
    if host.kind in MACS:
        found = _IOREG_SERIAL.search(_out(ssh, "ioreg -c IOPlatformExpertDevice -d 2"))
    elif host.kind == "esxi":
        found = _ESXI_SERIAL.search(_out(ssh, "esxcli hardware platform get"))
    else:
        text = _out(ssh, "sudo cat /sys/class/dmi/id/product_serial").strip()
        return text
    if found is None:
        raise DeviceRefused(f"{host.name}: the OS did not report a serial number", fix="check the host")
    return found.group(1)


def build(ssh: HostSsh, host: Host) -> str:
    """The OS build the host runs (macOS BuildVersion, ESXi build, Linux VERSION_ID)."""
    if host.kind in MACS:
        return _out(ssh, "sw_vers -buildVersion").strip()
    if host.kind == "esxi":
        found = _ESXI_BUILD.search(_out(ssh, "esxcli system version get"))
        if found is None:
            raise DeviceRefused(f"{host.name}: esxcli reported no build", fix="check the host")
        return found.group(1)
    for line in _out(ssh, "cat /etc/os-release").splitlines():
        if line.startswith("VERSION_ID="):
            return line.split("=", 1)[1].strip().strip('"')
    raise DeviceRefused(f"{host.name}: /etc/os-release has no VERSION_ID", fix="check the host")


def autorestart(ssh: HostSsh) -> bool:
    """A Mac's ``pmset`` autorestart (restart after a power failure): True when on."""
    found = _AUTORESTART.search(_out(ssh, "pmset -g"))
    return bool(found and found.group(1) == "1")


def set_autorestart(ssh: HostSsh) -> None:
    _out(ssh, "sudo pmset -a autorestart 1")
