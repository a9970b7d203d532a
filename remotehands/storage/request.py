"""A LUN expansion request (``storage.expand_lun``): which LUN of the array and the new size, checked the
same way at ticket intake, on the CLI and in the job."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from remotehands.errors import InvalidRequest
from remotehands.inventory.models import LunUse, StorageArray

MiB = 1024**2
# Binary units, as the arrays' own CLIs read them (ONTAP, Purity and PowerStore take 1g as 1 GiB).
_UNITS = {"": 1, "k": 1024, "m": MiB, "g": 1024**3, "t": 1024**4, "p": 1024**5}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(value: object, field: str = "size") -> int:
    """Bytes from ``150G``, ``150GiB``, ``1.5T`` or a whole number of bytes; a whole number of MiB.

    Raises ``InvalidRequest`` naming ``field``."""
    if isinstance(value, bool) or value is None or value == "":
        raise InvalidRequest(
            f"{field} is missing", fix="give the new size, e.g. 150G (units are binary: GiB)"
        )
    if isinstance(value, int):
        size = value
    else:
        found = _SIZE.match(str(value))
        if not found:
            raise InvalidRequest(
                f"{field} {value!r} is not a size", fix="write it like 150G, 1.5T or 161061273600 (bytes)"
            )
        size = int(float(found.group(1)) * _UNITS[found.group(2).lower()])
    if size <= 0 or size % MiB:
        raise InvalidRequest(
            f"{field} {value!r} is not a positive whole number of MiB",
            fix="arrays allocate in MiB or larger units; round it, e.g. 150G",
        )
    return size


@dataclass(frozen=True)
class ExpandRequest:
    lun: str
    size: int
    use: LunUse


def parse_expand(params: dict[str, Any], array: StorageArray) -> ExpandRequest:
    """The request in ``params`` (``lun``, ``size``) for ``array``; raises ``InvalidRequest`` naming the field
    when the LUN is not one the inventory maps to hosts, or the size is malformed."""
    lun = params.get("lun")
    if not isinstance(lun, str) or not lun:
        raise InvalidRequest("lun is missing", fix=f"name a LUN of {array.name}: {_known(array)}")
    use = array.luns.get(lun)
    if use is None:
        raise InvalidRequest(
            f"lun {lun!r} of array {array.name} is not in the inventory",
            fix=f"LUNs of {array.name} with their hosts: {_known(array)}; add it under luns: with the hosts "
            "that use it, so they are rescanned and grown too",
        )
    return ExpandRequest(lun, parse_size(params.get("size")), use)


def _known(array: StorageArray) -> str:
    return ", ".join(sorted(array.luns)) or "none"
