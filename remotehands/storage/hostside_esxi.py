"""The host side of a LUN expansion on ESXi, as VMware KB 2002461 ("Growing a VMFS datastore from the command
line") does it, run as root:

- see: ``esxcli storage core device list -d NAA`` (is the device there), ``partedUtil getptbl
  /vmfs/devices/disks/NAA`` (its size in sectors as this host last read it, and the partition table),
  ``esxcli storage vmfs extent list`` (which datastore is on it) and ``esxcli storage filesystem list`` (the
  datastore's capacity as this host last read it);
- rescan: ``esxcli storage core adapter rescan --all``;
- grow (one host): ``partedUtil getUsableSectors``, ``partedUtil resize DISK P START LAST`` when the
  partition ends before the last usable sector, then ``vmkfstools --growfs DISK:P DISK:P`` when the partition
  was resized or the datastore is still smaller than it (a grow that stopped between the two);
- refresh (the other hosts): ``vmkfstools -V``, which reads every VMFS volume's metadata again.

partedUtil prints a warning about the backup GPT on stderr for a grown LUN; the resize moves it.
"""

from __future__ import annotations

from dataclasses import dataclass

from remotehands.errors import DeviceRefused
from remotehands.inventory.models import LunUse
from remotehands.storage.base import gib
from remotehands.storage.hostside_shell import (
    GROW_TIMEOUT,
    RESCAN_TIMEOUT,
    HostShell,
    HostView,
    esxcli_rows,
    integer,
    said,
)

SECTOR = 512
MiB = 1024**2
# A datastore whose capacity is this much smaller than its partition has not been grown into it. VMFS counts
# its capacity in whole 1 MiB file blocks, so a datastore that fills its partition is under 1 MiB short of it
# (the lab's ``vmfs_capacity``; the GPT's own sectors lie outside the partition). A LUN grows by whole MiB,
# the smallest grow that matters is a few MiB, and a grow that stopped after the partition resize must
# still be finished: 16 MiB keeps clear of both.
_UNGROWN = 16 * MiB


@dataclass(frozen=True)
class _Partition:
    number: int
    start: int
    end: int


@dataclass(frozen=True)
class _Esxi:
    sectors: int  # the device's size as this host last read it
    partitions: list[_Partition]
    datastore: str | None
    uuid: str | None
    partition: int | None  # the datastore's partition on this device
    capacity: int | None  # as this host last read it; None when the datastore is not mounted here


def _disk(naa: str) -> str:
    return f"/vmfs/devices/disks/{naa}"


def _present(shell: HostShell, naa: str) -> None:
    """``DeviceRefused`` unless the host has the device."""
    command = f"esxcli storage core device list -d {naa}"
    result = shell.run(command, allow=(0, 1))
    if result.exit_status != 0 or not result.stdout.startswith(naa):
        raise _not_seen(shell, naa, command, said(result))


def _not_seen(shell: HostShell, naa: str, command: str, text: str) -> DeviceRefused:
    return DeviceRefused(
        f"{shell.name} does not see LUN {naa}: '{command}' says: {text}",
        fix="map the LUN to this host on the array (initiator group / host group), then rescan; or correct "
        "the hosts of this LUN in the inventory",
    )


def _ptbl(shell: HostShell, naa: str) -> tuple[int, list[_Partition]]:
    """``partedUtil getptbl``: the disk's sectors and its partitions (``NUM START END GUID TYPE ATTR``)."""
    result = shell.run(f"partedUtil getptbl {_disk(naa)}")
    lines = result.stdout.split("\n")
    geometry = lines[1].split() if len(lines) > 1 else []
    if len(geometry) != 4:
        raise shell.unreadable(result, "the disk geometry line 'C H S SECTORS'")
    sectors = integer(shell, result, geometry[3], "the disk's sectors")
    partitions = []
    for line in lines[2:]:
        fields = line.split()
        if len(fields) >= 3 and all(f.isdigit() for f in fields[:3]):
            partitions.append(_Partition(int(fields[0]), int(fields[1]), int(fields[2])))
    return sectors, partitions


def _read(shell: HostShell, naa: str, use: LunUse) -> _Esxi:
    _present(shell, naa)
    sectors, partitions = _ptbl(shell, naa)
    extents = shell.run("esxcli storage vmfs extent list")
    rows = [r for r in esxcli_rows(shell, extents) if r.get("Device Name") == naa]
    if not rows:
        return _Esxi(sectors, partitions, None, None, None, None)
    name, uuid, part = (
        rows[0].get("Volume Name", ""),
        rows[0].get("VMFS UUID", ""),
        rows[0].get("Partition", ""),
    )
    if use.datastore is not None and name != use.datastore:
        raise shell.disagrees(
            "esxcli storage vmfs extent list",
            f"LUN {naa} holds datastore {name}, not {use.datastore} as the inventory says",
            fix="correct the datastore of this LUN in the inventory, or check the LUN's name on the array",
        )
    listed = shell.run("esxcli storage filesystem list")
    row = next((r for r in esxcli_rows(shell, listed) if r.get("UUID") == uuid), None)
    capacity = integer(shell, listed, row.get("Size", ""), "the datastore's Size") if row else None
    return _Esxi(sectors, partitions, name, uuid, integer(shell, extents, part, "the Partition"), capacity)


def _view(state: _Esxi, naa: str, use: LunUse) -> HostView:
    if state.datastore is not None:
        where = f"datastore {state.datastore}"
    elif use.datastore is not None:
        where = f"datastore {use.datastore} (not on this host)"
    else:
        where = f"device {naa} (no datastore)"
    return HostView(
        state.sectors * SECTOR, state.capacity, where, "vmfs" if state.capacity is not None else None
    )


def look(shell: HostShell, naa: str, use: LunUse) -> HostView:
    """What the host sees; ``DeviceRefused`` when it does not see the LUN."""
    return _view(_read(shell, naa, use), naa, use)


def rescan(shell: HostShell, naa: str) -> int:
    """Rescan every adapter; the device's size in bytes afterwards."""
    shell.run("esxcli storage core adapter rescan --all", timeout=RESCAN_TIMEOUT)
    _present(shell, naa)
    return _ptbl(shell, naa)[0] * SECTOR


def grow(shell: HostShell, naa: str, use: LunUse) -> str:
    """Grow the datastore's partition to the last usable sector and the datastore into it; a message."""
    before = _read(shell, naa, use)
    if before.datastore is None or before.partition is None:
        if use.datastore is None:
            return f"no datastore on {naa} in the inventory: nothing to grow"
        raise _not_seen(shell, naa, "esxcli storage vmfs extent list", f"no extent of {use.datastore} on it")
    part = next((p for p in before.partitions if p.number == before.partition), None)
    if part is None:
        raise shell.disagrees(
            f"partedUtil getptbl {_disk(naa)}",
            f"datastore {before.datastore} is on partition {before.partition}, which the table does not have",
            fix="look at the partition table by hand before growing anything",
        )
    usable = shell.run(f"partedUtil getUsableSectors {_disk(naa)}")
    words = usable.stdout.split()
    last = integer(shell, usable, words[1] if len(words) == 2 else "", "'FIRST LAST' usable sectors")
    resized = part.end < last
    if resized:
        command = f"partedUtil resize {_disk(naa)} {part.number} {part.start} {last}"
        shell.run(command, timeout=GROW_TIMEOUT)
        end = next((p.end for p in _ptbl(shell, naa)[1] if p.number == part.number), None)
        if end != last:
            raise shell.disagrees(
                f"partedUtil getptbl {_disk(naa)}",
                f"after '{command}' partition {part.number} ends at sector {end}, not {last}",
                fix="look at the partition table by hand; do not run vmkfstools --growfs before it is right",
            )
    partition_bytes = (max(part.end, last) - part.start + 1) * SECTOR
    capacity = before.capacity or 0
    if resized or capacity < partition_bytes - _UNGROWN:
        growfs = f"vmkfstools --growfs {_disk(naa)}:{part.number} {_disk(naa)}:{part.number}"
        shell.run(growfs, timeout=GROW_TIMEOUT)
        after = _read(shell, naa, use)
        if not resized and after.capacity == capacity:
            # only the margin sent us here: this VMFS keeps more than _UNGROWN for itself, and growfs,
            # which succeeded, found nothing to add
            return (
                f"datastore {before.datastore} already fills {naa} ({gib(capacity)}, the LUN seen at "
                f"{gib(before.sectors * SECTOR)}; vmkfstools --growfs found nothing to add): nothing to grow"
            )
        if after.capacity is None or after.capacity <= capacity:
            raise shell.disagrees(
                "esxcli storage filesystem list",
                f"after '{growfs}' datastore {before.datastore} shows {gib(after.capacity or 0)}, "
                f"still not more than {gib(capacity)}",
                fix="check the datastore in the vSphere client (Increase Datastore Capacity) and "
                "/var/log/vmkernel.log",
            )
        return (
            f"datastore {before.datastore} grown from {gib(capacity)} to {gib(after.capacity)} "
            f"(partition {part.number} of {naa} now ends at sector {last}; the LUN is seen at "
            f"{gib(before.sectors * SECTOR)})"
        )
    return (
        f"datastore {before.datastore} already fills {naa} ({gib(capacity)}, the LUN seen at "
        f"{gib(before.sectors * SECTOR)}): nothing to grow"
    )


def refresh(shell: HostShell, naa: str, use: LunUse) -> str:
    """Read the datastore's metadata again (``vmkfstools -V``) so this host sees it grown; a message."""
    shell.run("vmkfstools -V", timeout=RESCAN_TIMEOUT)
    view = look(shell, naa, use)
    if view.fs_size is None:
        return (
            f"{view.where} after vmkfstools -V: nothing to refresh (the LUN seen at {gib(view.device_size)})"
        )
    seen = gib(view.device_size)
    return f"{view.where} shows {gib(view.fs_size)} after vmkfstools -V (the LUN seen at {seen})"
