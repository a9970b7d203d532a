"""The lab's storage network: the LUNs the simulated arrays serve, the lab hosts each is mapped to, what
sits on each LUN and what each host has read of it.

An array simulator (``array_ontap``, ``array_pure``, ``array_powerstore``) creates its LUNs here and changes
``SanLun.size`` (holding ``San.lock``) when it resizes one; the lab's SSH hosts (``ssh_storage``) see a LUN
through their paths and notice a new size only when they rescan.

What is on a LUN is shared by every host it is mapped to, as it is written on the LUN itself:

- ``Vmfs``: a GPT with one VMFS partition (from sector 2048) and the datastore in it (ESXi hosts);
- ``Filesystem``: an ext4 or xfs filesystem, directly on the multipath device or on a logical volume of an
  LVM volume group whose first physical volume is the LUN (``Lvm``; ``extend_vg`` adds a PV from elsewhere);
  mounted on one host at most (an active/passive pair: the other host sees the device and the PV but mounts
  nothing).

What a host has read is its own (``LunOnHost``): each path keeps the size it last read (a Linux path changes
only when that path is rescanned through sysfs, an ESXi device on an adapter rescan); ``size`` is the
ESXi device's capacity, or the Linux multipath map's, which changes only on ``multipathd resize map`` once
its live paths agree; ``vmfs_capacity`` is the datastore's capacity as this ESXi host last read it (on
``vmkfstools -V``, or its own ``--growfs``). A Linux host names its map by the WWID, or ``mpatha``,
``mpathb``, ... on a host in ``San.friendly_names`` (``user_friendly_names yes``, which RHEL's mpathconf
writes), or an alias (``alias_map``: multipath.conf's ``alias``). ``fail_path`` takes a path down (``failed
faulty offline``): it keeps the size it last read and refuses rescans.

Sizes are bytes; sectors are 512 bytes.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field

SECTOR = 512
MiB = 1024**2
GiB = 1024**3
GPT_TAIL = 34  # sectors after the last usable one: the backup GPT's 32 sectors of entries and its header
VMFS_START = 2048  # the first sector of the VMFS partition ESXi creates
EXTENT = 4 * MiB  # the LVM physical extent size vgcreate picks
PE_START = MiB  # where the first extent starts on a PV
MDA_SIZE = MiB  # the metadata area pvcreate --pvmetadatacopies 2 keeps at the end of the device as well
FS_BLOCK = 4096
XFS_LOG_BLOCKS = 16384  # the internal log mkfs.xfs makes (64 MiB); not counted in the size df shows
FSTYPES = ("ext4", "xfs")
# The lab's Linux hosts whose multipath runs with ``user_friendly_names yes`` (RHEL's default through
# mpathconf): their maps are mpatha, mpathb, ... instead of the WWID. One host of the xfs pair, so the lab has
# both.
FRIENDLY_NAMES = ("esx-06",)


@dataclass(eq=False)
class ScsiPath:
    """One path of a LUN on one host: the SCSI disk Linux makes of it and the size it last read."""

    name: str  # sdb
    hctl: str  # 3:0:0:1 (host:channel:target:lun)
    devno: str  # 8:16
    size: int
    failed: bool = False  # down: multipath lists it as "failed faulty offline", a rescan of it fails


@dataclass(eq=False)
class LunOnHost:
    """What one host has read of one LUN."""

    lun_id: int  # the LUN number on this host's targets
    dm: str  # dm-1: the multipath map's device (Linux)
    name: str  # the multipath map's name, /dev/mapper/NAME (Linux): the WWID, mpathN or an alias
    paths: list[ScsiPath]
    size: int  # the ESXi device's capacity, or the Linux multipath map's
    vmfs_capacity: int | None = None  # the datastore's capacity as this (ESXi) host last read it


@dataclass(eq=False)
class Vmfs:
    """A VMFS datastore on partition ``partition`` of the LUN's GPT."""

    datastore: str
    uuid: str  # 5f69774e-f1031e44-7bdb-ac1f6bc4b812
    start: int  # first sector of the partition
    end: int  # last sector of the partition
    gpt_sectors: int  # the disk size the GPT was written for: its backup header is the last of them
    capacity: int  # as the VMFS metadata on the LUN says
    used: int
    partition: int = 1


@dataclass(eq=False)
class OtherPv:
    """A physical volume of the LUN's volume group that is not on the LUN (a local disk, say), seen alike by
    every host the LUN is mapped to."""

    name: str  # /dev/sdz
    pe_count: int
    alloc: int = 0  # the extents of the LV on it


@dataclass(eq=False)
class Lvm:
    """A volume group whose first PV is the whole LUN (``others``: more PVs), and the logical volume the
    filesystem is on."""

    vg: str
    lv: str
    pv_size: int  # the device size the PV metadata records (pvcreate, pvresize)
    lv_extents: int  # on every PV together
    extent_size: int = EXTENT
    pe_start: int = PE_START
    mda_tail: int = 0  # the second metadata area at the device's end (MDA_SIZE), or none
    others: list[OtherPv] = field(default_factory=list)

    @property
    def pe_count(self) -> int:
        """The extents the LUN's PV holds."""
        return (self.pv_size - self.pe_start - self.mda_tail) // self.extent_size

    @property
    def pv_alloc(self) -> int:
        """The extents of the LV on the LUN's PV."""
        return self.lv_extents - sum(o.alloc for o in self.others)

    @property
    def pv_free(self) -> int:
        """The extents of the LUN's PV no LV uses."""
        return self.pe_count - self.pv_alloc

    @property
    def vg_extents(self) -> int:
        return self.pe_count + sum(o.pe_count for o in self.others)

    @property
    def free_extents(self) -> int:
        """The extents of the VG no LV uses."""
        return self.vg_extents - self.lv_extents

    @property
    def lv_size(self) -> int:
        return self.lv_extents * self.extent_size

    @property
    def dm_name(self) -> str:
        """``vg_data-lv_data``: device-mapper's name for the LV (a dash in a name doubled)."""
        return f"{self.vg.replace('-', '--')}-{self.lv.replace('-', '--')}"


@dataclass(eq=False)
class Filesystem:
    """An ext4 or xfs filesystem on the LUN's multipath device or on ``lvm``'s logical volume."""

    fstype: str  # ext4 | xfs
    mount: str  # where it is mounted on ``active_host``
    blocks: int  # 4 KiB blocks
    used: int
    active_host: str | None  # the one host it is mounted on; None when nowhere
    lvm: Lvm | None = None
    log_blocks: int = 0  # xfs: its internal log

    @property
    def size(self) -> int:
        """What df and findmnt show: ext4 leaves out its inode tables (1/64), xfs its internal log."""
        overhead = self.blocks // 64 if self.fstype == "ext4" else self.log_blocks
        return (self.blocks - overhead) * FS_BLOCK


@dataclass(eq=False)
class SanLun:
    """One LUN. Mutable: change it only holding ``San.lock``."""

    naa: str  # naa.<32 lowercase hex digits>, the name hosts see
    size: int  # bytes provisioned on the array
    hosts: tuple[str, ...] = ()  # lab host names it is mapped to
    vmfs: Vmfs | None = None
    fs: Filesystem | None = None
    seen_by: dict[str, LunOnHost] = field(default_factory=dict)  # host name -> what it has read

    @property
    def wwid(self) -> str:
        """Linux multipath's WWID: ``3`` and the 32 hex digits (the map's name, unless the host names it)."""
        return "3" + self.naa[4:]


@dataclass
class San:
    lock: threading.RLock = field(default_factory=threading.RLock)
    luns: dict[str, SanLun] = field(default_factory=dict)  # naa -> LUN
    # hosts that name a map they discover mpatha, mpathb, ... (set it before mapping LUNs to them)
    friendly_names: set[str] = field(default_factory=lambda: set(FRIENDLY_NAMES))

    def add_lun(self, naa: str, size: int, hosts: tuple[str, ...] = ()) -> SanLun:
        """A new LUN of ``size`` bytes mapped to ``hosts``; ValueError for a malformed or taken ``naa``."""
        if not (naa.startswith("naa.") and len(naa) == 36 and all(c in "0123456789abcdef" for c in naa[4:])):
            raise ValueError(f"not a lowercase NAA name: {naa!r}")
        with self.lock:
            if naa in self.luns:
                raise ValueError(f"LUN {naa} exists")
            lun = self.luns[naa] = SanLun(naa, size, tuple(hosts))
            for host in lun.hosts:
                self.on_host(lun, host)  # the hosts have it now, at this size
            return lun

    def luns_of(self, host: str) -> list[SanLun]:
        """The LUNs mapped to ``host``."""
        with self.lock:
            return [lun for lun in self.luns.values() if host in lun.hosts]

    def lun(self, naa: str) -> SanLun:
        """The LUN called ``naa``; KeyError when there is none."""
        with self.lock:
            try:
                return self.luns[naa]
            except KeyError:
                raise KeyError(f"no LUN {naa} on the lab's SAN") from None

    def on_host(self, lun: SanLun, host: str) -> LunOnHost | None:
        """What ``host`` has read of ``lun``; None when the LUN is not mapped to it. A host the LUN was mapped
        to later discovers it at its size of now. Call holding ``lock``."""
        if host not in lun.hosts:
            return None
        seen = lun.seen_by.get(host)
        if seen is None:
            index = sum(1 for other in self.luns.values() if host in other.seen_by)
            paths = []
            for i, hba in enumerate((3, 4)):
                disk = 2 * index + i + 1  # sda is the host's own disk
                paths.append(
                    ScsiPath(f"sd{_letters(disk)}", f"{hba}:0:0:{index}", f"8:{16 * disk}", lun.size)
                )
            # multipath's bindings file hands out mpatha, mpathb, ... in the order the maps appear
            name = f"mpath{_letters(index)}" if host in self.friendly_names else lun.wwid
            seen = lun.seen_by[host] = LunOnHost(index, f"dm-{index}", name, paths, lun.size)
            if lun.vmfs is not None:
                seen.vmfs_capacity = lun.vmfs.capacity
        return seen

    def alias_map(self, lun: SanLun | str, host: str, alias: str) -> None:
        """Name ``host``'s multipath map of ``lun`` ``alias`` (multipath.conf's ``alias``, then ``multipath
        -r``). ValueError when the LUN is not mapped to the host."""
        with self.lock:
            self._on(lun, host).name = alias

    def fail_path(self, lun: SanLun | str, host: str, disk: str, *, failed: bool = True) -> None:
        """Take path ``disk`` (sdX) of ``lun`` on ``host`` down (``failed``) or bring it back. ValueError when
        the host has no such path of the LUN."""
        with self.lock:
            path = next((p for p in self._on(lun, host).paths if p.name == disk), None)
            if path is None:
                raise ValueError(
                    f"{host} has no path {disk} to LUN {lun if isinstance(lun, str) else lun.naa}"
                )
            path.failed = failed

    def _on(self, lun: SanLun | str, host: str) -> LunOnHost:
        found = self.lun(lun) if isinstance(lun, str) else lun
        seen = self.on_host(found, host)
        if seen is None:
            raise ValueError(f"LUN {found.naa} is not mapped to {host}")
        return seen

    # -- what the lab puts on a LUN before a test or demo ----------------------------------------------------

    def format_vmfs(self, lun: SanLun | str, datastore: str, *, used: int = 0) -> Vmfs:
        """Partition ``lun`` as ESXi does (GPT, one VMFS partition from sector 2048 to the last usable
        one) and make datastore ``datastore`` fill it; every host mapped to it sees the datastore. ValueError
        when the LUN already holds something."""
        with self.lock:
            lun = self._blank(lun)
            total = lun.size // SECTOR
            end = total - GPT_TAIL
            capacity = vmfs_capacity(VMFS_START, end)
            digest = hashlib.sha256(f"vmfs:{lun.naa}".encode()).hexdigest()
            uuid = f"{digest[:8]}-{digest[8:16]}-{digest[16:20]}-{digest[20:32]}"
            lun.vmfs = Vmfs(datastore, uuid, VMFS_START, end, total, capacity, min(used, capacity))
            for host in lun.hosts:
                seen = self.on_host(lun, host)
                if seen is not None:
                    seen.vmfs_capacity = capacity
            return lun.vmfs

    def format_linux(
        self,
        lun: SanLun | str,
        fstype: str,
        mount: str,
        *,
        lv: str | None = None,
        active_host: str | None = None,
        used: int = 0,
        metadata_copies: int = 1,
    ) -> Filesystem:
        """Make an ``fstype`` (ext4 or xfs) filesystem on ``lun`` and mount it at ``mount`` on
        ``active_host`` (default: the first host it is mapped to). With ``lv`` (``VG/LV``) the LUN is the one
        PV of volume group VG (with ``metadata_copies`` 2, a second metadata area at its end, as
        ``pvcreate --pvmetadatacopies 2`` makes) and the filesystem is on logical volume LV, which takes every
        extent; without, it is directly on the multipath device. ValueError for an unknown type, a host the
        LUN is not mapped to, or a LUN that already holds something."""
        if fstype not in FSTYPES:
            raise ValueError(f"no filesystem type {fstype!r}: one of {', '.join(FSTYPES)}")
        with self.lock:
            lun = self._blank(lun)
            host = active_host if active_host is not None else (lun.hosts[0] if lun.hosts else None)
            if host is not None and host not in lun.hosts:
                raise ValueError(f"LUN {lun.naa} is not mapped to {host}")
            lvm = None
            if lv is not None:
                vg, _, name = lv.partition("/")
                if not vg or not name:
                    raise ValueError(f"lv must be VG/LV, not {lv!r}")
                lvm = Lvm(vg, name, lun.size, 0, mda_tail=MDA_SIZE if metadata_copies == 2 else 0)
                lvm.lv_extents = lvm.pe_count
            blocks = (lvm.lv_size if lvm is not None else lun.size) // FS_BLOCK
            log = XFS_LOG_BLOCKS if fstype == "xfs" else 0
            lun.fs = Filesystem(fstype, mount, blocks, used, host, lvm, log)
            return lun.fs

    def extend_vg(self, lun: SanLun | str, pv: str, size: int) -> OtherPv:
        """``vgextend``: add physical volume ``pv`` (a device name, e.g. /dev/sdz) of ``size`` bytes to the
        volume group on ``lun``, every extent of it free. ValueError when the LUN holds no volume group."""
        with self.lock:
            found = self.lun(lun) if isinstance(lun, str) else lun
            lvm = found.fs.lvm if found.fs is not None else None
            if lvm is None:
                raise ValueError(f"LUN {found.naa} holds no LVM volume group")
            other = OtherPv(pv, (size - lvm.pe_start) // lvm.extent_size)
            lvm.others.append(other)
            return other

    def _blank(self, lun: SanLun | str) -> SanLun:
        found = self.lun(lun) if isinstance(lun, str) else lun
        if found.vmfs is not None or found.fs is not None:
            raise ValueError(f"LUN {found.naa} already holds a datastore or filesystem")
        return found


def vmfs_capacity(start: int, end: int) -> int:
    """The capacity a VMFS datastore gets from the partition ``start``..``end``: whole 1 MiB blocks."""
    return (end - start + 1) * SECTOR // MiB * MiB


def _letters(n: int) -> str:
    """0 -> a, 25 -> z, 26 -> aa: the letters of the n-th SCSI disk (sdX)."""
    text = ""
    n += 1
    while n:
        n, rest = divmod(n - 1, 26)
        text = chr(ord("a") + rest) + text
    return text
