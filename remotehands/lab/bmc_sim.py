"""Simulated IPMI BMCs for the lab: pyghmi's BMC server class with power state, a SEL, boot options, chassis
identify and a command log.

One ``SimulatedBmc`` per simulated server, each on its own UDP port on a loopback address (pyghmi's server
keys sessions by client address and server port, so BMCs sharing a port would mix sessions up). Every BMC
of a process is served by the one pyghmi IO thread plus one listener thread (``serve_forever``).

What this adds to pyghmi's server class, and why:

- fixes to its RMCP+ session (cipher suites, unknown users, malformed packets, reused session objects):
  ``remotehands.lab.bmc_sim_session``;
- it survives stray packets (the class can raise ``AttributeError`` and end the listener loop);
- it does not execute a retransmitted request twice: pyghmi's client retransmits with the same IPMI
  sequence number after about 1 s without an answer, and the class would run a second power cycle. The
  cached answer is sent again and the log gets a ``retransmit`` line, never a second ``cycle``;
- boot flags kept per BMC (``remotehands.lab.bmc_sim_boot``), ``boot_override`` in the log, and chassis
  identify (``identify``), its state shown in Get Chassis Status as the specification says;
- packet loss on demand: ``packet_loss`` drops that fraction of the packets the BMC receives (login
  included), ``reply_loss`` that fraction of its answers to requests after it carried them out (the case
  its retransmit cache is for). Decisions come from a random generator seeded with ``seed`` and the BMC's
  name, so a run with the same packets drops the same ones. Each drop is a ``packet_dropped`` log line.

The command log is the lab's ground truth for tests: one JSON line per request a BMC answers, e.g.
``{"ts": 1718000000.1, "bmc": "esx-01", "command": "cycle", "code": 0}`` (``code`` = completion code).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import random
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyghmi.ipmi import bmc as pyghmi_bmc
from pyghmi.ipmi.private import session as ipmisession

from remotehands.bmc.base import PowerAction
from remotehands.bmc.ipmi_protocol import (
    CMD_CHASSIS_CONTROL,
    CMD_CHASSIS_IDENTIFY,
    CMD_GET_CHASSIS_STATUS,
    CMD_GET_SEL_ENTRY,
    CMD_GET_SEL_INFO,
    CMD_GET_SEL_TIME,
    CMD_GET_SYSTEM_BOOT_OPTIONS,
    CMD_RESERVE_SEL,
    CMD_SET_SYSTEM_BOOT_OPTIONS,
    NETFN_CHASSIS,
    NETFN_STORAGE,
    RECORD_SYSTEM_EVENT,
    SENSOR_SYSTEM_BOOT,
    SelRecord,
)
from remotehands.bmc.pyghmi_fixes import install_pyghmi_io_fix
from remotehands.lab.bmc_sim_boot import Reply, SimulatedBootOptions
from remotehands.lab.bmc_sim_sel import SimulatedSel
from remotehands.lab.bmc_sim_session import SimSession

log = logging.getLogger(__name__)

RETRANSMIT_WINDOW = 10.0  # seconds during which an identical request on a session is a retransmission
CC_OK = 0x00
CC_INVALID_DATA = 0xCC
CC_NOT_IN_PRESENT_STATE = 0xD5
CC_UNSPECIFIED = 0xFF

CONTROL_NAMES = {0: "power_off", 1: "power_on", 2: "cycle", 3: "reset", 5: "soft_off"}
IDENTIFY_DEFAULT_SECONDS = 15  # Chassis Identify without data (IPMI 2.0 section 28.5)
IDENTIFY_SUPPORTED = 0x40  # Get Chassis Status, misc. state bit 6: identify state is reported (bits 5:4)
IDENTIFY_STATES = {"off": 0b00, "timed": 0b01, "on": 0b10}


class CommandLog:
    """The JSON Lines file all BMCs of a lab append to, one line per request, flushed on every line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file = path.open("a", encoding="utf-8")

    def write(self, bmc: str, command: str, **extra: object) -> None:
        """Append one line ``{"ts", "bmc", "command", **extra}``."""
        line = json.dumps({"ts": time.time(), "bmc": bmc, "command": command, **extra})
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


class SimulatedBmc(pyghmi_bmc.Bmc):  # type: ignore[misc]
    """One simulated server's BMC: power on/off, chassis control, a SEL, on ``address``:``port`` (UDP).

    ``port=0`` picks a free port; ``self.port`` holds the real one once constructed (the socket is bound in
    the constructor). Cycle = off now, on after ``cycle_delay`` seconds; soft-off = off after
    ``soft_off_delay``. A newer power command cancels a pending transition. Each power command appends one
    SEL record (convention in ``remotehands.bmc.ipmi``) with ids counting up from 1. A power-on of a host
    that was off, a cycle and a reset boot the host, which uses up boot flags set for the next boot only.
    ``packet_loss``, ``reply_loss`` (fractions, 0-1) and ``seed``: see the module docstring.
    """

    def __init__(
        self,
        name: str,
        *,
        username: str,
        password: str,
        command_log: CommandLog,
        kind: str = "esxi",
        address: str = "127.0.0.1",
        port: int = 0,
        cycle_delay: float = 1.0,
        soft_off_delay: float = 0.3,
        powered_on: bool = True,
        packet_loss: float = 0.0,
        seed: int = 0,
        reply_loss: float = 0.0,
    ) -> None:
        if not ipaddress.ip_address(address).is_loopback:
            raise ValueError(f"simulated BMCs listen on loopback addresses only, not {address}")
        if not (0.0 <= packet_loss <= 1.0 and 0.0 <= reply_loss <= 1.0):
            raise ValueError(f"packet_loss and reply_loss are fractions 0-1, not {packet_loss}, {reply_loss}")
        self.address = address
        self.name = name
        self.kind = kind
        self.command_log = command_log
        self.cycle_delay = cycle_delay
        self.soft_off_delay = soft_off_delay
        self._lock = threading.RLock()
        self._on = powered_on
        self._generation = 0
        self._timers: list[threading.Timer] = []
        self.sel = SimulatedSel()
        self._stopped = False
        self.packet_loss, self.reply_loss = packet_loss, reply_loss
        self._loss = random.Random(f"{seed}/{name}")
        self.boot_options = SimulatedBootOptions()
        # Called as on_boot(device) after the host boots (power on, cycle, reset), device being what the
        # boot flags selected (``pxe``, ``cdrom``, ...) or ``disk`` without an override: the lab's PXE server.
        self.on_boot: Callable[[str], None] | None = None
        self._booting: str | None = None
        self._identify_until = 0.0  # time.monotonic() until which the identify light is on
        self._handlers: dict[tuple[int, int], Callable[[bytes], Reply]] = {
            (NETFN_CHASSIS, CMD_GET_CHASSIS_STATUS): self._chassis_status,
            (NETFN_CHASSIS, CMD_CHASSIS_CONTROL): self._chassis_control,
            (NETFN_CHASSIS, CMD_CHASSIS_IDENTIFY): self._chassis_identify,
            (NETFN_CHASSIS, CMD_SET_SYSTEM_BOOT_OPTIONS): self._set_boot_options,
            (NETFN_CHASSIS, CMD_GET_SYSTEM_BOOT_OPTIONS): self._get_boot_options,
            (NETFN_STORAGE, CMD_GET_SEL_INFO): self._logged(self.sel.info),
            (NETFN_STORAGE, CMD_RESERVE_SEL): self._logged(self.sel.reserve),
            (NETFN_STORAGE, CMD_GET_SEL_ENTRY): self._logged(self.sel.entry),
            (NETFN_STORAGE, CMD_GET_SEL_TIME): self._logged(self.sel.time),
        }
        install_pyghmi_io_fix()
        super().__init__({username: password}, port=port, address=address)
        # pyghmi routes session packets by the port the server believes it has: use the bound one.
        self.port = self.serversocket.getsockname()[1]

    @property
    def powered_on(self) -> bool:
        with self._lock:
            return self._on

    @property
    def identify_state(self) -> str:
        """The chassis identify light: ``off``, ``timed`` (on for a while) or ``on`` (until turned off)."""
        with self._lock:
            remaining = self._identify_until - time.monotonic()
        if remaining <= 0:
            return "off"
        return "on" if remaining == float("inf") else "timed"

    def drops_incoming(self) -> bool:
        """Whether to drop the packet just received (``packet_loss``); logs the drop."""
        return self._drops(self.packet_loss, "in")

    def _drops(self, fraction: float, direction: str) -> bool:
        if fraction <= 0.0:
            return False
        with self._lock:
            dropped = self._loss.random() < fraction
        if dropped:
            self.command_log.write(self.name, "packet_dropped", direction=direction)
        return dropped

    def sel_records(self) -> list[SelRecord]:
        """A copy of the SEL, oldest first."""
        return self.sel.records()

    def stop(self) -> None:
        """Stop answering (packets are dropped from now on) and cancel pending power transitions."""
        with self._lock:
            self._stopped = True
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()

    # -- pyghmi entry points ------------------------------------------------------------------------------

    def sessionless_data(self, data: Any, sockaddr: Any) -> None:
        if self._stopped or self.drops_incoming():
            return
        try:
            raw = bytes(data)
            if len(raw) >= 22 and raw[0] == 6 and raw[2:4] == b"\xff\x07" and raw[4] == 6 and raw[5] == 0x10:
                SimSession(self.authdata, self.kg, sockaddr, self.serversocket, raw[16:], self.uuid, bmc=self)
                return
            super().sessionless_data(data, sockaddr)
        except Exception as exc:  # a stray packet must not end the listener
            log.warning("%s: ignored a stray packet from %s (%s)", self.name, sockaddr, type(exc).__name__)

    def handle_raw_request(self, request: Any, session: Any) -> None:
        if self._stopped:
            return
        netfn, command, data = request["netfn"], request["command"], bytes(request["data"])
        key = (session.seqlun, netfn, command, data)
        now = time.monotonic()
        last = getattr(session, "last_request", None)
        if last is not None and last[0] == key and now - last[1] < RETRANSMIT_WINDOW:
            _, _, name, code, reply = last
            self.command_log.write(self.name, "retransmit", of=name, code=code)
            if not self._drops(self.reply_loss, "out"):
                session.send_ipmi_response(data=list(reply), code=code)
            return
        handler = self._handlers.get((netfn, command))
        if handler is None:
            name = "device_id" if (netfn, command) == (6, 1) else f"raw_{netfn:02x}_{command:02x}"
            self.command_log.write(self.name, name)
            super().handle_raw_request(request, session)
            return
        try:
            name, code, reply = handler(data)
        except Exception:
            log.exception(
                "%s: the simulator failed on netfn 0x%02x command 0x%02x", self.name, netfn, command
            )
            name, code, reply = "error", CC_UNSPECIFIED, b""
        session.last_request = (key, now, name, code, reply)
        if not self._drops(self.reply_loss, "out"):
            session.send_ipmi_response(data=list(reply), code=code)

    def _logged(self, handler: Callable[[bytes], Reply]) -> Callable[[bytes], Reply]:
        """``handler`` with a log line (its command name and completion code) for each answer."""

        def answer(data: bytes) -> Reply:
            reply = handler(data)
            self.command_log.write(self.name, reply[0], code=reply[1])
            return reply

        return answer

    # -- chassis ------------------------------------------------------------------------------------------

    def _chassis_status(self, data: bytes) -> Reply:
        with self._lock:
            on = self._on
        misc = IDENTIFY_SUPPORTED | IDENTIFY_STATES[self.identify_state] << 4
        self.command_log.write(self.name, "get_power", code=CC_OK)
        return "get_power", CC_OK, bytes([0x01 if on else 0x00, 0x00, misc])

    def _chassis_identify(self, data: bytes) -> Reply:
        forced = len(data) >= 2 and bool(data[1] & 0x01)  # byte 2 bit 0: on until turned off
        seconds = None if forced else (data[0] if data else IDENTIFY_DEFAULT_SECONDS)
        with self._lock:
            self._identify_until = float("inf") if seconds is None else time.monotonic() + seconds
        self.command_log.write(self.name, "identify", seconds=seconds, code=CC_OK)
        return "identify", CC_OK, b""

    def _set_boot_options(self, data: bytes) -> Reply:
        reply, fields = self.boot_options.set(data)
        self.command_log.write(self.name, reply[0], code=reply[1], **fields)
        return reply

    def _get_boot_options(self, data: bytes) -> Reply:
        reply, fields = self.boot_options.get(data)
        self.command_log.write(self.name, reply[0], code=reply[1], **fields)
        return reply

    def _chassis_control(self, data: bytes) -> Reply:
        name = CONTROL_NAMES.get(data[0], "chassis_control") if data else "chassis_control"
        code = self._control(data[0]) if name != "chassis_control" else CC_INVALID_DATA
        self.command_log.write(self.name, name, code=code)
        with self._lock:
            booting, self._booting = self._booting, None
        if booting is not None and self.on_boot is not None:
            self.on_boot(booting)
        return name, code, b""

    def _control(self, directive: int) -> int:
        with self._lock:
            if directive == 2 and not self._on:
                return CC_NOT_IN_PRESENT_STATE  # IPMI 2.0 28.3: no cycle of a host that is off
            self._generation += 1
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()
            if directive == 2 or (directive == 3 and self._on) or (directive == 1 and not self._on):
                flags = self.boot_options.flags
                self._booting = flags.selector_name if flags.valid else "disk"
                self.boot_options.booted()
            if directive == 0:
                self._on = False
                self.sel.add(SelRecord.for_action(0, PowerAction.OFF, 0))
            elif directive == 1:
                self._on = True
                self.sel.add(SelRecord.for_action(0, PowerAction.ON, 0))
            elif directive == 2:
                self._on = False
                self.sel.add(SelRecord.for_action(0, PowerAction.CYCLE, 0))
                self._later(self.cycle_delay, on=True)
            elif directive == 5:
                self.sel.add(SelRecord.for_action(0, PowerAction.SOFT_OFF, 0))
                if self._on:
                    self._later(self.soft_off_delay, on=False)
            elif directive == 3:  # hard reset: power stays as it is; sensor 0x1D offset 0x01
                self.sel.add(SelRecord(0, RECORD_SYSTEM_EVENT, 0, sensor_type=SENSOR_SYSTEM_BOOT, data1=0x01))
            return CC_OK

    def _later(self, delay: float, *, on: bool) -> None:
        generation = self._generation
        timer = threading.Timer(delay, self._finish_transition, args=(generation, on))
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def _finish_transition(self, generation: int, on: bool) -> None:
        with self._lock:
            if generation == self._generation and not self._stopped:
                self._on = on
                self._timers.clear()


def serve_forever(stop: threading.Event) -> None:
    """Answer every BMC of this process until ``stop`` is set; errors are logged, never fatal."""
    while not stop.is_set():
        try:
            ipmisession.Session.wait_for_rsp(timeout=0.5)
        except Exception:
            log.exception("IPMI listener: ignored an error")


def probe(address: str, port: int, timeout: float = 1.0) -> bool:
    """True when something answers Get Channel Authentication Capabilities on ``address``:``port`` (UDP)."""
    body = bytes([0x81, 0x00, 0x38, 0x8E, 0x04])
    message = bytes([0x20, 0x18, _checksum(bytes([0x20, 0x18]))]) + body + bytes([_checksum(body)])
    packet = b"\x06\x00\xff\x07" + b"\x00" + bytes(8) + bytes([len(message)]) + message
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(packet, (address, port))
            sock.recvfrom(512)
        except OSError:
            return False
    return True


def _checksum(data: bytes) -> int:
    return -sum(data) & 0xFF
