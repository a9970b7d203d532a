"""What every array driver offers (``ArrayDriver``) and what it answers with (``Lun``, ``Room``).

A driver is built for one inventory ``StorageArray`` by ``remotehands.storage.arrays.driver_for``; it logs in
when first used and ``close`` logs out. Sizes are bytes everywhere; ``naa`` is the LUN's SCSI name as the
hosts see it (``naa.`` and 32 lowercase hex digits), which is how the host side finds the device.

Errors (all ``RemoteHandsError``): a LUN the array does not have is ``InvalidRequest`` naming the field
``lun``; a refused login or a 4xx is ``DeviceRefused`` carrying the array's own message; no answer, a TLS
failure to connect or a 5xx is ``DeviceUnreachable`` (the array's message included when it sent one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

GiB = 1024**3


@dataclass(frozen=True)
class Lun:
    id: str  # the array's own id: ONTAP LUN uuid, Pure volume id, PowerStore volume id
    name: str  # as the inventory names it: ONTAP path /vol/VOL/LUN, Pure and PowerStore volume name
    size: int  # provisioned size in bytes
    naa: str  # naa.<32 hex digits>, lowercase


@dataclass(frozen=True)
class Room:
    """How much the LUN may grow on this array."""

    free: int  # bytes its container (ONTAP volume, Pure array, PowerStore appliance) can still give
    max_size: int | None  # the largest size the array allows for this LUN (ONTAP max resize size)
    container: str  # for messages: "volume vol_esx (aggregate aggr1)", "array san-pure-01", ...


class ArrayDriver(Protocol):
    name: str  # the array's inventory name

    def lun(self, name: str) -> Lun:
        """The LUN called ``name``; ``InvalidRequest`` (field ``lun``) when the array has none."""
        ...

    def room(self, lun: Lun) -> Room:
        """Free space and limits for growing ``lun``."""
        ...

    def resize(self, lun: Lun, size: int) -> None:
        """Ask the array to make ``lun`` ``size`` bytes (only ever larger; callers check first)."""
        ...

    def close(self) -> None:
        """Log out (errors ignored) and close the connection."""
        ...


def gib(size: int) -> str:
    """``size`` bytes for a message: ``100 GiB``, ``150.5 GiB``."""
    value = size / GiB
    return f"{value:.0f} GiB" if value == int(value) else f"{value:.1f} GiB"
