"""Bulk IPMI through FreeIPMI's ``ipmipower``: credentials in a 0600 config file in a private directory
(never on the command line, removed afterwards), one process for many BMCs, its output parsed per host."""

from __future__ import annotations

import logging
import os
import re
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from remotehands import redaction
from remotehands.bmc.base import PowerState
from remotehands.errors import (
    DeviceRefused,
    DeviceUnreachable,
    InvalidRequest,
    RemoteHandsError,
)

log = logging.getLogger(__name__)


# A chassis control answered later than this is sent again by ipmipower, with a new sequence number: the
# BMC cannot tell it from a new command. At its default 0.4 s, 35% of the cycles sent to a freshly started
# 1,000-BMC lab fleet went out twice (the second refused with 0xD5 as the host was off, and ipmipower then
# printed nothing for the host). 1 s: a busy BMC is asked once.
CYCLE_RETRANSMIT_MS = 1000
STATUS_RETRANSMIT_MS = 400
_CONFIG_UNSAFE = frozenset(" \"'#\\")  # FreeIPMI's config parser reads these as syntax
_HOSTLIST_SAFE = re.compile(r"[A-Za-z0-9.-]+")

BulkStatus = dict[str, PowerState | RemoteHandsError]


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


def ipmipower_path() -> str | None:
    """The ipmipower executable, or None when FreeIPMI's ipmipower is not installed."""
    return shutil.which("ipmipower") or shutil.which("ipmipower", path="/usr/sbin:/sbin")


SILENT = "silent"  # ipmipower printed nothing for the host (see the module docstring)
CycleOutcome = str | RemoteHandsError  # "ok", SILENT, or the error


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


def fits_ipmipower(t: IpmiTarget) -> bool:
    """An address ipmipower's host list takes as is, and credentials its config file takes as is."""
    return (
        _HOSTLIST_SAFE.fullmatch(t.address) is not None
        and all(_fits_config(v) for v in (t.username, t.password))
        and 1 <= t.port <= 65535
    )


def _fits_config(value: str) -> bool:
    return bool(value) and value.isascii() and value.isprintable() and not (set(value) & _CONFIG_UNSAFE)


# -- pyghmi, one session per host -----------------------------------------------------------------------------
