"""Simulated IPMI BMCs for the lab: pyghmi's BMC server class with power state, a SEL and a command log.

One ``SimulatedBmc`` per simulated server, each on its own UDP port on a loopback address (pyghmi's server
keys sessions by client address and server port, so BMCs sharing a port would mix sessions up). Every BMC
of a process is served by the one pyghmi IO thread plus one listener thread (``serve_forever``).

What this adds to pyghmi's server class, and why:

- it refuses RMCP+ cipher suites other than 3: the server class always answers as if suite 3 was chosen,
  and pyghmi's client, which offers suite 17 first, then fails in RAKP2. Refused, the client falls back;
- it answers an unknown user name with RAKP2 status 0x0D (the class stays silent: the client times out);
- it survives stray packets (the class can raise ``AttributeError`` and end the listener loop);
- it starts a new login that pyghmi routes to an existing session object (same client address and port:
  pyghmi clients reuse their sockets) from clean counters, not the old session's sequence number;
- it does not execute a retransmitted request twice: pyghmi's client retransmits with the same IPMI
  sequence number after about 1 s without an answer, and the class would run a second power cycle. The
  cached answer is sent again and the log gets a ``retransmit`` line, never a second ``cycle``.

The command log is the lab's ground truth for tests: one JSON line per request a BMC answers, e.g.
``{"ts": 1718000000.1, "bmc": "esx-01", "command": "cycle", "code": 0}`` (``code`` = completion code).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyghmi.ipmi import bmc as pyghmi_bmc
from pyghmi.ipmi.private import constants as ipmi_constants
from pyghmi.ipmi.private import serversession
from pyghmi.ipmi.private import session as ipmisession

from remotehands.bmc.base import PowerAction
from remotehands.bmc.ipmi_protocol import (
    CMD_CHASSIS_CONTROL,
    CMD_GET_CHASSIS_STATUS,
    CMD_GET_SEL_ENTRY,
    CMD_GET_SEL_INFO,
    CMD_GET_SEL_TIME,
    CMD_RESERVE_SEL,
    NETFN_CHASSIS,
    NETFN_STORAGE,
    RECORD_SYSTEM_EVENT,
    SEL_FIRST,
    SEL_LAST,
    SENSOR_SYSTEM_BOOT,
    SelRecord,
)
from remotehands.bmc.pyghmi_fixes import install_pyghmi_io_fix

log = logging.getLogger(__name__)

RMCP_NO_CIPHER_MATCH = 0x11
RMCP_UNAUTHORIZED_NAME = 0x0D
SUITE_3 = (1, 1, 1)  # RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128: what pyghmi's server class speaks
RETRANSMIT_WINDOW = 10.0  # seconds during which an identical request on a session is a retransmission
SEL_CAPACITY = 0xFFFE
CC_OK = 0x00
CC_BAD_LENGTH = 0xC7
CC_OUT_OF_RANGE = 0xC9
CC_BAD_RESERVATION = 0xC5
CC_NOT_PRESENT = 0xCB
CC_INVALID_DATA = 0xCC
CC_NOT_IN_PRESENT_STATE = 0xD5
CC_UNSPECIFIED = 0xFF

CONTROL_NAMES = {0: "power_off", 1: "power_on", 2: "cycle", 3: "reset", 5: "soft_off"}

Reply = tuple[str, int, bytes]  # (command name for the log, completion code, response data)


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


class _SimSession(serversession.ServerSession):  # type: ignore[misc]
    """pyghmi's server session with the fixes listed in the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.k1 = None  # the class reads it before RAKP3 sets it
        self.remseqnumber = None
        self.last_request: tuple[Any, ...] | None = None
        super().__init__(*args, **kwargs)

    def create_open_session_response(self, request: Any) -> bytearray:
        # A new login on a reused session object: forget the previous session's counters.
        self.remseqnumber = None
        self.k1 = None
        self.last_request = None
        proposed = (request[12], request[20], request[28]) if len(request) >= 32 else None
        if proposed != SUITE_3:
            self.clientsessionid = bytearray(request[4:8])
            return bytearray([request[0], RMCP_NO_CIPHER_MATCH, 0, 0]) + self.clientsessionid
        response: bytearray = super().create_open_session_response(request)
        return response

    def _got_rakp1(self, data: Any) -> None:
        name = bytes(data[28:])
        if data[27] == 0 or self.authdata.get(name.decode("utf-8", "replace")) is None:
            payload = bytearray([data[0], RMCP_UNAUTHORIZED_NAME, 0, 0]) + self.clientsessionid
            self.send_payload(payload, ipmi_constants.payload_types["rakp2"], retry=False)
            return
        super()._got_rakp1(data)

    def _handle_ipmi_packet(self, data: Any, sockaddr: Any = None, qent: Any = None) -> Any:
        try:
            return super()._handle_ipmi_packet(data, sockaddr=sockaddr, qent=qent)
        except Exception as exc:  # a malformed packet must not end the listener
            log.warning(
                "%s: dropped a malformed packet from %s (%s)", self.bmc.name, sockaddr, type(exc).__name__
            )
            return None


class SimulatedBmc(pyghmi_bmc.Bmc):  # type: ignore[misc]
    """One simulated server's BMC: power on/off, chassis control, a SEL, on ``address``:``port`` (UDP).

    ``port=0`` picks a free port; ``self.port`` holds the real one once constructed (the socket is bound in
    the constructor). Cycle = off now, on after ``cycle_delay`` seconds; soft-off = off after
    ``soft_off_delay``. A newer power command cancels a pending transition. Each power command appends one
    SEL record (convention in ``remotehands.bmc.ipmi``) with ids counting up from 1.
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
    ) -> None:
        if not ipaddress.ip_address(address).is_loopback:
            raise ValueError(f"simulated BMCs listen on loopback addresses only, not {address}")
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
        self._sel: list[SelRecord] = []
        self._reservation = 0
        self._last_add = 0
        self._last_erase = int(time.time())
        self._stopped = False
        self._handlers: dict[tuple[int, int], Callable[[bytes], Reply]] = {
            (NETFN_CHASSIS, CMD_GET_CHASSIS_STATUS): self._chassis_status,
            (NETFN_CHASSIS, CMD_CHASSIS_CONTROL): self._chassis_control,
            (NETFN_STORAGE, CMD_GET_SEL_INFO): self._sel_info,
            (NETFN_STORAGE, CMD_RESERVE_SEL): self._sel_reserve,
            (NETFN_STORAGE, CMD_GET_SEL_ENTRY): self._sel_entry,
            (NETFN_STORAGE, CMD_GET_SEL_TIME): self._sel_time,
        }
        install_pyghmi_io_fix()
        super().__init__({username: password}, port=port, address=address)
        # pyghmi routes session packets by the port the server believes it has: use the bound one.
        self.port = self.serversocket.getsockname()[1]

    @property
    def powered_on(self) -> bool:
        with self._lock:
            return self._on

    def sel_records(self) -> list[SelRecord]:
        """A copy of the SEL, oldest first."""
        with self._lock:
            return list(self._sel)

    def stop(self) -> None:
        """Stop answering (packets are dropped from now on) and cancel pending power transitions."""
        with self._lock:
            self._stopped = True
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()

    # -- pyghmi entry points ------------------------------------------------------------------------------

    def sessionless_data(self, data: Any, sockaddr: Any) -> None:
        if self._stopped:
            return
        try:
            raw = bytes(data)
            if len(raw) >= 22 and raw[0] == 6 and raw[2:4] == b"\xff\x07" and raw[4] == 6 and raw[5] == 0x10:
                _SimSession(
                    self.authdata, self.kg, sockaddr, self.serversocket, raw[16:], self.uuid, bmc=self
                )
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
        session.send_ipmi_response(data=list(reply), code=code)

    # -- chassis ------------------------------------------------------------------------------------------

    def _chassis_status(self, data: bytes) -> Reply:
        with self._lock:
            on = self._on
        self.command_log.write(self.name, "get_power", code=CC_OK)
        return "get_power", CC_OK, bytes([0x01 if on else 0x00, 0x00, 0x00])

    def _chassis_control(self, data: bytes) -> Reply:
        name = CONTROL_NAMES.get(data[0], "chassis_control") if data else "chassis_control"
        code = self._control(data[0]) if name != "chassis_control" else CC_INVALID_DATA
        self.command_log.write(self.name, name, code=code)
        return name, code, b""

    def _control(self, directive: int) -> int:
        with self._lock:
            if directive == 2 and not self._on:
                return CC_NOT_IN_PRESENT_STATE  # IPMI 2.0 28.3: no cycle of a host that is off
            self._generation += 1
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()
            if directive == 0:
                self._on = False
                self._add_sel(SelRecord.for_action(0, PowerAction.OFF, 0))
            elif directive == 1:
                self._on = True
                self._add_sel(SelRecord.for_action(0, PowerAction.ON, 0))
            elif directive == 2:
                self._on = False
                self._add_sel(SelRecord.for_action(0, PowerAction.CYCLE, 0))
                self._later(self.cycle_delay, on=True)
            elif directive == 5:
                self._add_sel(SelRecord.for_action(0, PowerAction.SOFT_OFF, 0))
                if self._on:
                    self._later(self.soft_off_delay, on=False)
            elif directive == 3:  # hard reset: power stays as it is; sensor 0x1D offset 0x01
                self._add_sel(
                    SelRecord(0, RECORD_SYSTEM_EVENT, 0, sensor_type=SENSOR_SYSTEM_BOOT, data1=0x01)
                )
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

    # -- System Event Log (IPMI 2.0 section 31) -----------------------------------------------------------

    def _add_sel(self, template: SelRecord) -> None:
        if len(self._sel) >= SEL_CAPACITY:
            return
        now = int(time.time())
        record_id = self._sel[-1].record_id + 1 if self._sel else 1
        self._sel.append(
            SelRecord(
                record_id,
                template.record_type,
                now,
                sensor_type=template.sensor_type,
                data1=template.data1,
                data2=template.data2,
                data3=template.data3,
            )
        )
        self._last_add = now

    def _sel_info(self, data: bytes) -> Reply:
        with self._lock:
            count = len(self._sel)
            free = min((SEL_CAPACITY - count) * 16, 0xFFFF)
            info = struct.pack("<BHHIIB", 0x51, count, free, self._last_add, self._last_erase, 0x02)
        self.command_log.write(self.name, "sel_info", code=CC_OK)
        return "sel_info", CC_OK, info

    def _sel_reserve(self, data: bytes) -> Reply:
        with self._lock:
            self._reservation = self._reservation % 0xFFFF + 1
            reservation = self._reservation
        self.command_log.write(self.name, "sel_reserve", code=CC_OK)
        return "sel_reserve", CC_OK, struct.pack("<H", reservation)

    def _sel_entry(self, data: bytes) -> Reply:
        code, reply = self._read_sel_entry(data)
        self.command_log.write(self.name, "sel_entry", code=code)
        return "sel_entry", code, reply

    def _read_sel_entry(self, data: bytes) -> tuple[int, bytes]:
        if len(data) < 6:
            return CC_BAD_LENGTH, b""
        reservation, record_id, offset, count = struct.unpack_from("<HHBB", data)
        with self._lock:
            records = list(self._sel)
            current_reservation = self._reservation
        if not records:
            return CC_NOT_PRESENT, b""
        if record_id == SEL_FIRST:
            index = 0
        elif record_id == SEL_LAST:
            index = len(records) - 1
        else:
            found = [i for i, r in enumerate(records) if r.record_id == record_id]
            if not found:
                return CC_NOT_PRESENT, b""
            index = found[0]
        if (offset != 0 or count != 0xFF) and reservation != current_reservation:
            return CC_BAD_RESERVATION, b""
        if offset >= 16:
            return CC_OUT_OF_RANGE, b""
        next_id = records[index + 1].record_id if index + 1 < len(records) else SEL_LAST
        body = records[index].pack()[offset : 16 if count == 0xFF else offset + count]
        return CC_OK, struct.pack("<H", next_id) + body

    def _sel_time(self, data: bytes) -> Reply:
        self.command_log.write(self.name, "sel_time", code=CC_OK)
        return "sel_time", CC_OK, struct.pack("<I", int(time.time()))


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
