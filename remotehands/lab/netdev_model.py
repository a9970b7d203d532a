"""What every simulated network device of the lab implements, whatever its platform (``netdev_asa``,
``netdev_ios``, ``netdev_junos``, ``netdev_fortios``); ``netdev_sim`` serves them over SSH.

A ``NetDevice`` holds what the device keeps between connections: its running (and saved or committed)
configuration, pending commit-confirmed or revert timers and the faults it was told to show. A
``DeviceSession`` is one interactive CLI login: its mode (exec, config, a sub-mode) and prompt. The SSH server
feeds a session one line at a time and writes back ``Reply.output`` followed by the session's prompt.

Faults (``NetDevice.faults``, set through ``remotehands.lab.faults``) count configuration lines that change
something (``set``/``no``/``delete`` lines, an ACE; not the lines that only enter or leave a mode):
- ``reject_second_line``: the second such line of a config session is rejected with the platform's error
  and not applied; one shot (cleared when it fires);
- ``drop_after_first_line``: the first such line is applied, then the connection is dropped; one shot;
- ``no_return_after_commit``: the commit (Junos ``commit confirmed``, IOS leaving a ``revert timer`` config
  session, FortiOS's first unsaved change, ASA ``write memory``) takes effect, the connection is dropped and
  the device accepts no login until its revert timer reverts the change; one shot.

Time: ``time_scale`` real seconds per simulated minute for the revert timers (the lab uses a few seconds so
tests can watch a timer expire).
"""

from __future__ import annotations

import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

REJECT_SECOND_LINE = "reject_second_line"
DROP_AFTER_FIRST_LINE = "drop_after_first_line"
NO_RETURN_AFTER_COMMIT = "no_return_after_commit"
NET_FAULTS = (REJECT_SECOND_LINE, DROP_AFTER_FIRST_LINE, NO_RETURN_AFTER_COMMIT)


@dataclass(frozen=True)
class Reply:
    """What the device answers to one line: ``output`` (lines joined with ``\\n``; the server sends
    ``\\r\\n``) and then the session's prompt, unless ``close`` drops the connection after the output."""

    output: str = ""
    close: bool = False


@dataclass(frozen=True)
class Zone:
    """A zone of the lab firewall as the inventory names it: interface (Junos: the security zone) and ACL."""

    interface: str
    acl: str | None = None


class NetDevice(ABC):
    """One simulated device, shared by all its sessions; every method is called with ``lock`` held."""

    platform: ClassVar[str]  # the Netmiko device_type it answers as
    ssh_banner: ClassVar[str] = "SSH-2.0-OpenSSH_8.0"

    def __init__(
        self,
        name: str,
        zones: dict[str, Zone],
        state_file: Path,
        *,
        time_scale: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.zones = zones
        self.state_file = state_file
        self.time_scale = time_scale
        self.clock = clock
        self.lock = threading.RLock()
        self.faults: set[str] = set()
        self.accepting = True  # False while ``no_return_after_commit`` keeps it unreachable
        self.commands: list[str] = []  # every line received, in order (tests read it)

    @abstractmethod
    def running_config(self) -> str:
        """The running configuration as the device's own full show command prints it, without the lines
        that change on their own (timestamps, version counters): tests compare it byte for byte."""

    @abstractmethod
    def new_session(self, user: str) -> DeviceSession:
        """A CLI session for ``user``, just logged in."""

    def tick(self, now: float) -> None:
        """Expire revert timers due at ``now`` (``clock`` time); called about every 50 ms."""
        return None

    def fire(self, fault: str) -> bool:
        """True once if ``fault`` is set (and clears it): faults are one-shot."""
        if fault in self.faults:
            self.faults.discard(fault)
            return True
        return False

    def minutes(self, count: float) -> float:
        """``count`` simulated minutes in ``clock`` seconds."""
        return count * self.time_scale

    def saved(self) -> None:
        """Write the running configuration to ``state_file`` (atomically); call after every change."""
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_name(f".{self.state_file.name}.{os.getpid()}.tmp")
        tmp.write_text(self.running_config())
        tmp.replace(self.state_file)


class DeviceSession(ABC):
    """One interactive login to a ``NetDevice``."""

    def __init__(self, device: NetDevice, user: str) -> None:
        self.device = device
        self.user = user

    def greeting(self) -> str:
        """Text sent after login, before the first prompt (a banner), if any."""
        return ""

    @abstractmethod
    def prompt(self) -> str:
        """The prompt for the current mode, exactly as sent (e.g. ``'fw-asa-01(config)# '``)."""

    @abstractmethod
    def handle(self, line: str) -> Reply:
        """Answer one line (without its line ending)."""

    def closed(self) -> None:
        """The connection ended (Junos ``configure private`` discards its candidate here)."""
        return None
