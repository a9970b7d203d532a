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
import os
import re
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol, TypeVar

from remotehands import redaction
from remotehands.bmc.base import Confirmation, PowerAction, PowerState
from remotehands.bmc.ipmi import IpmiPower
from remotehands.errors import (
    BadInput,
    DeviceRefused,
    DeviceUnreachable,
    InvalidRequest,
    NeedsOperator,
    RemoteHandsError,
    VerificationFailed,
)

log = logging.getLogger(__name__)

IPMIPOWER_MIN_HOSTS = 8
# A chassis control answered later than this is sent again by ipmipower, with a new sequence number: the
# BMC cannot tell it from a new command. At its default 0.4 s, 35% of the cycles sent to a freshly started
# 1,000-BMC lab fleet went out twice (the second refused with 0xD5 as the host was off, and ipmipower then
# printed nothing for the host). 1 s: a busy BMC is asked once.
CYCLE_RETRANSMIT_MS = 1000
STATUS_RETRANSMIT_MS = 400
_CONFIG_UNSAFE = frozenset(" \"'#\\")  # FreeIPMI's config parser reads these as syntax
_HOSTLIST_SAFE = re.compile(r"[A-Za-z0-9.-]+")

R = TypeVar("R")
BulkStatus = dict[str, PowerState | RemoteHandsError]
BulkCycle = dict[str, Confirmation | RemoteHandsError]


@dataclass(frozen=True)
class IpmiTarget:
    """One host's BMC with resolved credentials. ``name`` keys the results."""

    name: str
    address: str
    port: int
    username: str
    password: str = field(repr=False)

    @property
    def device(self) -> str:
        return f"{self.address}:{self.port}"


class Route(StrEnum):
    IPMIPOWER = "ipmipower"
    PYGHMI = "pyghmi"


@dataclass(frozen=True)
class Batch:
    """Targets driven together: one ipmipower process, or one pool of pyghmi sessions."""

    route: Route
    targets: tuple[IpmiTarget, ...]


def ipmipower_path() -> str | None:
    """The ipmipower executable, or None when FreeIPMI's ipmipower is not installed."""
    return shutil.which("ipmipower") or shutil.which("ipmipower", path="/usr/sbin:/sbin")


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
        if use_ipmipower and _fits_ipmipower(t):
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

SILENT = "silent"  # ipmipower printed nothing for the host (see the module docstring)
CycleOutcome = str | RemoteHandsError  # "ok", SILENT, or the error


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
_CREDENTIALS_REFUSED = {
    "username invalid",
    "password invalid",
    "password length invalid",
    "k_g invalid",
    "privilege level cannot be obtained for this user",
    "authentication type unavailable for attempted privilege level",
}
_UNANSWERED = {
    "connection timeout",
    "session timeout",
    "password verification timeout",  # a wrong password or a timeout: FreeIPMI cannot tell here
    "not discovered",
    "bad connection",
    "BMC busy",
    "out of resources",
    "invalid hostname",
    "unconfigured hostname",
}


class IpmipowerRunner:
    """ipmipower runs for one group of targets sharing user, password and port (distinct addresses).

    Entering creates the config file (0600, in a private 0700 directory); leaving removes both. Every run
    is ``argv(operation, targets)``: no secret in it.
    """

    def __init__(
        self,
        targets: Iterable[IpmiTarget],
        *,
        timeout: float = 5.0,
        retransmit_ms: int = STATUS_RETRANSMIT_MS,
        executable: str | None = None,
    ) -> None:
        self.targets = tuple(targets)
        first = self.targets[0]
        if any(
            (t.username, t.password, t.port) != (first.username, first.password, first.port)
            for t in self.targets
        ):
            raise InvalidRequest("one ipmipower run takes one user name, password and port")
        self.timeout = timeout
        self.retransmit_ms = min(retransmit_ms, int(timeout * 1000))
        self.executable = executable or ipmipower_path() or "ipmipower"
        self.config_file: Path | None = None
        self._by_label = {t.address.lower(): t for t in self.targets}
        redaction.register(first.password)

    def __enter__(self) -> IpmipowerRunner:
        first = self.targets[0]
        directory = Path(tempfile.mkdtemp(prefix="rh-ipmipower-"))  # mode 0700
        path = directory / "ipmipower.conf"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(f"username {first.username}\npassword {first.password}\n")
        self.config_file = path
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove the config file and its directory. Safe to call twice."""
        if self.config_file is not None:
            shutil.rmtree(self.config_file.parent, ignore_errors=True)
            self.config_file = None

    def argv(self, operation: str, targets: Iterable[IpmiTarget]) -> list[str]:
        """The command line of one run (``operation``: ``--stat`` or ``--cycle``): addresses, never secrets."""
        if self.config_file is None:
            raise InvalidRequest("IpmipowerRunner is used outside its with block")
        argv = [
            self.executable,
            "-D",
            "LAN_2_0",
            "--config-file",
            str(self.config_file),
            "--always-prefix",
            f"--session-timeout={int(self.timeout * 1000)}",
            f"--retransmission-timeout={self.retransmit_ms}",
            "-h",
            ",".join(f"{t.address}:{t.port}" for t in targets),
            operation,
        ]
        fanout = _fanout_limit()
        if fanout is not None:
            argv[-1:-1] = ["--fanout", str(fanout)]
        return argv

    def read(self, targets: list[IpmiTarget]) -> BulkStatus:
        """One ``--stat`` run: each target's state or error."""
        found: BulkStatus = {}
        for t, said in self._run("--stat", targets).items():
            if isinstance(said, RemoteHandsError):
                found[t.name] = said
            elif said in ("on", "off"):
                found[t.name] = PowerState(said)
            elif said is None:
                found[t.name] = DeviceUnreachable(
                    f"ipmipower printed no power state for IPMI BMC {t.device}",
                    fix="retry; read this host alone with remotehands power status to see the BMC's answer",
                )
            else:
                found[t.name] = _error(t, said, "read power state")
        return found

    def cycle(self, targets: list[IpmiTarget]) -> dict[str, CycleOutcome]:
        """One ``--cycle`` run: ``ok``, ``SILENT`` (no line printed) or the error, per target."""
        found: dict[str, CycleOutcome] = {}
        for t, said in self._run("--cycle", targets).items():
            if isinstance(said, RemoteHandsError):
                found[t.name] = said
            elif said == "ok":
                found[t.name] = "ok"
            elif said is None:
                found[t.name] = SILENT
            else:
                found[t.name] = _error(t, said, "power cycle")
        return found

    def _run(
        self, operation: str, targets: list[IpmiTarget]
    ) -> dict[IpmiTarget, str | RemoteHandsError | None]:
        argv = self.argv(operation, targets)
        started = time.monotonic()
        limit = self.timeout + 10.0 + len(targets) / 100
        try:
            done = subprocess.run(
                argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=limit, check=False
            )
        except subprocess.TimeoutExpired:
            failure: RemoteHandsError | None = DeviceUnreachable(
                f"ipmipower {operation} did not finish within {limit:.0f}s", fix=_unanswered_fix()
            )
            stdout = ""
        except OSError as exc:
            failure, stdout = DeviceUnreachable(f"ipmipower could not be run: {exc}", fix=_install_fix()), ""
        else:
            stdout = done.stdout
            failure = None
            if done.returncode not in (0, 1):
                failure = DeviceUnreachable(
                    f"ipmipower {operation} failed with status {done.returncode}: "
                    + (done.stderr.strip().splitlines() or ["no message"])[-1],
                    fix=_install_fix(),
                )
        said: dict[IpmiTarget, str | RemoteHandsError | None] = dict.fromkeys(targets)
        for line in stdout.splitlines():
            label, sep, text = line.partition(": ")
            target = self._by_label.get(label.strip().lower())
            if sep and target is not None and target in said:
                said[target] = text.strip()
        if failure is not None:
            said.update({t: failure for t, value in said.items() if value is None})
        log.info("ipmipower %s: %d hosts in %.3fs", operation, len(targets), time.monotonic() - started)
        return said


def _error(t: IpmiTarget, said: str, what: str) -> RemoteHandsError:
    if said in _CREDENTIALS_REFUSED:
        return DeviceRefused(
            f"IPMI BMC {t.device} refused the login of user {t.username!r} ({what}): ipmipower says {said!r}",
            fix="check power.credentials of this host in the inventory (the user name and the secret its password "
            "reference points at) and that the user has operator or administrator rights",
        )
    if said in _UNANSWERED:
        return DeviceUnreachable(
            f"IPMI BMC {t.device} did not answer ({what}): ipmipower says {said!r}", fix=_unanswered_fix()
        )
    return DeviceRefused(
        f"IPMI BMC {t.device} refused to {what}: ipmipower says {said!r}",
        fix="read this host alone with remotehands power status to see the BMC's answer; check the BMC firmware",
    )


def _unanswered_fix() -> str:
    return (
        "check that the BMC is up and answers on its UDP port from this machine (management network, VLAN, "
        "firewall); a BMC that stays silent may need a cold reset or an AC power cycle"
    )


def _install_fix() -> str:
    return "check the ipmipower installation (Debian package freeipmi-tools) or use method pyghmi"


def _fanout_limit() -> int | None:
    """ipmipower opens a socket per host at once: stay under this process's open-file limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= 4096:
        return None
    return max(16, soft - 128)


def _fits_ipmipower(t: IpmiTarget) -> bool:
    """An address ipmipower's host list takes as is, and credentials its config file takes as is."""
    return (
        _HOSTLIST_SAFE.fullmatch(t.address) is not None
        and all(_fits_config(v) for v in (t.username, t.password))
        and 1 <= t.port <= 65535
    )


def _fits_config(value: str) -> bool:
    return bool(value) and value.isascii() and value.isprintable() and not (set(value) & _CONFIG_UNSAFE)


# -- pyghmi, one session per host -----------------------------------------------------------------------------


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
