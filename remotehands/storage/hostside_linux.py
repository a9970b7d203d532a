"""The host side of a LUN expansion on Linux (dm-multipath, LVM, ext4 or xfs), every command that wants root
through ``sudo -n``. The LUN is a multipath map whose WWID is ``3`` and the naa's 32 hex digits; its name,
and so its device ``/dev/mapper/NAME``, is the WWID, or ``mpathN`` with ``user_friendly_names yes`` (RHEL's
default through mpathconf), or multipath.conf's ``alias`` for it. Its paths are the SCSI disks ``multipath
-ll`` lists; only those in state ``active ready running`` are rescanned and compared, as a path that is down
(``failed faulty offline``) can hang a rescan and keeps its old size; those are named in the view and the
messages.

- see: ``multipath -ll WWID`` (is it there, its name from the first line, ``NAME (WWID) dm-N VENDOR,PRODUCT``
  or ``WWID dm-N VENDOR,PRODUCT``, and its paths), ``blockdev --getsize64 /dev/mapper/NAME`` (the map's size
  in bytes), ``findmnt -n -o SOURCE,FSTYPE --mountpoint MOUNT`` (is the filesystem mounted here, from the map
  or its LV) and ``df -P -B1 MOUNT`` (its size; POSIX output keeps a long device name on the line of its
  numbers; only once findmnt has said it is mounted, as df of a bare directory shows the filesystem above it);
- rescan: ``tee /sys/class/scsi_device/H:C:T:L/device/rescan`` with ``1`` on stdin for every live path, then
  ``multipathd resize map NAME`` (``ok``; multipathd finds a map by its name, not by its WWID), then the
  map's and every live path's size (``blockdev``) must agree;
- grow, where the filesystem is mounted: ``pvresize /dev/mapper/NAME`` (it does nothing when the PV already
  fills the device, so it always runs; a change is reported when the PV's extents grew), then ``lvextend -l
  +100%PVS VG/LV /dev/mapper/NAME`` when that PV has free extents (``pvs -o pv_pe_count,pv_pe_alloc_count``),
  which takes the free extents of that PV and of no other PV of the VG, then ``resize2fs DEVICE`` (ext4) or
  ``xfs_growfs -d MOUNT`` (xfs), which find by themselves when there is nothing to do. Sizes from LVM are
  read with ``--units b --nosuffix --noheadings``.

Rescans wait up to ``RESCAN_TIMEOUT``, grows up to ``GROW_TIMEOUT``.
"""

from __future__ import annotations

import logging
import re
import shlex
from dataclasses import dataclass

from remotehands.errors import DeviceRefused
from remotehands.inventory.models import LunUse
from remotehands.storage.base import gib
from remotehands.storage.hostside_shell import (
    GROW_TIMEOUT,
    RESCAN_TIMEOUT,
    HostShell,
    HostView,
    integer,
    said,
)

log = logging.getLogger(__name__)

# "mpatha (36...) dm-2 VENDOR,PRODUCT" (a friendly name or alias), or "36... dm-2 VENDOR,PRODUCT"
_HEAD = re.compile(r"(?P<name>\S+)\s+(?:\((?P<wwid>[^)\s]+)\)\s+)?dm-\d+\b")
# "|- 4:0:0:1 sdc 8:32 failed faulty offline": device-mapper's, the path checker's and the SCSI device's state
_PATH = re.compile(r"(\d+:\d+:\d+:\d+)\s+(sd[a-z]+)\s+\d+:\d+\s+(\S+)\s+(\S+)\s+(\S+)")
_LIVE = ("active", "ready", "running")
_PV_FIELDS = "pv_name,vg_name,dev_size,pv_size,pv_pe_count,pv_pe_alloc_count"


@dataclass(frozen=True)
class _Map:
    name: str  # the WWID, mpathN or an alias: /dev/mapper/NAME, and multipathd's name for it
    paths: list[tuple[str, str]]  # (H:C:T:L, sdX) of the paths that are active ready running
    skipped: list[str]  # "sdc failed faulty offline": the others, neither rescanned nor compared

    @property
    def device(self) -> str:
        return f"/dev/mapper/{self.name}"

    @property
    def note(self) -> str:
        """What the view and messages add about the paths left out; empty when none was."""
        return "".join(f"; path {path}, skipped" for path in self.skipped)


@dataclass(frozen=True)
class _Linux:
    map: _Map
    size: int  # the multipath map's
    source: str | None  # what the mount point is mounted from; None when it is not mounted here
    fstype: str | None
    fs_size: int | None


def wwid(naa: str) -> str:
    return "3" + naa[4:]


def _lv_device(lv: str) -> str:
    """``vg_data/lv_data`` -> ``/dev/mapper/vg_data-lv_data`` (a dash in a name doubled, as device-mapper
    does)."""
    vg, _, name = lv.partition("/")
    return f"/dev/mapper/{vg.replace('-', '--')}-{name.replace('-', '--')}"


def _map(shell: HostShell, naa: str) -> _Map:
    """The map's name and paths; ``DeviceRefused`` when the host has no such multipath map or none of its
    paths is up."""
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
    head = _HEAD.match(text.splitlines()[0])
    if head is None or (head["wwid"] or head["name"]) != wwid(naa):
        raise shell.unreadable(result, f"'NAME ({wwid(naa)}) dm-N' or '{wwid(naa)} dm-N' on its first line")
    paths = _PATH.findall(text)
    if not paths:
        raise shell.unreadable(result, "any path line 'H:C:T:L sdX MAJ:MIN DM CHECKER DEVICE'")
    live = [(hctl, disk) for hctl, disk, *state in paths if tuple(state) == _LIVE]
    skipped = [f"{disk} {' '.join(state)}" for _, disk, *state in paths if tuple(state) != _LIVE]
    if not live:
        raise DeviceRefused(
            f"{shell.name}: no path of multipath map {head['name']} (LUN {naa}) is active ready running: "
            f"{', '.join(skipped)} (read with 'sudo -n {command}')",
            fix="check the host's links to the array ('multipathd show paths', the HBA's port state, the "
            "fabric zoning), then retry the step",
        )
    return _Map(head["name"], live, skipped)


def _size(shell: HostShell, device: str) -> int:
    result = shell.run(f"blockdev --getsize64 {shlex.quote(device)}")
    return integer(shell, result, result.stdout, f"the size of {device} in bytes")


def _read(shell: HostShell, naa: str, use: LunUse) -> _Linux:
    found = _map(shell, naa)
    size = _size(shell, found.device)
    if use.mount is None:
        return _Linux(found, size, None, None, None)
    mount = shlex.quote(use.mount)
    command = f"findmnt -n -o SOURCE,FSTYPE --mountpoint {mount}"
    mounted = shell.run(command, root=False, allow=(0, 1))
    fields = mounted.stdout.split()
    if mounted.exit_status == 1 and not fields:
        return _Linux(found, size, None, None, None)
    if mounted.exit_status != 0 or len(fields) != 2:
        raise shell.unreadable(mounted, "'SOURCE FSTYPE' of the mount point")
    source, fstype = fields
    expected = _lv_device(use.lv) if use.lv else found.device
    if source != expected:
        raise shell.disagrees(
            command,
            f"{use.mount} is mounted from {source}, not from {expected} on LUN {naa}",
            fix="correct the mount or lv of this LUN in the inventory, or check what is mounted there",
        )
    df = shell.run(f"df -P -B1 {mount}", root=False)
    lines = df.stdout.strip().splitlines()
    row = lines[1].split() if len(lines) == 2 else []  # the header, then one line with -P
    if len(row) < 6 or " ".join(row[5:]) != use.mount:
        raise shell.unreadable(df, f"a line for {use.mount}")
    return _Linux(found, size, source, fstype, integer(shell, df, row[1], "the 1-blocks"))


def _view(state: _Linux, use: LunUse) -> HostView:
    device, note = state.map.device, state.map.note
    if use.mount is None:
        where = f"{device} (no filesystem in the inventory{note})"
    elif state.source is None:
        where = f"{use.mount} (not mounted here{note})"
    else:
        where = f"{use.mount} ({state.fstype} on {use.lv or device}{note})"
    return HostView(state.size, state.fs_size, where, state.fstype if state.source is not None else None)


def look(shell: HostShell, naa: str, use: LunUse) -> HostView:
    """What the host sees; ``DeviceRefused`` when it does not see the LUN or none of its paths is up."""
    return _view(_read(shell, naa, use), use)


def rescan(shell: HostShell, naa: str) -> int:
    """Rescan every live path, resize the map; the map's size in bytes afterwards."""
    found = _map(shell, naa)
    for hctl, _ in found.paths:
        shell.run(f"tee /sys/class/scsi_device/{hctl}/device/rescan", stdin=b"1\n", timeout=RESCAN_TIMEOUT)
    command = f"multipathd resize map {shlex.quote(found.name)}"
    result = shell.run(command, allow=(0, 1), timeout=RESCAN_TIMEOUT)
    size = _size(shell, found.device)
    if result.stdout.strip() != "ok":
        raise DeviceRefused(
            f"{shell.name}: 'sudo -n {command}' answered: {said(result)}",
            fix="multipathd resizes a map only when every path shows the same new size: compare "
            "'blockdev --getsize64 /dev/sdX' of its paths and read 'journalctl -u multipathd'",
        )
    for _, disk in found.paths:
        seen = _size(shell, f"/dev/{disk}")
        if seen != size:
            raise shell.disagrees(
                f"blockdev --getsize64 /dev/{disk}",
                f"after the rescan path {disk} shows {gib(seen)} but multipath map {found.name} {gib(size)}",
                fix=f"rescan {disk} again (echo 1 > /sys/block/{disk}/device/rescan), then "
                "multipathd resize map",
            )
    if found.skipped:
        # the pipeline's message says only the size; the operator reads the rest in the log and the view
        log.warning("%s: map %s rescanned without its paths %s", shell.name, found.name, found.skipped)
    return size


def _pv(shell: HostShell, device: str) -> dict[str, str]:
    command = f"pvs --noheadings --units b --nosuffix -o {_PV_FIELDS} {shlex.quote(device)}"
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


def _grow_lvm(shell: HostShell, found: _Map, naa: str, lv: str) -> list[str]:
    """pvresize, then lvextend onto this PV's free extents when it has some; what changed."""
    vg, device = lv.partition("/")[0], found.device
    pv, done = _pv(shell, device), []
    if pv["vg_name"] != vg:
        raise shell.disagrees(
            f"pvs {device}",
            f"the physical volume on LUN {naa} belongs to volume group {pv['vg_name'] or '(none)'}, not {vg}",
            fix="correct the lv of this LUN in the inventory",
        )
    if int(pv["dev_size"]) < int(pv["pv_size"]):  # pvresize would shrink the PV to the device
        raise shell.disagrees(
            f"pvs {device}",
            f"{device} is {gib(int(pv['dev_size']))}, smaller than its PV ({gib(int(pv['pv_size']))})",
            fix="rescan the host (the map may show an old size); never pvresize a PV down to a smaller LUN",
        )
    shell.run(f"pvresize {shlex.quote(device)}", timeout=GROW_TIMEOUT)
    grown = _pv(shell, device)
    if int(grown["pv_pe_count"]) > int(pv["pv_pe_count"]):
        done.append(f"PV {gib(int(pv['pv_size']))} -> {gib(int(grown['pv_size']))}")
    if int(grown["pv_pe_count"]) > int(grown["pv_pe_alloc_count"]):
        lvs = f"lvs --noheadings --units b --nosuffix -o lv_size {shlex.quote(lv)}"
        [old] = _report(shell, lvs, 1)
        shell.run(f"lvextend -l +100%PVS {shlex.quote(lv)} {shlex.quote(device)}", timeout=GROW_TIMEOUT)
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
    note = before.map.note
    if use.mount is None:
        return f"no filesystem of {naa} in the inventory: nothing to grow{note}"
    if before.source is None or before.fs_size is None:
        seen = gib(before.size)
        return f"{use.mount} is not mounted here: nothing to grow on this host (the LUN seen at {seen}{note})"
    done = _grow_lvm(shell, before.map, naa, use.lv) if use.lv else []
    program = "resize2fs" if before.fstype == "ext4" else "xfs_growfs"
    if before.fstype == "ext4":
        tool = shell.run(f"resize2fs {shlex.quote(before.source)}", timeout=GROW_TIMEOUT)
        grew = " is now " in tool.stdout
    elif before.fstype == "xfs":
        tool = shell.run(f"xfs_growfs -d {shlex.quote(use.mount)}", timeout=GROW_TIMEOUT)
        grew = "data blocks changed" in tool.stdout
    else:
        raise DeviceRefused(
            f"{shell.name}: {use.mount} is {before.fstype}; remotehands grows ext4 and xfs only",
            fix="grow it by hand with the filesystem's own tool",
        )
    after = _read(shell, naa, use)
    where = _view(after, use).where
    if (done or grew) and (after.fs_size or 0) <= before.fs_size:
        raise shell.disagrees(
            f"df -P -B1 {use.mount}",
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
