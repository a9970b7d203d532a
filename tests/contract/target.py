"""What a contract target is: one power driver wired to one simulator, with a way to count what it received."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from remotehands.bmc.base import PowerAction, PowerDriver


@dataclass(frozen=True)
class ContractTarget:
    """A driver factory plus the simulator's view of the commands it received.

    ``make(password=..., port=..., timeout=...)`` builds a driver for the target host (a wrong password or a
    dead port when asked). ``received(action)`` counts the commands of that kind the device executed so far,
    as the simulator logged them. ``settle`` is how long the device takes, at most, to finish a change.
    """

    name: str
    make: Callable[..., PowerDriver]
    received: Callable[[PowerAction], int]
    settle: float = 5.0
    secret: str = ""
    extra: dict[str, object] = field(default_factory=dict)
