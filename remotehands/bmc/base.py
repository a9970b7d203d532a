"""Power interfaces and the one act -> wait -> read-back loop every driver shares.

A driver only *acts* and *reads*; it never waits for an effect. ``perform_and_confirm`` does the waiting,
with back-off and a timeout, so no driver re-implements it. "on" never reboots a host that is already on,
and "off" on a host that is already off is success.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from remotehands.errors import VerificationFailed

log = logging.getLogger(__name__)


class PowerState(StrEnum):
    ON = "on"
    OFF = "off"
    UNKNOWN = "unknown"


class PowerAction(StrEnum):
    ON = "on"
    OFF = "off"
    SOFT_OFF = "soft_off"
    CYCLE = "cycle"


@dataclass(frozen=True)
class PowerEvent:
    """A power action the equipment itself recorded (an IPMI SEL entry, a Redfish log entry)."""

    marker: int  # monotonic position in the device's log (e.g. SEL record id)
    action: PowerAction
    timestamp: int  # device clock, seconds since the epoch


@runtime_checkable
class PowerDriver(Protocol):
    """Reads and sets one host's power. Methods act and return; they do not wait for the effect.

    Every method raises ``DeviceUnreachable`` when the device does not answer and ``DeviceRefused``
    when it answers with an error.
    """

    name: str

    def state(self) -> PowerState: ...

    def set_state(self, action: PowerAction) -> None:
        """Send ON, OFF or SOFT_OFF as one command (no read first, no wait)."""
        ...

    def cycle(self) -> None:
        """Send one power-cycle command."""
        ...

    def supported(self) -> frozenset[PowerAction]: ...

    def close(self) -> None: ...


@runtime_checkable
class PowerEvidence(Protocol):
    """A device that records power actions in a log we can read back (IPMI SEL).

    The job engine uses it to tell, after a crash, whether a power command it was about to send was
    actually received: read ``event_marker`` before acting, then ``events_since(marker)`` to look.
    """

    def event_marker(self) -> int: ...

    def events_since(self, marker: int) -> list[PowerEvent]: ...


class BootDevice(StrEnum):
    PXE = "pxe"
    DISK = "disk"
    CD = "cd"
    HTTP = "http"  # UEFI HTTP boot


@dataclass(frozen=True)
class BootSetting:
    device: BootDevice | None  # None: no override set (the BIOS order applies)
    once: bool
    uefi: bool | None  # None: the BMC does not say


@runtime_checkable
class BootControl(Protocol):
    """Sets and reads the next boot device. Same error contract as ``PowerDriver``."""

    name: str

    def set_boot_device(self, device: BootDevice, *, once: bool = True, uefi: bool = True) -> None: ...

    def get_boot_device(self) -> BootSetting: ...

    def close(self) -> None: ...


@runtime_checkable
class VirtualMedia(Protocol):
    """Attaches an ISO by URL as a virtual CD, and detaches it. Same error contract as ``PowerDriver``."""

    name: str

    def insert(self, url: str) -> None: ...

    def eject(self) -> None: ...

    def inserted(self) -> str | None:
        """The URL currently inserted, or None."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Identify(Protocol):
    """Lights the chassis identify LED, so a technician finds the server in the rack."""

    def identify(self, seconds: int | None) -> None:
        """On for ``seconds`` (0: off), or until turned off (None)."""
        ...


@runtime_checkable
class OutletIdentity(Protocol):
    """A power path that can say which outlet it drives (a PDU outlet's name), checked before acting."""

    def outlet_name(self) -> str: ...


@dataclass(frozen=True)
class Confirmation:
    """What ``perform_and_confirm`` did: the final state, how many reads, and what it sent."""

    action: PowerAction
    state: PowerState
    sent: bool
    reads: int
    seconds: float


def expected_state(action: PowerAction) -> PowerState:
    return PowerState.OFF if action in (PowerAction.OFF, PowerAction.SOFT_OFF) else PowerState.ON


def perform_and_confirm(
    driver: PowerDriver,
    action: PowerAction,
    *,
    timeout: float = 60.0,
    first_wait: float = 0.2,
    max_wait: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Confirmation:
    """Act, then read back with exponential back-off until the expected state or ``timeout``.

    For ON/OFF/SOFT_OFF the current state is read first, and nothing is sent when the host is already
    there. For CYCLE, the host must be seen off (or the device must have recorded the cycle) and then on.
    Raises ``VerificationFailed`` when the state is not reached in time.
    """
    start = clock()
    reads = 0
    sent = False
    if action is not PowerAction.CYCLE:
        current = driver.state()
        reads += 1
        if current is expected_state(action):
            return Confirmation(action, current, sent=False, reads=reads, seconds=clock() - start)
        driver.set_state(action)
        sent = True
    else:
        driver.cycle()
        sent = True
    want = expected_state(action)
    wait = first_wait
    seen_off = False
    while True:
        current = driver.state()
        reads += 1
        seen_off = seen_off or current is PowerState.OFF
        done = current is want and (action is not PowerAction.CYCLE or seen_off or reads > 1)
        if done:
            return Confirmation(action, current, sent=sent, reads=reads, seconds=clock() - start)
        if clock() - start >= timeout:
            raise VerificationFailed(
                f"{driver.name}: after {action.value} the host reads {current.value}, expected {want.value} "
                f"within {timeout:.0f}s",
                fix="check the host at the console; the BMC may be hung (a BMC cold reset may help)",
            )
        sleep(wait)
        wait = min(wait * 2, max_wait)
