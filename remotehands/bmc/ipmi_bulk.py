"""Power status and cycle+confirm of many IPMI BMCs at once, with one result per host.

Which path a target takes (``plan``):

- **ipmipower** (FreeIPMI) when it is installed and at least ``IPMIPOWER_MIN_HOSTS`` targets share user name,
  password and port, their addresses are IPv4 literals or host names and the credentials fit a FreeIPMI
  config file (printable ASCII without blanks, ``#``, quotes or backslashes). One ipmipower process per such
  group drives all its BMCs in parallel from one poll loop, in C. Measured on 1,000 lab BMCs
  (``benchmarks/power.py``, 2 CPUs): status 0.5-0.7 s, cycle+confirm 1.8-2.1 s.
- **pyghmi** (``IpmiPower`` per target, ``threads`` at a time) for everything else: a few hosts, mixed
  credentials, IPv6, or no ipmipower. Lean: one session per host for a whole cycle+confirm. Same fleet:
  status 3.4-3.8 s, cycle+confirm 4.9-6.2 s (a pyghmi login costs 3-6 ms of Python per BMC).

ipmipower is run with ``-D LAN_2_0`` and ``--config-file`` naming a file (mode 0600, in a private 0700
temporary directory, removed afterwards) that holds user name and password: credentials never appear in a
command line. It labels each output line by host *without* the port, so one run takes one port and
distinct addresses; two targets on one ``address:port`` are refused (they are one BMC).

ipmipower prints nothing at all for a host whose BMC answers a chassis control with an error completion
code (measured: 0xD5, the refusal to cycle a host that is off; it is also the answer to a retransmitted
cycle the BMC already carried out, since FreeIPMI retransmits with a new sequence number). Such a host
is "silent", and its confirmation reads decide: read off, then on: confirmed (and logged as a warning);
on throughout: ``NeedsOperator`` (no evidence the cycle ran); off until ``timeout``: ``DeviceRefused``
(a host that was off; note that it keeps the whole call waiting ``timeout``).

Cycle+confirm sends one power cycle per host, then reads the hosts not yet confirmed in rounds (back-off
``first_wait`` doubling up to ``max_wait``, from the start of a round) until ``timeout``, with the rule of
``perform_and_confirm``: confirmed when the host reads on after having read off, or reads on at a second
read. Every failure is that host's result; no host's failure hides another's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, TypeVar

from remotehands.bmc.base import Confirmation, PowerAction, PowerState
from remotehands.bmc.ipmi import IpmiPower
from remotehands.bmc.ipmipower import (
    CYCLE_RETRANSMIT_MS,
    SILENT,
    STATUS_RETRANSMIT_MS,
    BulkStatus,
    CycleOutcome,
    IpmipowerRunner,
    IpmiTarget,
    fits_ipmipower,
    ipmipower_path,
)
from remotehands.errors import (
    BadInput,
    DeviceRefused,
    DeviceUnreachable,
    InvalidRequest,
    NeedsOperator,
    RemoteHandsError,
    VerificationFailed,
)

__all__ = [
    "IPMIPOWER_MIN_HOSTS",
    "Batch",
    "IpmiTarget",
    "IpmipowerRunner",
    "Route",
    "bulk_cycle_and_confirm",
    "bulk_status",
    "ipmipower_path",
    "plan",
]

log = logging.getLogger(__name__)

IPMIPOWER_MIN_HOSTS = 8

R = TypeVar("R")
BulkCycle = dict[str, Confirmation | RemoteHandsError]


class Route(StrEnum):
    IPMIPOWER = "ipmipower"
    PYGHMI = "pyghmi"


@dataclass(frozen=True)
class Batch:
    """Targets driven together: one ipmipower process, or one pool of pyghmi sessions."""

    route: Route
    targets: tuple[IpmiTarget, ...]


def plan(
    targets: Iterable[IpmiTarget], *, method: str = "auto", min_hosts: int = IPMIPOWER_MIN_HOSTS
) -> tuple[list[Batch], dict[str, RemoteHandsError]]:
    """Split ``targets`` into batches (module docstring) and per-target refusals (a shared address:port).

    ``method`` is ``auto``, ``ipmipower`` (every target that can, regardless of ``min_hosts``) or
    ``pyghmi``. Raises ``InvalidRequest`` for duplicate names or an unknown method, ``BadInput`` when
    ``ipmipower`` is asked for and not installed.
    """
    targets = list(targets)
    if method not in ("auto", "ipmipower", "pyghmi"):
        raise InvalidRequest(f"unknown bulk IPMI method {method!r}", fix="use auto, ipmipower or pyghmi")
    names = [t.name for t in targets]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise InvalidRequest(f"host names given twice: {', '.join(twice)}", fix="name each host once")
    if method == "ipmipower" and ipmipower_path() is None:
        raise BadInput(
            "ipmipower is not installed", fix="install the Debian package freeipmi-tools, or use method auto"
        )
    refused: dict[str, RemoteHandsError] = {}
    first_at: dict[tuple[str, int], str] = {}
    unique: list[IpmiTarget] = []
    for t in targets:
        other = first_at.setdefault((t.address.lower(), t.port), t.name)
        if other != t.name:
            refused[t.name] = InvalidRequest(
                f"IPMI BMC {t.device} of {t.name} is also {other}'s; a bulk action drives each BMC once",
                fix="check power.address and power.port of both hosts in the inventory",
            )
        else:
            unique.append(t)
    use_ipmipower = method != "pyghmi" and ipmipower_path() is not None
    groups: dict[tuple[str, str, int], list[IpmiTarget]] = {}
    rest: list[IpmiTarget] = []
    for t in unique:
        if use_ipmipower and fits_ipmipower(t):
            groups.setdefault((t.username, t.password, t.port), []).append(t)
        else:
            rest.append(t)
    batches: list[Batch] = []
    for group in groups.values():
        if method == "ipmipower" or len(group) >= min_hosts:
            batches.append(Batch(Route.IPMIPOWER, tuple(group)))
        else:
            rest.extend(group)
    if rest:
        batches.append(Batch(Route.PYGHMI, tuple(rest)))
    return batches, refused


def bulk_status(
    targets: Iterable[IpmiTarget],
    *,
    timeout: float = 5.0,
    method: str = "auto",
    threads: int = 32,
    min_hosts: int = IPMIPOWER_MIN_HOSTS,
) -> BulkStatus:
    """Read every target's power state; ``timeout`` bounds each BMC's session (seconds).

    Returns ``{name: PowerState or the error for that host}`` for every target: ``DeviceUnreachable`` for
    a BMC that does not answer, ``DeviceRefused`` for one that refuses (credentials included). Raises only
    for a bad call (``plan``).
    """
    batches, refused = plan(targets, method=method, min_hosts=min_hosts)
    results: BulkStatus = dict(refused)

    def one(batch: Batch) -> BulkStatus:
        with _runner(batch, timeout, threads, STATUS_RETRANSMIT_MS) as runner:
            return runner.read(list(batch.targets))

    for found in _each(batches, one):
        results.update(found)
    return results


def bulk_cycle_and_confirm(
    targets: Iterable[IpmiTarget],
    *,
    timeout: float = 60.0,
    session_timeout: float = 5.0,
    first_wait: float = 0.2,
    max_wait: float = 0.5,
    method: str = "auto",
    threads: int = 32,
    min_hosts: int = IPMIPOWER_MIN_HOSTS,
) -> BulkCycle:
    """Power-cycle every target once and confirm it back on within ``timeout`` seconds (module docstring).

    Returns ``{name: Confirmation or the error for that host}``: ``DeviceRefused``/``DeviceUnreachable``
    when the cycle was not taken, ``VerificationFailed`` when the host was not seen back on in time,
    ``NeedsOperator`` when ipmipower reported nothing for the cycle and the host never read off.
    """
    batches, refused = plan(targets, method=method, min_hosts=min_hosts)
    results: BulkCycle = dict(refused)

    def one(batch: Batch) -> BulkCycle:
        with _runner(batch, session_timeout, threads, CYCLE_RETRANSMIT_MS) as runner:
            return _cycle_and_confirm(runner, list(batch.targets), timeout, first_wait, max_wait)

    for found in _each(batches, one):
        results.update(found)
    return results


# -- cycle, then confirm -----------------------------------------------------------------------------------


class _Runner(Protocol):
    def read(self, targets: list[IpmiTarget]) -> BulkStatus: ...

    def cycle(self, targets: list[IpmiTarget]) -> dict[str, CycleOutcome]: ...

    def close(self) -> None: ...

    def __enter__(self) -> _Runner: ...

    def __exit__(self, *exc_info: object) -> None: ...


@dataclass
class _Watch:
    target: IpmiTarget
    silent: bool
    reads: int = 0
    seen_off: bool = False
    last: PowerState | None = None
    last_error: RemoteHandsError | None = None


def _cycle_and_confirm(
    runner: _Runner,
    targets: list[IpmiTarget],
    timeout: float,
    first_wait: float,
    max_wait: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> BulkCycle:
    start = clock()
    results: BulkCycle = {}
    pending: dict[str, _Watch] = {}
    sent = runner.cycle(targets)
    for t in targets:
        outcome = sent[t.name]
        if isinstance(outcome, RemoteHandsError):
            results[t.name] = outcome
        else:
            pending[t.name] = _Watch(t, silent=outcome == SILENT)
    wait = first_wait
    while pending:
        round_start = clock()
        states = runner.read([w.target for w in pending.values()])
        for name, w in list(pending.items()):
            state = states[name]
            if isinstance(state, RemoteHandsError):
                w.last_error = state
                if not state.retryable:  # refused now (e.g. credentials changed): waiting cannot help
                    results[name] = state
                    del pending[name]
                continue
            w.reads += 1
            w.seen_off = w.seen_off or state is PowerState.OFF
            w.last = state
            if state is PowerState.ON and (w.seen_off or w.reads > 1):
                results[name] = _confirmed(w, clock() - start)
                del pending[name]
        if not pending:
            break
        if clock() - start >= timeout:
            for name, w in pending.items():
                results[name] = _unconfirmed(w, timeout)
            break
        sleep(max(0.0, wait - (clock() - round_start)))
        wait = min(wait * 2, max_wait)
    return results


def _confirmed(w: _Watch, seconds: float) -> Confirmation | RemoteHandsError:
    if w.silent and not w.seen_off:
        return NeedsOperator(
            f"ipmipower printed no result for the power cycle of IPMI BMC {w.target.device} "
            "and the host never read off: there is no evidence the cycle ran",
            fix="read the BMC's event log (ipmitool sel list) before cycling this host again",
        )
    if w.silent:
        log.warning(
            "%s: ipmipower printed no result for the cycle of %s; the host read off, then on: confirmed",
            w.target.name,
            w.target.device,
        )
    return Confirmation(PowerAction.CYCLE, PowerState.ON, sent=True, reads=w.reads, seconds=seconds)


def _unconfirmed(w: _Watch, timeout: float) -> RemoteHandsError:
    t = w.target
    if w.silent and w.last is PowerState.OFF:
        return DeviceRefused(
            f"IPMI BMC {t.device} did not take the power cycle (ipmipower printed no result, as it does "
            "when the BMC answers with an error) and the host reads off",
            fix="a BMC refuses to cycle a host that is off: power it on instead",
        )
    if w.last is None:
        reason = f": {w.last_error.message}" if w.last_error is not None else ""
        return DeviceUnreachable(
            f"IPMI BMC {t.device} took the power cycle but has not answered a status read since{reason}",
            fix="check the host at the console; the BMC may be hung (a BMC cold reset may help)",
        )
    return VerificationFailed(
        f"IPMI BMC {t.device}: after cycle the host reads {w.last.value}, expected on within {timeout:.0f}s",
        fix="check the host at the console; the BMC may be hung (a BMC cold reset may help)",
    )


def _each(batches: list[Batch], work: Callable[[Batch], R]) -> list[R]:
    if len(batches) <= 1:
        return [work(b) for b in batches]
    with ThreadPoolExecutor(max_workers=min(8, len(batches)), thread_name_prefix="ipmi-bulk") as pool:
        return list(pool.map(work, batches))


def _runner(batch: Batch, timeout: float, threads: int, retransmit_ms: int) -> _Runner:
    if batch.route is Route.IPMIPOWER:
        return IpmipowerRunner(batch.targets, timeout=timeout, retransmit_ms=retransmit_ms)
    return _PyghmiRunner(batch.targets, timeout=timeout, threads=threads)


# -- FreeIPMI's ipmipower ------------------------------------------------------------------------------------


# ipmipower's per-host messages (ipmipower_output.c): those saying the credentials were refused, and those
# saying the BMC did not answer (in time). Any other message is the BMC refusing something else.
class _PyghmiRunner:
    """``IpmiPower`` per target, called from a thread pool; sessions stay open until ``close()``."""

    def __init__(self, targets: Iterable[IpmiTarget], *, timeout: float, threads: int) -> None:
        self._drivers = {
            t.name: IpmiPower(t.address, t.port, t.username, t.password, timeout=timeout) for t in targets
        }
        self._threads = max(1, min(threads, len(self._drivers)))
        self._pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> _PyghmiRunner:
        self._pool = ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix="ipmi-bulk-pyghmi")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def read(self, targets: list[IpmiTarget]) -> BulkStatus:
        return self._each(targets, lambda d: d.state())

    def cycle(self, targets: list[IpmiTarget]) -> dict[str, CycleOutcome]:
        done = self._each(targets, lambda d: d.cycle())
        return {name: (r if isinstance(r, RemoteHandsError) else "ok") for name, r in done.items()}

    def close(self) -> None:
        if self._pool is None:
            return
        drivers = list(self._drivers.values())
        list(self._pool.map(lambda d: d.close(), drivers))
        self._pool.shutdown()
        self._pool = None

    def _each(
        self, targets: list[IpmiTarget], call: Callable[[IpmiPower], R]
    ) -> dict[str, R | RemoteHandsError]:
        assert self._pool is not None, "used outside its with block"

        def one(t: IpmiTarget) -> R | RemoteHandsError:
            try:
                return call(self._drivers[t.name])
            except RemoteHandsError as exc:
                return exc

        return dict(zip((t.name for t in targets), self._pool.map(one, targets), strict=True))
