"""Power paths: a host may list several (e.g. redfish, then ipmi); try them in order and say what happened.

The first path that answers a state read is used for the whole job, so a job never switches protocol
half-way through a cycle. Every attempt is recorded: which path, whether it worked, and why not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from remotehands.bmc.base import PowerDriver, PowerState
from remotehands.errors import DeviceUnreachable, RemoteHandsError, SecretError
from remotehands.inventory.models import Host, PowerProfile

if TYPE_CHECKING:
    from remotehands.runtime import Runtime


@dataclass(frozen=True)
class Attempt:
    path: str
    ok: bool
    detail: str


def describe(profile: PowerProfile) -> str:
    """A path as an operator reads it: ``ipmi 10.0.1.4:623``, ``pdu-outlet pdu-r1-a#7``, ``manual``."""
    if profile.type == "pdu-outlet":
        return f"pdu-outlet {profile.pdu}#{profile.outlet}"
    if profile.type == "manual":
        return "manual"
    default_port = 623 if profile.type == "ipmi" else 443
    return f"{profile.type} {profile.address}:{profile.port or default_port}"


@dataclass
class OpenPath:
    """The path chosen for a job: its index among the host's paths, a driver (None for manual), the state
    read through it, and every attempt made to get there."""

    index: int
    profile: PowerProfile
    driver: PowerDriver | None
    state: PowerState
    attempts: list[Attempt]

    def summary(self) -> str:
        tried = "; ".join(f"{a.path}: {'ok' if a.ok else a.detail}" for a in self.attempts)
        return f"via {describe(self.profile)}" + (f" (tried {tried})" if len(self.attempts) > 1 else "")


def open_first(runtime: Runtime, host: Host, *, start: int = 0) -> OpenPath:
    """Try ``host``'s power paths from ``start`` in order; return the first that answers a state read.

    A manual path answers without a read (state UNKNOWN). Raises the last path's error, its message
    listing every attempt, when none answers; the error is retryable if any attempt's was.
    """
    attempts: list[Attempt] = []
    last: RemoteHandsError | None = None
    retryable = False
    for index, profile in enumerate(host.power_paths[start:], start=start):
        label = describe(profile)
        if profile.type == "manual":
            attempts.append(Attempt(label, True, "a technician acts"))
            return OpenPath(index, profile, None, PowerState.UNKNOWN, attempts)
        driver: PowerDriver | None = None
        try:
            driver = runtime.power_driver(host, profile)
            state = driver.state()
        except SecretError:
            raise  # a broken credential reference is the operator's to fix, not a reason to fall back
        except RemoteHandsError as exc:
            if driver is not None:
                driver.close()
            attempts.append(Attempt(label, False, str(exc)))
            last, retryable = exc, retryable or exc.retryable
            continue
        attempts.append(Attempt(label, True, state.value))
        return OpenPath(index, profile, driver, state, attempts)
    assert last is not None  # a host has at least one power path
    listing = "; ".join(f"{a.path}: {a.detail}" for a in attempts)
    if len(attempts) == 1:
        raise last
    error = DeviceUnreachable if retryable else type(last)
    raise error(f"no power path of {host.name} answered ({listing})", fix=last.fix)


def open_index(runtime: Runtime, host: Host, index: int) -> PowerDriver | None:
    """The driver of the path a job already chose (None for manual); no fallback once chosen."""
    profile = host.power_paths[index]
    return None if profile.type == "manual" else runtime.power_driver(host, profile)
