"""What the lab's Linux hosts answer about their SAN LUNs (``remotehands.lab.san``), as multipath-tools,
the kernel's sysfs, util-linux, LVM2 (``ssh_storage_lvm``), e2fsprogs, xfsprogs and coreutils print it.

``multipath -ll [MAP]`` (MAP: the map's name, WWID or dm-N; first line ``NAME (WWID) dm-N VENDOR,PRODUCT`` for
a map named mpathN or by an alias, ``WWID dm-N ...`` for one named by its WWID; a path that is down ``failed
faulty offline``); ``multipathd resize map MAP`` (MAP: the name or dm-N, as multipathd finds maps; ``ok``, or
``fail`` unless every live path shows one new size); ``tee /sys/class/scsi_device/H:C:T:L/device/rescan``
(or ``/sys/block/sdX/device/rescan``): a write rescans that path, or fails for a path that is down;
``blockdev --getsize64 DEV``; ``resize2fs DEV``, ``xfs_growfs [-d] MOUNT``; ``findmnt`` and ``df [-P] [-B1]``
over the host's mounts (its own ``/`` on /dev/sda2 and those from LUNs). Everything but findmnt and df wants
root (``sudo``). The LV of an active/passive pair is active, and its device present, only on the host it is
mounted on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from remotehands.lab.san import FS_BLOCK, SanLun
from remotehands.lab.ssh_storage import FAULT, device, san_lock, visible
from remotehands.lab.ssh_storage_lvm import LVM

if TYPE_CHECKING:
    from remotehands.lab.san import LunOnHost, ScsiPath
    from remotehands.lab.ssh_commands import Exec, Handler

E2FSPROGS = "resize2fs 1.47.0 (5-Feb-2023)"
ROOT_FS = ("/dev/sda2", "/", "ext4", 105089261568, 13421772800)  # source, target, type, size, used


@dataclass
class Mount:
    source: str
    target: str
    fstype: str
    size: int
    used: int
    lun: SanLun | None = None


def mounts(ctx: Exec) -> list[Mount]:
    """The host's mounts: its root filesystem, then what it mounts from LUNs. Call holding ``san_lock``."""
    found = [Mount(*ROOT_FS)]
    for lun, seen in visible(ctx):
        fs = lun.fs
        if fs is not None and fs.active_host == ctx.host.name:
            source = f"/dev/mapper/{fs.lvm.dm_name if fs.lvm else seen.name}"
            found.append(Mount(source, fs.mount, fs.fstype, fs.size, fs.used, lun))
    return found


# -- multipath and the sysfs rescan --------------------------------------------------------------------------


def _human(size: int) -> str:
    """multipath's size: KiB first, then the largest unit under 1024, one decimal under 10."""
    value, units = size / 1024, "KMGTP"
    unit = 0
    while value >= 1024 and unit < len(units) - 1:
        value, unit = value / 1024, unit + 1
    return f"{value:.{int(value < 10)}f}{units[unit]}"


def _multipath(ctx: Exec) -> int:
    if not {"-ll", "-l"} & set(ctx.args):
        return ctx.fail("multipath: only -l and -ll are simulated")
    if not ctx.root:
        return ctx.fail("need to be root")
    wanted = [a for a in ctx.args if not a.startswith("-")]
    lines: list[str] = []
    with san_lock(ctx):
        maps = [
            (lun, seen)
            for lun, seen in visible(ctx)
            if not wanted or _is_map(seen, wanted[0]) or wanted[0] == lun.wwid
        ]
        for lun, seen in maps:
            first, second = seen.paths
            named = seen.name if seen.name == lun.wwid else f"{seen.name} ({lun.wwid})"
            # a group whose path is down has priority 0, and the active one is the other
            active = first.failed and not second.failed
            lines += [
                f"{named} {seen.dm} LAB,VIRTUAL-LUN",
                f"size={_human(seen.size)} features='1 queue_if_no_path' hwhandler='1 alua' wp=rw",
                f"|-+- policy='service-time 0' prio={0 if first.failed else 50} {_status(not active)}",
                f"| `- {first.hctl} {first.name} {first.devno} {_state(first)}",
                f"`-+- policy='service-time 0' prio={0 if second.failed else 10} {_status(active)}",
                f"  `- {second.hctl} {second.name} {second.devno} {_state(second)}",
            ]
    if wanted and not lines:
        return 1  # a map this host does not have: multipath prints nothing
    ctx.out(*lines)
    return 0


def _status(active: bool) -> str:
    return f"status={'active' if active else 'enabled'}"


def _state(path: ScsiPath) -> str:
    """The path's device-mapper, checker and SCSI device states."""
    return "failed faulty offline" if path.failed else "active ready running"


def _is_map(seen: LunOnHost, name: str) -> bool:
    """Whether ``name`` is the map's name or its dm-N, how multipathd looks a map up."""
    return name.removeprefix("/dev/mapper/").removeprefix("/dev/") in (seen.name, seen.dm)


def _multipathd(ctx: Exec) -> int:
    words = ctx.args[1:] if ctx.args[:1] == ["-k"] else ctx.args
    words = " ".join(words).split()
    if len(words) != 3 or words[0] != "resize" or words[1] not in ("map", "multipath"):
        return ctx.fail("multipathd: only 'resize map MAP' is simulated")
    if not ctx.root:
        ctx.out("permission deny: need to be root")
        return 1
    with san_lock(ctx):
        found = next(((lun, seen) for lun, seen in visible(ctx) if _is_map(seen, words[2])), None)
        # a path that is down keeps its old size; multipathd reads the size of the paths that are up
        sizes = {p.size for p in found[1].paths if not p.failed} if found is not None else set()
        if found is None or len(sizes) != 1:
            ctx.out("fail")  # multipathd logs why (no such map; paths of different sizes) to its journal
            return 1
        lun, seen = found
        old, seen.size = seen.size, sizes.pop()
    if seen.size != old:
        ctx.lab.log(ctx.host, "multipath_resize", naa=lun.naa, size=seen.size)
    ctx.out("ok")
    return 0


def _rescan_target(ctx: Exec, file: str) -> tuple[SanLun, ScsiPath] | None:
    """The path whose sysfs rescan file is ``file``. Call holding ``san_lock``."""
    for lun, seen in visible(ctx):
        for path in seen.paths:
            if file in (
                f"/sys/class/scsi_device/{path.hctl}/device/rescan",
                f"/sys/block/{path.name}/device/rescan",
            ):
                return lun, path
    return None


def _tee(ctx: Exec) -> int:
    files = [a for a in ctx.args if not a.startswith("-")]
    data = []
    while (line := ctx.read_line(5.0)) is not None:
        data.append(line)
    ctx.out(*data)
    code, rescanned = 0, []
    for file in files:
        with san_lock(ctx):
            found = _rescan_target(ctx, file)
            down = found is not None and found[1].failed
            if found is not None and ctx.root and FAULT not in ctx.host.faults and not down:
                lun, path = found
                path.size = lun.size
                rescanned.append({"naa": lun.naa, "path": path.name, "size": lun.size})
        if found is None:
            code = ctx.fail(f"tee: {file}: No such file or directory")
        elif not ctx.root:
            code = ctx.fail(f"tee: {file}: Permission denied")
        elif FAULT in ctx.host.faults or down:
            code = ctx.fail(f"tee: {file}: No such device")
    for event in rescanned:
        ctx.lab.log(ctx.host, "lun_rescan", **event)
    return code


def _blockdev(ctx: Exec) -> int:
    if len(ctx.args) != 2 or ctx.args[0] not in ("--getsize64", "--getsz"):
        return ctx.fail("Usage: blockdev --getsize64 | --getsz <device>")
    name = ctx.args[1]
    with san_lock(ctx):
        found = device(ctx, name)
        size = found.size if found is not None else None
        down = found is not None and found.path is not None and found.path.failed
    if size is None:
        return ctx.fail(f"blockdev: cannot open {name}: No such file or directory")
    if not ctx.root:
        return ctx.fail(f"blockdev: cannot open {name}: Permission denied")
    if down:
        return ctx.fail(f"blockdev: cannot open {name}: No such device or address")
    ctx.out(str(size if ctx.args[0] == "--getsize64" else size // 512))
    return 0


# -- filesystems ---------------------------------------------------------------------------------------------


def _resize2fs(ctx: Exec) -> int:
    ctx.write_err(E2FSPROGS + "\n")
    names = [a for a in ctx.args if not a.startswith("-")]
    if len(names) != 1:
        return ctx.fail("Usage: resize2fs [-d debug_flags] [-f] [-F] [-M] [-P] [-p] device [-b|-s|new_size]")
    name = names[0]
    with san_lock(ctx):
        found = device(ctx, name)
        if found is None:
            return ctx.fail(
                f"resize2fs: No such file or directory while trying to open {name}\n"
                "Couldn't find valid filesystem superblock."
            )
        if not ctx.root:
            return ctx.fail(f"open: Permission denied while opening {name}")
        fs = found.lun.fs
        # the filesystem is on the LV when there is one, else on the multipath map
        if fs is None or fs.fstype != "ext4" or found.path is not None or found.lv != (fs.lvm is not None):
            return ctx.fail(
                f"resize2fs: Bad magic number in super-block while trying to open {name}\n"
                "Couldn't find valid filesystem superblock."
            )
        if fs.active_host != ctx.host.name:
            return ctx.fail(f"Please run 'e2fsck -f {name}' first.\n")
        old, new = fs.blocks, found.size // FS_BLOCK
        if new < old:
            return ctx.fail("resize2fs: On-line shrinking not supported")
        fs.blocks = new
    if new == old:
        ctx.write_err(f"The filesystem is already {old} (4k) blocks long.  Nothing to do!\n\n")
        return 0
    ctx.out(
        f"Filesystem at {name} is mounted on {fs.mount}; on-line resizing required",
        f"old_desc_blocks = {_desc_blocks(old)}, new_desc_blocks = {_desc_blocks(new)}",
        f"The filesystem on {name} is now {new} (4k) blocks long.",
        "",
    )
    ctx.lab.log(ctx.host, "fs_grow", naa=found.lun.naa, mount=fs.mount, fstype="ext4", size=fs.size)
    return 0


def _desc_blocks(blocks: int) -> int:
    """ext4's group descriptor blocks: 32768 blocks a group, 64 descriptors a 4 KiB block."""
    return math.ceil(math.ceil(blocks / 32768) / 64)


def _xfs_growfs(ctx: Exec) -> int:
    names = [a for a in ctx.args if not a.startswith("-")]
    if len(names) != 1:
        return ctx.fail("Usage: xfs_growfs [-dlnrx] [-D size] [-L size] [-m imaxpct] mountpoint")
    target = names[0]
    with san_lock(ctx):
        mount = next((m for m in mounts(ctx) if target in (m.target, m.source) and m.fstype == "xfs"), None)
        fs = mount.lun.fs if mount is not None and mount.lun is not None else None
        if mount is None or fs is None or mount.lun is None:
            return ctx.fail(f"xfs_growfs: {target} is not a mounted XFS filesystem")
        if not ctx.root:
            return ctx.fail(f"xfs_growfs: cannot open {mount.source}: Permission denied")
        old = fs.blocks
        underlying = fs.lvm.lv_size if fs.lvm is not None else mount.lun.seen_by[ctx.host.name].size
        new = old if "-n" in ctx.args else max(old, underlying // FS_BLOCK)
        fs.blocks = new
    agsize = math.ceil(old / 4)
    ctx.out(
        f"meta-data={mount.source:<22} isize=512    agcount=4, agsize={agsize} blks",
        "         =                       sectsz=512   attr=2, projid32bit=1",
        "         =                       crc=1        finobt=1, sparse=1, rmapbt=1",
        "         =                       reflink=1    bigtime=1 inobtcount=1 nrext64=0",
        f"data     =                       bsize=4096   blocks={old}, imaxpct=25",
        "         =                       sunit=0      swidth=0 blks",
        "naming   =version 2              bsize=4096   ascii-ci=0, ftype=1",
        f"log      =internal log           bsize=4096   blocks={fs.log_blocks}, version=2",
        "         =                       sectsz=512   sunit=0 blks, lazy-count=1",
        "realtime =none                   extsz=4096   blocks=0, rtextents=0",
    )
    if new == old:
        if "-n" not in ctx.args:
            ctx.write_err("data size unchanged, skipping\n")
        return 0
    ctx.out(f"data blocks changed from {old} to {new}")
    ctx.lab.log(ctx.host, "fs_grow", naa=mount.lun.naa, mount=fs.mount, fstype="xfs", size=fs.size)
    return 0


_FINDMNT = {"SOURCE", "TARGET", "FSTYPE", "SIZE", "USED", "AVAIL", "OPTIONS"}


def _findmnt(ctx: Exec) -> int:
    args, columns, wanted = list(ctx.args), ["TARGET", "SOURCE", "FSTYPE", "OPTIONS"], []
    noheadings, exact = False, False
    while args:
        arg = args.pop(0)
        if arg in ("-n", "--noheadings"):
            noheadings = True
        elif arg in ("-b", "--bytes"):
            pass  # sizes are always in bytes here
        elif arg in ("-o", "--output") and args:
            columns = args.pop(0).upper().split(",")
        elif arg.startswith("--output="):
            columns = arg.split("=", 1)[1].upper().split(",")
        elif arg in ("-M", "--mountpoint") and args:
            wanted, exact = [args.pop(0)], True
        elif arg.startswith("-"):
            return ctx.fail(f"findmnt: unrecognized option '{arg}'")
        else:
            wanted.append(arg)
    if unknown := [c for c in columns if c not in _FINDMNT]:
        return ctx.fail(f"findmnt: unknown column: {unknown[0]}")
    with san_lock(ctx):
        found = mounts(ctx)
    if wanted:
        found = [m for m in found if m.target == wanted[0] or (not exact and m.source == wanted[0])]
    if not found:
        return 1
    rows = [[_column(m, c) for c in columns] for m in found]
    if not noheadings:
        rows.insert(0, columns)
    widths = [max(len(r[i]) for r in rows) for i in range(len(columns))]
    ctx.out(*(" ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows))
    return 0


def _column(mount: Mount, column: str) -> str:
    values = {
        "SOURCE": mount.source,
        "TARGET": mount.target,
        "FSTYPE": mount.fstype,
        "OPTIONS": "rw,relatime",
    }
    sizes = {"SIZE": mount.size, "USED": mount.used, "AVAIL": mount.size - mount.used}
    return values.get(column) or str(sizes[column])


def _df(ctx: Exec) -> int:
    """``df [-P] [-B1] [PATH...]``. Without -P a device name longer than 20 characters takes a line of its own
    and its numbers go on the next, as coreutils before 8.11 print it (RHEL 6); -P (POSIX) keeps each
    filesystem on one line and says ``1-blocks`` and ``Capacity``."""
    block, posix, paths = 1024, False, []
    for arg in ctx.args:
        if arg in ("-B1", "--block-size=1", "-B", "1"):
            block = 1 if arg != "-B" else block
        elif arg in ("-P", "--portability"):
            posix = True
        elif arg.startswith("-"):
            return ctx.fail(f"df: unrecognized option '{arg}'")
        else:
            paths.append(arg)
    with san_lock(ctx):
        found = mounts(ctx)
    if relative := [p for p in paths if not p.startswith("/")]:
        return ctx.fail(f"df: {relative[0]}: No such file or directory")
    if paths:  # the mount that holds each path: a directory nothing is mounted on is on /
        found = [max((m for m in found if _under(p, m.target)), key=lambda m: len(m.target)) for p in paths]
    size = f"{block}-blocks" if posix else ("1B-blocks" if block == 1 else "1K-blocks")
    rows = [["Filesystem", size, "Used", "Available", "Capacity" if posix else "Use%", "Mounted on"]]
    for m in found:
        use = math.ceil(m.used * 100 / m.size) if m.size else 0
        blocks = (m.size // block, m.used // block, (m.size - m.used) // block)
        rows.append([m.source, *(str(n) for n in blocks), f"{use}%", m.target])
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    widths[0] = widths[0] if posix else 20  # the Filesystem column without -P
    for r in rows:
        name, cells = r[0], [c.rjust(w) for c, w in zip(r[1:5], widths[1:], strict=True)]
        if len(name) > widths[0]:
            ctx.out(name)
            name = ""
        ctx.out(" ".join([name.ljust(widths[0]), *cells, r[5]]))
    return 0


def _under(path: str, target: str) -> bool:
    return target in ("/", path) or path.startswith(target.rstrip("/") + "/")


LINUX_STORAGE: dict[str, Handler] = {
    "multipath": _multipath,
    "multipathd": _multipathd,
    "tee": _tee,
    "blockdev": _blockdev,
    "resize2fs": _resize2fs,
    "xfs_growfs": _xfs_growfs,
    "findmnt": _findmnt,
    "df": _df,
    **LVM,
}
