"""The driver for an inventory array, chosen by its platform; the vendor module is imported on first use."""

from __future__ import annotations

from remotehands.inventory.models import StorageArray
from remotehands.storage.base import ArrayDriver


def driver_for(array: StorageArray) -> ArrayDriver:
    """A driver for ``array`` (no I/O until it is used); close it when done."""
    if array.platform == "ontap":
        from remotehands.storage.ontap import OntapArray

        return OntapArray(array)
    if array.platform == "pure":
        from remotehands.storage.pure import PureArray

        return PureArray(array)
    from remotehands.storage.powerstore import PowerStoreArray

    return PowerStoreArray(array)
