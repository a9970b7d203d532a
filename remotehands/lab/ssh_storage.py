"""What the lab's ESXi and Linux hosts answer about the SAN LUNs mapped to them (``remotehands.lab.san``): the
commands that rescan a grown LUN and grow what sits on it, printing what the real tools print.

ESXi (as root; this module): ``esxcli storage core adapter rescan --all | --adapter vmhbaN``, ``esxcli
storage core device list [-d naa.X]`` (Size in MB), ``esxcli storage filesystem list`` and ``rescan``,
``esxcli storage vmfs extent list``, ``partedUtil getptbl | getUsableSectors | resize`` on
``/vmfs/devices/disks/naa.X``, ``vmkfstools --growfs DEV:P DEV:P`` and ``vmkfstools -V``, as VMware KB
2002461 (growing a VMFS datastore from the command line) uses them. Linux
(``remotehands.lab.ssh_storage_linux`` and ``ssh_storage_lvm``, on the helpers here: the LUNs a host sees, its
block devices): multipath, multipathd, the sysfs rescan through ``tee``, blockdev, the LVM commands,
resize2fs, xfs_growfs, findmnt and df.

A host reads a LUN's new size only when it rescans (``san.LunOnHost``). The host fault ``san_rescan_fails``
makes every rescan on that host fail as the tool reports it. Besides the command line the SSH server logs for
every command, a command that changes something logs what it changed, as an event of the host's command log:
``lun_rescan``, ``multipath_resize``, ``pv_resize``, ``lv_extend``, ``fs_grow``, ``partition_resize``,
``vmfs_grow``, ``vmfs_refresh``.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING

from remotehands.lab.san import GPT_TAIL, MiB, SanLun, vmfs_capacity

if TYPE_CHECKING:
    from remotehands.lab.san import LunOnHost, ScsiPath
    from remotehands.lab.ssh_commands import Exec, Handler

FAULT = "san_rescan_fails"
DISKS = ("/vmfs/devices/disks/", "/dev/disks/")
ADAPTERS = ("vmhba64", "vmhba65")  # each LUN has one path through each
VMFS_GUID = "AA31E02A400F11DB9590000C2911D1B8"
_LOCAL = (  # the host's own boot disk: OSDATA and the two boot banks, as esxcli lists them
    ("6421a3f0-2a1bd3c8-44de-0050569a1b2c", "OSDATA-6421a3f0-2a1bd3c8-44de-0050569a1b2c", "VMFSOS"),
    ("8a6c21d5-0e1b4f7a-bd3c-9e4cc6e3a1f0", "BOOTBANK1", "vfat"),
    ("b7e2c1a4-5f3d2e19-8c4b-1a2b3c4d5e6f", "BOOTBANK2", "vfat"),
)


def table(headers: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    """An esxcli table: a header, a line of dashes per column, columns two spaces apart (``right`` ones
    right-aligned), each as wide as its widest cell."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: list[str], align: bool) -> str:
        padded = [
            c.rjust(w) if align and i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    return [line(headers, False), "  ".join("-" * w for w in widths), *(line(r, True) for r in rows)]


def san_lock(ctx: Exec) -> AbstractContextManager[object]:
    """The SAN's lock (nothing to hold for a lab without a SAN)."""
    san = ctx.lab.san
    return san.lock if san is not None else nullcontext()


def visible(ctx: Exec) -> list[tuple[SanLun, LunOnHost]]:
    """The LUNs mapped to this host, each with what the host has read of it. Call holding ``san_lock``."""
    san = ctx.lab.san
    if san is None:
        return []
    found = []
    for lun in san.luns.values():
        seen = san.on_host(lun, ctx.host.name)
        if seen is not None:
            found.append((lun, seen))
    return found


def _device(ctx: Exec, name: str) -> tuple[SanLun, LunOnHost] | None:
    """The LUN called ``name`` (naa.X, or its path under /vmfs/devices/disks) if this host sees it."""
    for prefix in DISKS:
        name = name.removeprefix(prefix)
    return next(((lun, seen) for lun, seen in visible(ctx) if lun.naa == name), None)


@dataclass
class Device:
    """A block device of a Linux host: a LUN's multipath map, one of its paths, or its LV."""

    lun: SanLun
    seen: LunOnHost
    path: ScsiPath | None = None
    lv: bool = False

    @property
    def size(self) -> int:
        if self.path is not None:
            return self.path.size
        if self.lv and self.lun.fs is not None and self.lun.fs.lvm is not None:
            return self.lun.fs.lvm.lv_size
        return self.seen.size


def device(ctx: Exec, name: str) -> Device | None:
    """The device ``name`` (/dev/mapper/MAP, /dev/dm-N, /dev/sdX, /dev/mapper/VG-LV, /dev/VG/LV) if this
    host has it; a map is /dev/mapper/ under its name only (no WWID link for a map named otherwise). Call
    holding ``san_lock``."""
    bare = name.removeprefix("/dev/mapper/").removeprefix("/dev/")
    for lun, seen in visible(ctx):
        if bare in (seen.name, seen.dm):
            return Device(lun, seen)
        for path in seen.paths:
            if bare == path.name:
                return Device(lun, seen, path)
        lvm = lun.fs.lvm if lun.fs is not None and lun.fs.active_host == ctx.host.name else None
        if lvm is not None and bare in (lvm.dm_name, f"{lvm.vg}/{lvm.lv}"):
            return Device(lun, seen, lv=True)
    return None


def esxcli_storage(ctx: Exec) -> int:
    """``esxcli storage ...``: the namespaces ``core adapter``, ``core device``, ``filesystem`` and ``vmfs
    extent``."""
    words = [a for a in ctx.args if not a.startswith("-")]
    what = " ".join(words[:4])
    if what == "storage core adapter rescan":
        return _adapter_rescan(ctx)
    if what == "storage core device list":
        return _device_list(ctx)
    if " ".join(words[:3]) == "storage filesystem list":
        return _filesystem_list(ctx)
    if " ".join(words[:3]) == "storage filesystem rescan":
        return _vmfs_rescan(ctx)
    if what == "storage vmfs extent list":
        return _extent_list(ctx)
    return ctx.fail(f"Error: Unknown command or namespace {' '.join(ctx.args)}")


def _adapter_rescan(ctx: Exec) -> int:
    adapter = ctx.option("-A", "--adapter")
    if adapter is None and not {"-a", "--all"} & set(ctx.args):
        return ctx.fail("Error: Missing required parameter -A|--adapter or -a|--all")
    if adapter is not None and adapter not in ADAPTERS:
        return ctx.fail(f"Error: Unknown adapter {adapter}")
    if not ctx.root:
        return ctx.fail("Error: Permission denied")
    if FAULT in ctx.host.faults:
        return ctx.fail(f"Error: Unable to rescan adapter {adapter or ADAPTERS[0]}: Timeout")
    changed = []
    with san_lock(ctx):
        for lun, seen in visible(ctx):
            if seen.size != lun.size:
                changed.append({"naa": lun.naa, "size": lun.size})
            seen.size = lun.size
            for path in seen.paths:
                path.size = lun.size
    if changed:
        ctx.lab.log(ctx.host, "lun_rescan", luns=changed)
    return 0


def _device_list(ctx: Exec) -> int:
    wanted = ctx.option("-d", "--device")
    with san_lock(ctx):
        found = [(lun, seen.size, seen.lun_id) for lun, seen in visible(ctx)]
    if wanted is not None:
        found = [f for f in found if f[0].naa == wanted]
        if not found:
            return ctx.fail(f"Error: Unknown device {wanted}")
    for lun, size, lun_id in found:
        ctx.out(
            lun.naa,
            f"   Display Name: LAB Fibre Channel Disk ({lun.naa})",
            "   Has Settable Display Name: true",
            f"   Size: {size // MiB}",
            "   Device Type: Direct-Access",
            "   Multipath Plugin: NMP",
            f"   Devfs Path: /vmfs/devices/disks/{lun.naa}",
            "   Vendor: LAB",
            "   Model: VIRTUAL-LUN",
            "   Revision: 0001",
            "   SCSI Level: 6",
            "   Is Pseudo: false",
            "   Status: on",
            "   Is RDM Capable: true",
            "   Is Local: false",
            "   Is Removable: false",
            "   Is SSD: true",
            "   Is VVOL PE: false",
            "   Is Offline: false",
            "   Is Perennially Reserved: false",
            "   Thin Provisioning Status: yes",
            "   Attached Filters:",
            "   VAAI Status: supported",
            f"   Other UIDs: vml.02000{lun_id:03d}{lun.naa[4:]}4c554e",
            "   Is Shared Clusterwide: true",
            "   Is SAS: false",
            "   Is USB: false",
            "   Is Boot Device: false",
            "   Device Max Queue Depth: 128",
            "   No of outstanding IOs with competing worlds: 32",
            "",
        )
    return 0


def _datastores(ctx: Exec) -> list[tuple[SanLun, int]]:
    """The SAN datastores this host has mounted, with the capacity it last read."""
    with san_lock(ctx):
        return [
            (lun, seen.vmfs_capacity)
            for lun, seen in visible(ctx)
            if lun.vmfs is not None and seen.vmfs_capacity is not None
        ]


def _filesystem_list(ctx: Exec) -> int:
    rows = []
    for lun, capacity in _datastores(ctx):
        vmfs = lun.vmfs
        assert vmfs is not None
        free = max(capacity - vmfs.used, 0)
        rows.append(
            [
                f"/vmfs/volumes/{vmfs.uuid}",
                vmfs.datastore,
                vmfs.uuid,
                "true",
                "VMFS-6",
                str(capacity),
                str(free),
            ]
        )
    for uuid, name, kind in _LOCAL:
        size, free = (34091302912, 32088522752) if kind == "VMFSOS" else (4293591040, 4062183424)
        rows.append([f"/vmfs/volumes/{uuid}", name, uuid, "true", kind, str(size), str(free)])
    headers = ["Mount Point", "Volume Name", "UUID", "Mounted", "Type", "Size", "Free"]
    ctx.out(*table(headers, rows, {3, 5, 6}))
    return 0


def _extent_list(ctx: Exec) -> int:
    rows = []
    for lun, _ in _datastores(ctx):
        vmfs = lun.vmfs
        assert vmfs is not None
        rows.append([vmfs.datastore, vmfs.uuid, "0", lun.naa, str(vmfs.partition)])
    rows.append([_LOCAL[0][1], _LOCAL[0][0], "0", "mpx.vmhba0:C0:T0:L0", "7"])
    headers = ["Volume Name", "VMFS UUID", "Extent Number", "Device Name", "Partition"]
    ctx.out(*table(headers, rows, {2, 4}))
    return 0


def _vmfs_rescan(ctx: Exec) -> int:
    """``vmkfstools -V`` / ``esxcli storage filesystem rescan``: read every datastore's metadata again."""
    if not ctx.root:
        return ctx.fail("Error: Permission denied")
    refreshed = []
    with san_lock(ctx):
        for lun, seen in visible(ctx):
            if lun.vmfs is not None:
                if seen.vmfs_capacity != lun.vmfs.capacity:
                    refreshed.append({"datastore": lun.vmfs.datastore, "capacity": lun.vmfs.capacity})
                seen.vmfs_capacity = lun.vmfs.capacity
    if refreshed:
        ctx.lab.log(ctx.host, "vmfs_refresh", datastores=refreshed)
    return 0


# -- partedUtil and vmkfstools -------------------------------------------------------------------------------


def _parted_util(ctx: Exec) -> int:
    usage = (
        "Usage: partedUtil getptbl|getUsableSectors <diskName> | resize <diskName> <partNum> <start> <end>"
    )
    if len(ctx.args) < 2 or ctx.args[0] not in ("getptbl", "get", "getUsableSectors", "resize"):
        return ctx.fail(usage, 255)
    disk = ctx.args[1]
    if not ctx.root:
        return ctx.fail(f"Error: Could not stat device {disk} - Permission denied.", 255)
    with san_lock(ctx):
        found = _device(ctx, disk) if disk.startswith(DISKS) else None
        if found is None:
            return ctx.fail(f"Error: Could not stat device {disk} - No such file or directory.", 255)
        lun, seen = found
        total = seen.size // 512
        vmfs = lun.vmfs
        if ctx.args[0] == "getUsableSectors":
            ctx.out(f"34 {total - GPT_TAIL}")
            return 0
        if ctx.args[0] != "resize":
            if vmfs is not None and vmfs.gpt_sectors < total:
                alternate = vmfs.gpt_sectors - 1
                extra = total - vmfs.gpt_sectors
                ctx.write_err(
                    "Error: The backup GPT table is not at the end of the disk, as it should be.  This might "
                    "mean that another operating system believes the disk is smaller.  Fix, by moving the "
                    "backup to the end (and removing the old backup)?\n"
                    f"Warning: Not all of the space available to {disk} appears to be used, you can fix the "
                    f"GPT to use all of the space (an extra {extra} blocks) or continue with the current "
                    "setting? This will also fix the last usable sector as per the new size. "
                    f"diskSize ({total}) AlternateLBA ({alternate}) LastUsableLBA ({alternate - 33})\n"
                )
            ctx.out("gpt" if vmfs is not None else "unknown", f"{total // (255 * 63)} 255 63 {total}")
            if vmfs is not None:
                ctx.out(f"{vmfs.partition} {vmfs.start} {vmfs.end} {VMFS_GUID} vmfs 0")
            return 0
        numbers = ctx.args[2:]
        if len(numbers) != 3 or not all(n.isdigit() for n in numbers):
            return ctx.fail(usage, 255)
        part, start, end = (int(n) for n in numbers)
        if vmfs is None or part != vmfs.partition:
            return ctx.fail(f"Error: Partition {part} does not exist on {disk}.", 255)
        if end > total - GPT_TAIL:
            return ctx.fail("Error: Can't have a partition outside the disk!", 255)
        if start != vmfs.start or end < vmfs.end:
            return ctx.fail("Error: Unable to satisfy all constraints on the partition.", 255)
        vmfs.end, vmfs.gpt_sectors = end, total  # the GPT is written again, its backup at the disk's end
    ctx.lab.log(ctx.host, "partition_resize", naa=lun.naa, partition=part, end=end)
    return 0


def _vmkfstools(ctx: Exec) -> int:
    args = ctx.args
    if args in (["-V"], ["--rescanvmfs"]):
        return _vmfs_rescan(ctx)
    if len(args) != 3 or args[0] not in ("-G", "--growfs"):
        return ctx.fail("Usage: vmkfstools -V | --growfs <device:partition> <device:partition>")
    if not ctx.root:
        return ctx.fail("Error: Permission denied")
    head, _, part = args[1].rpartition(":")
    with san_lock(ctx):
        found = _device(ctx, head) if head.startswith(DISKS) else None
        vmfs = found[0].vmfs if found is not None else None
        if found is None or vmfs is None or args[2] != args[1] or part != str(vmfs.partition):
            return ctx.fail(
                f"Error: Failed to get info from head extent {args[1]}: No such file or directory"
            )
        lun, seen = found
        end = min(vmfs.end, seen.size // 512 - 1)  # VMFS cannot use what this host does not see of the LUN
        capacity = vmfs_capacity(vmfs.start, end)
        grown = capacity > vmfs.capacity
        if grown:
            vmfs.capacity = capacity
        seen.vmfs_capacity = vmfs.capacity
    if grown:
        ctx.lab.log(ctx.host, "vmfs_grow", naa=lun.naa, datastore=vmfs.datastore, capacity=capacity)
    return 0


ESXI_STORAGE: dict[str, Handler] = {"partedUtil": _parted_util, "vmkfstools": _vmkfstools}
