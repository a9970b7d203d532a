"""LVM2 as the lab's Linux hosts run it on their SAN LUNs (``remotehands.lab.san.Lvm``): ``pvresize``,
``lvextend -l [+]N[%FREE|%VG|%PVS] | -L [+]SIZE LV [PV...]`` (allocating on the PVs named, or on any of the
VG's; ``%PVS`` is of the free extents of the PVs named) and the reports ``pvs``, ``vgs``, ``lvs``. A PV is
named as the host names the device: the LUN's ``/dev/mapper/MAP`` (the host's name of the multipath map),
another PV of the VG by its own name.

The reports take ``-o``/``--options`` (fields by their full name, or without the report's prefix; ``+`` adds
to the default ones), ``--units`` (``b`` bytes, ``h`` the default human ones, or ``k``/``m``/``g``/``t``),
``--nosuffix``, ``--noheadings`` and ``--separator``, and print as LVM does: two spaces, then the columns
aligned (text left, numbers right). Every command wants root, as LVM's lock files do.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from remotehands.lab.san import Lvm, SanLun
from remotehands.lab.ssh_storage import san_lock, visible

if TYPE_CHECKING:
    from remotehands.lab.san import LunOnHost
    from remotehands.lab.ssh_commands import Exec, Handler

_NOT_ROOT = (
    "  WARNING: Running as a non-root user. Functionality may be unavailable.\n"
    "  /run/lock/lvm/P_global:aux: open failed: Permission denied"
)
_HEADINGS = {
    "pv_name": "PV", "vg_name": "VG", "pv_fmt": "Fmt", "pv_attr": "Attr", "pv_size": "PSize",
    "pv_free": "PFree", "dev_size": "DevSize", "pe_start": "1st PE", "pv_pe_count": "PE",
    "pv_pe_alloc_count": "Alloc", "vg_extent_size": "Ext", "pv_count": "#PV", "lv_count": "#LV",
    "snap_count": "#SN", "vg_attr": "Attr", "vg_size": "VSize", "vg_free": "VFree", "vg_extent_count": "#Ext",
    "vg_free_count": "Free", "lv_name": "LV", "lv_attr": "Attr", "lv_size": "LSize", "lv_path": "Path",
    "lv_dm_path": "DMPath", "pool_lv": "Pool", "origin": "Origin", "data_percent": "Data%",
    "metadata_percent": "Meta%", "move_pv": "Move", "mirror_log": "Log", "copy_percent": "Cpy%Sync",
    "convert_lv": "Convert", "pv_mda_count": "#PMda",
}  # fmt: skip
_SIZES = {"pv_size", "pv_free", "dev_size", "pe_start", "vg_extent_size", "vg_size", "vg_free", "lv_size"}
_DEFAULTS = {
    "pv": "pv_name,vg_name,pv_fmt,pv_attr,pv_size,pv_free",
    "vg": "vg_name,pv_count,lv_count,snap_count,vg_attr,vg_size,vg_free",
    "lv": "lv_name,vg_name,lv_attr,lv_size,pool_lv,origin,data_percent,metadata_percent,move_pv,mirror_log,"
    "copy_percent,convert_lv",
}
_UNITS = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}

Row = dict[str, int | str]


def lvm_size(value: int, units: str = "h", suffix: bool = True) -> str:
    """A size as LVM prints it: ``123B`` (units b), ``<150.00g`` (h: the largest unit it fills, ``<`` when
    rounding made it look larger), ``150.00g`` (g)."""
    if units in ("b", "B"):
        return f"{value}{'B' if suffix else ''}"
    if units == "h" and value == 0:
        return "0 " if suffix else "0"
    if units == "h":
        letter = next((u for u in "tgmk" if value >= _UNITS[u]), "k")
    elif units.lower() in _UNITS:
        letter = units.lower()
    else:
        return str(value)
    shown = f"{value / _UNITS[letter]:.2f}"
    prefix = "<" if units == "h" and float(shown) * _UNITS[letter] > value else ""
    return f"{prefix}{shown}{letter if suffix else ''}"


def lvm_denied(ctx: Exec) -> int:
    """What an LVM command says to a user who is not root."""
    return ctx.fail(_NOT_ROOT, 5)


def _stacks(ctx: Exec) -> list[tuple[SanLun, LunOnHost, Lvm]]:
    """The volume groups on LUNs this host sees. Call holding ``san_lock``."""
    return [(lun, seen, lun.fs.lvm) for lun, seen in visible(ctx) if lun.fs is not None and lun.fs.lvm]


def _pv_name(seen: LunOnHost) -> str:
    """The LUN's PV as this host names it: its multipath map."""
    return f"/dev/mapper/{seen.name}"


def _rows(ctx: Exec, kind: str) -> list[Row]:
    """The report's rows: one a PV (pvs), else one a VG and its LV. Call holding ``san_lock``."""
    rows = []
    for lun, seen, lvm in _stacks(ctx):
        row = _row(ctx, lun, seen, lvm)
        rows.append(row)
        for other in lvm.others if kind == "pv" else []:
            ext, free = lvm.extent_size, other.pe_count - other.alloc
            rows.append(
                row
                | {"pv_name": other.name, "pv_size": other.pe_count * ext, "pv_free": free * ext,
                   "dev_size": other.pe_count * ext + lvm.pe_start, "pv_pe_count": other.pe_count,
                   "pv_pe_alloc_count": other.alloc, "pv_mda_count": 1}
            )  # fmt: skip
    return rows


def _row(ctx: Exec, lun: SanLun, seen: LunOnHost, lvm: Lvm) -> Row:
    """Every field of the LUN's PV, its VG and its LV."""
    active = lun.fs is not None and lun.fs.active_host == ctx.host.name
    return {
        "pv_name": _pv_name(seen), "vg_name": lvm.vg, "pv_fmt": "lvm2", "pv_attr": "a--",
        "pv_size": lvm.pe_count * lvm.extent_size, "pv_free": lvm.pv_free * lvm.extent_size,
        "dev_size": seen.size, "pe_start": lvm.pe_start, "pv_pe_count": lvm.pe_count,
        "pv_pe_alloc_count": lvm.pv_alloc, "pv_mda_count": 2 if lvm.mda_tail else 1,
        "vg_extent_size": lvm.extent_size, "pv_count": 1 + len(lvm.others), "lv_count": 1,
        "snap_count": 0, "vg_attr": "wz--n-", "vg_size": lvm.vg_extents * lvm.extent_size,
        "vg_free": lvm.free_extents * lvm.extent_size, "vg_extent_count": lvm.vg_extents,
        "vg_free_count": lvm.free_extents, "lv_name": lvm.lv,
        "lv_attr": "-wi-ao----" if active else "-wi-------", "lv_size": lvm.lv_size,
        "lv_path": f"/dev/{lvm.vg}/{lvm.lv}", "lv_dm_path": f"/dev/mapper/{lvm.dm_name}",
        "pool_lv": "", "origin": "", "data_percent": "", "metadata_percent": "", "move_pv": "",
        "mirror_log": "", "copy_percent": "", "convert_lv": "",
    }  # fmt: skip


def _report(kind: str, select: Callable[[Exec, list[str], list[Row]], list[Row] | str]) -> Handler:
    """A report command (pvs, vgs, lvs); ``select`` picks its rows for the positional arguments, or says why
    it cannot."""

    def handler(ctx: Exec) -> int:
        fields, units, suffix, headings, separator, names = (
            _DEFAULTS[kind].split(","),
            "h",
            True,
            True,
            None,
            [],
        )
        args = list(ctx.args)
        while args:
            arg = args.pop(0)
            if arg in ("-o", "--options") and args:
                value = args.pop(0)
                chosen = [_field(kind, f) for f in value.lstrip("+").split(",")]
                fields = fields + chosen if value.startswith("+") else chosen
            elif arg == "--units" and args:
                units = args.pop(0)
            elif arg == "--nosuffix":
                suffix = False
            elif arg == "--noheadings":
                headings = False
            elif arg == "--separator" and args:
                separator = args.pop(0)
            elif arg.startswith("-"):
                return ctx.fail(f"{kind}s: unrecognized option '{arg}'", 3)
            else:
                names.append(arg)
        if unknown := [f for f in fields if f not in _HEADINGS]:
            return ctx.fail(f"  Unrecognised field: {unknown[0]}", 5)
        if not ctx.root:
            return lvm_denied(ctx)
        with san_lock(ctx):
            rows = select(ctx, names, _rows(ctx, kind))
        if isinstance(rows, str):
            return ctx.fail(rows, 5)
        table = [[_cell(row[f], f, units, suffix) for f in fields] for row in rows]
        if headings:
            table.insert(0, [_HEADINGS[f] for f in fields])
        widths = [max(len(r[i]) for r in table) for i in range(len(fields))]
        for r in table:
            if separator is not None:
                ctx.out("  " + separator.join(r))
            else:
                cells = [
                    c.rjust(w) if _numeric(f) else c.ljust(w)
                    for c, w, f in zip(r, widths, fields, strict=True)
                ]
                ctx.out(("  " + " ".join(cells)).rstrip())
        return 0

    return handler


def _field(kind: str, name: str) -> str:
    return name if name in _HEADINGS else f"{kind}_{name}"


def _numeric(field: str) -> bool:
    return field in _SIZES or field.endswith("_count")


def _cell(value: int | str, field: str, units: str, suffix: bool) -> str:
    return lvm_size(int(value), units, suffix) if field in _SIZES else str(value)


def _select_pvs(ctx: Exec, names: list[str], rows: list[Row]) -> list[Row] | str:
    chosen = []
    for name in names:
        found = [r for r in rows if r["pv_name"] in (name, f"/dev/mapper/{name}")]
        if not found:
            return f'  Failed to find physical volume "{name}".'
        chosen += found
    return chosen if names else rows


def _select_vgs(ctx: Exec, names: list[str], rows: list[Row]) -> list[Row] | str:
    for name in names:
        if not any(r["vg_name"] == name for r in rows):
            return f'  Volume group "{name}" not found\n  Cannot process volume group {name}'
    return [r for r in rows if not names or r["vg_name"] in names]


def _select_lvs(ctx: Exec, names: list[str], rows: list[Row]) -> list[Row] | str:
    chosen = []
    for name in names:
        vg, _, lv = name.removeprefix("/dev/").partition("/")
        found = [r for r in rows if r["vg_name"] == vg and lv in ("", r["lv_name"])]
        if not found:
            if lv:
                return f'  Failed to find logical volume "{vg}/{lv}"'
            return f'  Volume group "{vg}" not found\n  Cannot process volume group {vg}'
        chosen += found
    return chosen if names else rows


# -- changing ------------------------------------------------------------------------------------------------


def _pvresize(ctx: Exec) -> int:
    names = [a for a in ctx.args if not a.startswith("-")]
    if len(names) != 1:
        return ctx.fail("  Please supply physical volume(s)", 3)
    if not ctx.root:
        return lvm_denied(ctx)
    name = names[0]
    with san_lock(ctx):
        found = next(((lun, seen, lvm) for lun, seen, lvm in _stacks(ctx) if _pv_name(seen) == name), None)
        if found is None:
            return ctx.fail(
                f'  Failed to find physical volume "{name}".\n'
                "  0 physical volume(s) resized or updated / 1 physical volume(s) not resized",
                5,
            )
        lun, seen, lvm = found
        # the second metadata area, if any, moves to the device's new end
        extents = (seen.size - lvm.pe_start - lvm.mda_tail) // lvm.extent_size
        if extents < lvm.pv_alloc:
            return ctx.fail(
                f"  {name}: cannot resize to {extents} extents as {lvm.pv_alloc} are allocated.\n"
                "  0 physical volume(s) resized or updated / 1 physical volume(s) not resized",
                5,
            )
        old, lvm.pv_size = lvm.pv_size, seen.size
    ctx.out(
        f'  Physical volume "{name}" changed',
        "  1 physical volume(s) resized or updated / 0 physical volume(s) not resized",
    )
    if seen.size != old:
        ctx.lab.log(ctx.host, "pv_resize", naa=lun.naa, pv_size=lvm.pe_count * lvm.extent_size)
    return 0


def _lvextend(ctx: Exec) -> int:
    args, extents, size, names = list(ctx.args), None, None, []
    while args:
        arg = args.pop(0)
        if arg in ("-l", "--extents") and args:
            extents = args.pop(0)
        elif arg in ("-L", "--size") and args:
            size = args.pop(0)
        elif arg.startswith("-"):
            return ctx.fail(f"lvextend: option {arg} is not simulated", 3)
        else:
            names.append(arg)
    if not names or (extents is None) == (size is None):
        return ctx.fail("  Please specify either size or extents but not both, and one logical volume.", 3)
    if not ctx.root:
        return lvm_denied(ctx)
    name, pvs = names[0], names[1:]
    with san_lock(ctx):
        found = next((s for s in _stacks(ctx) if _names_lv(s[2], name)), None)
        if found is None:
            return ctx.fail(f'  Failed to find logical volume "{name.removeprefix("/dev/")}"', 5)
        lun, seen, lvm = found
        places = _places(seen, lvm)
        if missing := [pv for pv in pvs if pv not in places]:
            return ctx.fail(f'  Physical Volume "{missing[0]}" not found in Volume Group "{lvm.vg}".', 5)
        allowed = {pv: free for pv, free in places.items() if not pvs or pv in pvs}
        current = lvm.lv_extents
        wanted = _wanted_extents(lvm, extents, size, sum(allowed.values()))
        if wanted is None:
            return ctx.fail(
                f"  Invalid argument for {'--extents' if extents else '--size'}: {extents or size}", 3
            )
        if wanted == current:
            return ctx.fail(f"  New size ({wanted} extents) matches existing size ({current} extents).", 5)
        if wanted < current:
            return ctx.fail(
                f"  New size given ({wanted} extents) not larger than existing size ({current} extents).", 5
            )
        if wanted - current > sum(allowed.values()):
            return ctx.fail(
                f"  Insufficient free space: {wanted - current} extents needed, but only "
                f"{sum(allowed.values())} available",
                5,
            )
        _allocate(lvm, allowed, wanted - current)
    ext = lvm.extent_size
    ctx.out(
        f"  Size of logical volume {lvm.vg}/{lvm.lv} changed from {_gib(current * ext)} ({current} extents) "
        f"to {_gib(wanted * ext)} ({wanted} extents).",
        f"  Logical volume {lvm.vg}/{lvm.lv} successfully resized.",
    )
    ctx.lab.log(ctx.host, "lv_extend", naa=lun.naa, lv=f"{lvm.vg}/{lvm.lv}", size=lvm.lv_size)
    return 0


def _places(seen: LunOnHost, lvm: Lvm) -> dict[str, int]:
    """The VG's PVs by name, the LUN's first, with their free extents."""
    return {_pv_name(seen): lvm.pv_free, **{o.name: o.pe_count - o.alloc for o in lvm.others}}


def _allocate(lvm: Lvm, allowed: dict[str, int], count: int) -> None:
    """Give the LV ``count`` more extents from the PVs ``allowed``, in their order."""
    others = {o.name: o for o in lvm.others}
    for pv, free in allowed.items():
        take = min(free, count)
        if pv in others:
            others[pv].alloc += take
        lvm.lv_extents += take  # those no other PV counts as its own are on the LUN's PV
        count -= take


def _names_lv(lvm: Lvm, name: str) -> bool:
    return name in (f"{lvm.vg}/{lvm.lv}", f"/dev/{lvm.vg}/{lvm.lv}", f"/dev/mapper/{lvm.dm_name}")


def _wanted_extents(lvm: Lvm, extents: str | None, size: str | None, pvs_free: int) -> int | None:
    """The LV's size in extents after ``-l EXTENTS`` or ``-L SIZE`` (``+`` adds; ``%FREE`` and ``%PVS``
    always add, of the VG's free extents and of those of the PVs given); None when unreadable."""
    current = lvm.lv_extents
    if extents is not None:
        match = re.fullmatch(r"(\+?)(\d+)(%FREE|%VG|%PVS)?", extents)
        if match is None:
            return None
        plus, number, percent = match.group(1), int(match.group(2)), match.group(3)
        if percent == "%FREE":
            amount = lvm.free_extents * number // 100
        elif percent == "%PVS":
            amount = pvs_free * number // 100
        elif percent == "%VG":
            amount = lvm.vg_extents * number // 100
        else:
            amount = number
        return current + amount if plus or percent in ("%FREE", "%PVS") else amount
    match = re.fullmatch(r"(\+?)(\d+)([kKmMgGtT]?)", size or "")
    if match is None:
        return None
    amount = int(match.group(2)) * _UNITS[(match.group(3) or "m").lower()]
    count = -(-amount // lvm.extent_size)  # rounded up to whole extents, as lvextend does
    return current + count if match.group(1) else count


def _gib(value: int) -> str:
    """``<150.00 GiB``: the unit names of lvextend's messages."""
    shown = lvm_size(value)
    return f"{shown[:-1]} {shown[-1].upper()}iB"


LVM: dict[str, Handler] = {
    "pvs": _report("pv", _select_pvs),
    "vgs": _report("vg", _select_vgs),
    "lvs": _report("lv", _select_lvs),
    "pvresize": _pvresize,
    "lvextend": _lvextend,
}
