"""Storage actions: ``storage.expand_lun`` (grow a LUN on its array, then on every host that uses it)."""

from __future__ import annotations

from typing import Any

from remotehands.inventory.models import StorageArray
from remotehands.jobs import actions
from remotehands.storage.pipeline import expand_steps
from remotehands.storage.request import parse_expand

# The array answers in seconds; each host is a few SSH logins; a VMFS grow on a busy host takes minutes.
DEADLINE_S = 1800


def check_expand(params: dict[str, Any], array: StorageArray) -> None:
    """A request is refused at intake when the LUN is not one the inventory maps to hosts, or the size is
    malformed (the array itself is asked in the job's precheck)."""
    parse_expand(params, array)


actions.register(
    actions.Action(
        "storage.expand_lun",
        "grow a LUN on its array, then rescan and grow it on every host that uses it",
        lambda: expand_steps({}),
        DEADLINE_S,
        "LUN expansion",
        target_kind="storage",
        check_params=check_expand,
        steps_for=expand_steps,
    )
)
