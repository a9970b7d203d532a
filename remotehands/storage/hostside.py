"""The host side of a LUN expansion: after the array grew a LUN, each ESXi or Linux host mapped to it
rescans, what sits on the LUN is grown on one host (the ESXi datastore from any one of its hosts, the Linux
filesystem where it is mounted), the other hosts are refreshed, and each host's view is read back.

Functions over an open ``HostSsh`` session to one host (ESXi: ``remotehands.storage.hostside_esxi``, as root;
Linux: ``remotehands.storage.hostside_linux``, through ``sudo -n``), all idempotent:

- ``look``: what the host sees of the LUN and of the datastore or filesystem on it (read only);
- ``rescan``: make the host read the LUN's size again; the size it sees afterwards;
- ``grow``: grow what sits on the LUN to fill it, on this host; a one-line message for the ticket;
- ``refresh``: on the other hosts, read the grown datastore (ESXi) or nothing (Linux); a message.

Slow commands (rescans, grows) may run for ``hostside_shell.RESCAN_TIMEOUT`` or ``GROW_TIMEOUT`` seconds.

Errors: ``InvalidRequest`` for a malformed naa or host kind, ``DeviceRefused`` for a command that failed (the
tool's own words), answered unreadably or showed that the host does not see the LUN, ``VerificationFailed``
where a read-back disagrees; ``DeviceUnreachable`` from the session passes through. Every message names the
host and the command.
"""

from __future__ import annotations

from remotehands.errors import InvalidRequest
from remotehands.inventory.models import LunUse
from remotehands.ssh.client import HostSsh
from remotehands.storage import hostside_esxi, hostside_linux
from remotehands.storage.hostside_shell import HostKind, HostShell, HostView, check_naa

__all__ = ["HostKind", "HostView", "grow", "look", "refresh", "rescan"]


def _shell(ssh: HostSsh, kind: HostKind, naa: str) -> HostShell:
    check_naa(naa)
    if kind not in ("esxi", "linux"):
        raise InvalidRequest(f"{ssh.name}: no host kind {kind!r} for a LUN expansion: esxi or linux")
    return HostShell(ssh, sudo=kind == "linux")


def look(ssh: HostSsh, kind: HostKind, naa: str, use: LunUse) -> HostView:
    """What host ``ssh`` sees of LUN ``naa`` and of the datastore or filesystem ``use`` says is on it; changes
    nothing. ``fs_size`` is None when that is not mounted on this host. Raises ``DeviceRefused`` when the host
    does not see the LUN, ``VerificationFailed`` when the LUN holds another datastore, or the mount point is
    mounted from elsewhere, than ``use`` says."""
    shell = _shell(ssh, kind, naa)
    if kind == "esxi":
        return hostside_esxi.look(shell, naa, use)
    return hostside_linux.look(shell, naa, use)


def rescan(ssh: HostSsh, kind: HostKind, naa: str) -> int:
    """Make the host read LUN ``naa``'s size again: ESXi rescans every adapter; Linux rescans every path of
    the multipath map that is up (``active ready running``; the others are logged and left alone) through
    sysfs, then resizes the map by its name. Returns the size in bytes the host sees afterwards; harmless to
    repeat. Raises ``DeviceRefused`` when a rescan fails, the host does not see the LUN or no path of it is
    up, ``VerificationFailed`` when a live path and the map disagree afterwards."""
    shell = _shell(ssh, kind, naa)
    if kind == "esxi":
        return hostside_esxi.rescan(shell, naa)
    return hostside_linux.rescan(shell, naa)


def grow(ssh: HostSsh, kind: HostKind, naa: str, use: LunUse) -> str:
    """Grow what sits on LUN ``naa`` to fill the size this host sees (rescan first). ESXi: the datastore's
    partition to the last usable sector, then the datastore. Linux, only where the filesystem is mounted: the
    PV, the LV onto that PV's free extents (never another PV's), then the filesystem (resize2fs or
    xfs_growfs). Returns a one-line message with the sizes before and after, or saying there was nothing to
    do (a second call) or that the filesystem is not mounted here; on Linux it names the multipath paths that
    were down and left out. Raises ``DeviceRefused`` when a step fails, ``VerificationFailed`` when the
    read-back does not show it grown."""
    shell = _shell(ssh, kind, naa)
    if kind == "esxi":
        return hostside_esxi.grow(shell, naa, use)
    return hostside_linux.grow(shell, naa, use)


def refresh(ssh: HostSsh, kind: HostKind, naa: str, use: LunUse) -> str:
    """On a host other than the one that grew: ESXi reads the datastore's metadata again (``vmkfstools -V``)
    and reports its capacity; Linux has nothing to do and says so. Returns a one-line message. Raises
    ``DeviceRefused`` when the refresh fails or the host does not see the LUN."""
    shell = _shell(ssh, kind, naa)
    if kind == "esxi":
        return hostside_esxi.refresh(shell, naa, use)
    return hostside_linux.refresh(shell, naa, use)
