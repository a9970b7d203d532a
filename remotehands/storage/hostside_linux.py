"""The host side of a LUN expansion on Linux (dm-multipath, LVM, ext4 or xfs), every command that wants root
through ``sudo -n``. The LUN is the multipath map ``/dev/mapper/WWID`` (WWID: ``3`` and the naa's 32 hex
digits), its paths the SCSI disks ``multipath -ll`` lists.

- see: ``multipath -ll WWID`` (is it there, and its paths), ``blockdev --getsize64 /dev/mapper/WWID`` (the
  map's size in bytes), ``findmnt -n -o SOURCE,FSTYPE --mountpoint MOUNT`` (is the filesystem mounted here,
  from the LUN or its LV) and ``df -B1 MOUNT`` (its size; only once findmnt has said it is mounted, as df
  of a bare directory shows the filesystem above it);
- rescan: ``tee /sys/class/scsi_device/H:C:T:L/device/rescan`` with ``1`` on stdin for every path, then
  ``multipathd resize map WWID`` (``ok``), then the map's and every path's size (``blockdev``) must agree;
- grow, where the filesystem is mounted: ``pvs``, ``pvresize /dev/mapper/WWID`` when the device holds more
  extents than the PV, ``vgs``/``lvs``, ``lvextend -l +100%FREE VG/LV`` when the VG has free extents, then
  ``resize2fs DEVICE`` (ext4) or ``xfs_growfs -d MOUNT`` (xfs), which find by themselves when there is
  nothing to do. Sizes from LVM are read with ``--units b --nosuffix --noheadings``.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from remotehands.errors import DeviceRefused
from remotehands.inventory.models import LunUse
from remotehands.storage.base import gib
from remotehands.storage.hostside_shell import HostShell, HostView, integer, said

_PATH = re.compile(r"(\d+:\d+:\d+:\d+)\s+(sd[a-z]+)\s+\d+:\d+")
_PV_FIELDS = "pv_name,vg_name,dev_size,pv_size,pe_start,pv_pe_count,vg_extent_size"


@dataclass(frozen=True)
class _Linux:
    paths: list[tuple[str, str]]  # (H:C:T:L, sdX)
    size: int  # the multipath map's
    source: str | None  # what the mount point is mounted from; None when it is not mounted here
    fstype: str | None
    fs_size: int | None


def wwid(naa: str) -> str:
    return "3" + naa[4:]


def _mapper(naa: str) -> str:
    return f"/dev/mapper/{wwid(naa)}"


def _lv_device(lv: str) -> str:
    """``vg_data/lv_data`` -> ``/dev/mapper/vg_data-lv_data`` (a dash in a name doubled, as device-mapper
    does)."""
    vg, _, name = lv.partition("/")
    return f"/dev/mapper/{vg.replace('-', '--')}-{name.replace('-', '--')}"


def _paths(shell: HostShell, naa: str) -> list[tuple[str, str]]:
    """The map's paths; ``DeviceRefused`` when the host has no such multipath map."""
    command = f"multipath -ll {wwid(naa)}"
    result = shell.run(command, allow=(0, 1))
    text = result.stdout.strip()
    if not text or result.exit_status != 0:
        if result.exit_status == 0 or not result.stderr.strip():
            raise DeviceRefused(
                f"{shell.name} does not see LUN {naa}: 'sudo -n {command}' lists no multipath map "
                f"{wwid(naa)}",
                fix="map the LUN to this host on the array (initiator group / host group), rescan the SCSI "
                "hosts (rescan-scsi-bus.sh) and check multipath.conf's blacklist; or correct the hosts of "
                "this LUN in the inventory",
            )
        shell.run(command)  # raises with what it said
    if wwid(naa) not in text.splitlines()[0]:
        raise shell.unreadable(result, f"map {wwid(naa)} on its first line")
    paths = _PATH.findall(text)
    if not paths:
        raise shell.unreadable(result, "any path line 'H:C:T:L sdX MAJ:MIN'")
    return paths


def _size(shell: HostShell, device: str) -> int:
    result = shell.run(f"blockdev --getsize64 {device}")
    return integer(shell, result, result.stdout, f"the size of {device} in bytes")


def _read(shell: HostShell, naa: str, use: LunUse) -> _Linux:
    paths = _paths(shell, naa)
    size = _size(shell, _mapper(naa))
    if use.mount is None:
        return _Linux(paths, size, None, None, None)
    mount = shlex.quote(use.mount)
    command = f"findmnt -n -o SOURCE,FSTYPE --mountpoint {mount}"
    found = shell.run(command, root=False, allow=(0, 1))
    fields = found.stdout.split()
    if found.exit_status == 1 and not fields:
        return _Linux(paths, size, None, None, None)
    if found.exit_status != 0 or len(fields) != 2:
        raise shell.unreadable(found, "'SOURCE FSTYPE' of the mount point")
    source, fstype = fields
    expected = _lv_device(use.lv) if use.lv else _mapper(naa)
    if source != expected:
        raise shell.disagrees(
            command,
            f"{use.mount} is mounted from {source}, not from {expected} on LUN {naa}",
            fix="correct the mount or lv of this LUN in the inventory, or check what is mounted there",
        )
    df = shell.run(f"df -B1 {mount}", root=False)
    last = df.stdout.strip().splitlines()[-1].split() if df.stdout.strip() else []
    if len(last) < 6 or " ".join(last[5:]) != use.mount:
        raise shell.unreadable(df, f"a line for {use.mount}")
    return _Linux(paths, size, source, fstype, integer(shell, df, last[1], "the 1B-blocks"))


def _view(state: _Linux, naa: str, use: LunUse) -> HostView:
    if use.mount is None:
        where = f"{_mapper(naa)} (no filesystem in the inventory)"
    elif state.source is None:
        where = f"{use.mount} (not mounted here)"
    else:
        where = f"{use.mount} ({state.fstype} on {use.lv or _mapper(naa)})"
    return HostView(state.size, state.fs_size, where)


def look(shell: HostShell, naa: str, use: LunUse) -> HostView:
    """What the host sees; ``DeviceRefused`` when it does not see the LUN."""
    return _view(_read(shell, naa, use), naa, use)


def rescan(shell: HostShell, naa: str) -> int:
    """Rescan every path, resize the map; the map's size in bytes afterwards."""
    paths = _paths(shell, naa)
    for hctl, _ in paths:
        shell.run(f"tee /sys/class/scsi_device/{hctl}/device/rescan", stdin=b"1\n")
    command = f"multipathd resize map {wwid(naa)}"
    result = shell.run(command, allow=(0, 1))
    size = _size(shell, _mapper(naa))
    if result.stdout.strip() != "ok":
        raise DeviceRefused(
            f"{shell.name}: 'sudo -n {command}' answered: {said(result)}",
            fix="multipathd resizes a map only when every path shows the same new size: compare "
            "'blockdev --getsize64 /dev/sdX' of its paths and read 'journalctl -u multipathd'",
        )
    for _, disk in paths:
        seen = _size(shell, f"/dev/{disk}")
        if seen != size:
            raise shell.disagrees(
                f"blockdev --getsize64 /dev/{disk}",
                f"after the rescan path {disk} shows {gib(seen)} but multipath map {wwid(naa)} {gib(size)}",
                fix=f"rescan {disk} again (echo 1 > /sys/block/{disk}/device/rescan), then "
                "multipathd resize map",
            )
    return size


def _pv(shell: HostShell, naa: str) -> dict[str, str]:
    command = f"pvs --noheadings --units b --nosuffix -o {_PV_FIELDS} {_mapper(naa)}"
    result = shell.run(command)
    values = result.stdout.split()
    names = _PV_FIELDS.split(",")
    if len(values) != len(names) or not all(v.isdigit() for v in values[2:]):
        raise shell.unreadable(result, f"one line of {', '.join(names)}")
    return dict(zip(names, values, strict=True))


def _report(shell: HostShell, command: str, count: int) -> list[int]:
    result = shell.run(command)
    values = result.stdout.split()
    if len(values) != count:
        raise shell.unreadable(result, f"{count} numbers")
    return [integer(shell, result, v, "a number") for v in values]


def _grow_lvm(shell: HostShell, naa: str, lv: str) -> list[str]:
    """pvresize and lvextend, each only when it has something to give; what changed."""
    vg = lv.partition("/")[0]
    pv, done = _pv(shell, naa), []
    if pv["vg_name"] != vg:
        raise shell.disagrees(
            f"pvs {_mapper(naa)}",
            f"the physical volume on LUN {naa} belongs to volume group {pv['vg_name'] or '(none)'}, not {vg}",
            fix="correct the lv of this LUN in the inventory",
        )
    room = (int(pv["dev_size"]) - int(pv["pe_start"])) // int(pv["vg_extent_size"])
    if room > int(pv["pv_pe_count"]):
        shell.run(f"pvresize {_mapper(naa)}")
        grown = _pv(shell, naa)
        if int(grown["pv_pe_count"]) <= int(pv["pv_pe_count"]):
            raise shell.disagrees(
                f"pvs {_mapper(naa)}",
                f"after pvresize the PV still holds {grown['pv_pe_count']} extents",
                fix="check that the multipath map shows the new size (blockdev --getsize64), then pvresize "
                "again",
            )
        done.append(f"PV {gib(int(pv['pv_size']))} -> {gib(int(grown['pv_size']))}")
    lvs = f"lvs --noheadings --units b --nosuffix -o lv_size {shlex.quote(lv)}"
    [free] = _report(shell, f"vgs --noheadings --units b --nosuffix -o vg_free_count {shlex.quote(vg)}", 1)
    if free:
        [old] = _report(shell, lvs, 1)
        shell.run(f"lvextend -l +100%FREE {shlex.quote(lv)}")
        [new] = _report(shell, lvs, 1)
        if new <= old:
            raise shell.disagrees(
                lvs, f"after lvextend LV {lv} is still {gib(new)}", fix="run lvextend by hand"
            )
        done.append(f"LV {gib(old)} -> {gib(new)}")
    return done


def grow(shell: HostShell, naa: str, use: LunUse) -> str:
    """Grow the PV, the LV and the filesystem where it is mounted; elsewhere nothing. A message."""
    before = _read(shell, naa, use)
    if use.mount is None:
        return f"no filesystem of {naa} in the inventory: nothing to grow"
    if before.source is None or before.fs_size is None:
        seen = gib(before.size)
        return f"{use.mount} is not mounted here: nothing to grow on this host (the LUN seen at {seen})"
    done = _grow_lvm(shell, naa, use.lv) if use.lv else []
    program = "resize2fs" if before.fstype == "ext4" else "xfs_growfs"
    if before.fstype == "ext4":
        tool = shell.run(f"resize2fs {before.source}")
        grew = " is now " in tool.stdout
    elif before.fstype == "xfs":
        tool = shell.run(f"xfs_growfs -d {shlex.quote(use.mount)}")
        grew = "data blocks changed" in tool.stdout
    else:
        raise DeviceRefused(
            f"{shell.name}: {use.mount} is {before.fstype}; remotehands grows ext4 and xfs only",
            fix="grow it by hand with the filesystem's own tool",
        )
    after = _read(shell, naa, use)
    where = _view(after, naa, use).where
    if (done or grew) and (after.fs_size or 0) <= before.fs_size:
        raise shell.disagrees(
            f"df -B1 {use.mount}",
            f"{where} shows {gib(after.fs_size or 0)} after '{tool.command}', "
            f"not more than {gib(before.fs_size)}",
            fix=f"run '{tool.command}' by hand and read what it says",
        )
    if not (done or grew):
        size, seen = gib(before.fs_size), gib(before.size)
        return f"{where} already fills the LUN ({size}, the LUN seen at {seen}): nothing to grow"
    steps = "; ".join([*done, f"{before.fstype} grown by {program}"])
    return f"{where} grown from {gib(before.fs_size)} to {gib(after.fs_size or 0)} ({steps})"


def refresh(shell: HostShell, naa: str, use: LunUse) -> str:
    """Nothing: a Linux host reads the filesystem where it is mounted, and the rescan resized the map."""
    return (
        "nothing to refresh on Linux: the rescan resized the multipath map, the filesystem is grown where "
        "it is mounted"
    )
