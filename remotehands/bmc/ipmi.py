"""IPMI power over LAN (RMCP+) with pyghmi: a ``PowerDriver`` that also reads power evidence from the SEL.

Every command is one raw IPMI request (Get Chassis Status, Chassis Control, the SEL commands), so a power
action is exactly one command on the wire. pyghmi's calls run in a short-lived worker thread that the caller
waits on for at most ``timeout`` seconds: pyghmi's own retry timers can otherwise keep a caller for 20-40 s
against a BMC that stopped answering, and a login to a dead BMC takes about 5 s whatever one asks.

Power evidence comes from the System Event Log. The records this module reads as power actions (and that
``remotehands.lab.bmc_sim`` writes) follow the IPMI 2.0 sensor types, as assertion events of event type 0x6F
(sensor-specific):

    sensor type 0x09 Power Unit,  offset 0x00 Power Off                        -> OFF
    sensor type 0x09 Power Unit,  offset 0x00, event data 2 = 0x01 (OEM code) -> SOFT_OFF
    sensor type 0x09 Power Unit,  offset 0x01 Power Cycle                      -> CYCLE
    sensor type 0x1D System Boot, offset 0x00 Initiated by power up            -> ON

For SOFT_OFF, event data 1 bits 7:6 are 0b10 ("OEM code in byte 2") and data 2 is ``SOFT_OFF_DATA2``.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from remotehands import redaction
from remotehands.bmc.base import PowerAction, PowerEvent, PowerState
from remotehands.bmc.ipmi_protocol import (
    CC_NOT_IN_PRESENT_STATE,
    CC_NOT_PRESENT,
    CMD_CHASSIS_CONTROL,
    CMD_GET_CHASSIS_STATUS,
    CMD_GET_SEL_ENTRY,
    CMD_GET_SEL_INFO,
    CONTROL_CYCLE,
    CONTROL_OFF,
    CONTROL_ON,
    CONTROL_SOFT_OFF,
    NETFN_CHASSIS,
    NETFN_STORAGE,
    SEL_FIRST,
    SEL_LAST,
    TRANSIENT_CODES,
    SelRecord,
)
from remotehands.bmc.pyghmi_fixes import install_pyghmi_io_fix, login_lock
from remotehands.errors import DeviceRefused, DeviceUnreachable, InternalError, RemoteHandsError

log = logging.getLogger(__name__)

T = TypeVar("T")

# A session left idle this long is replaced before use: BMCs drop idle sessions (often after 60 s) and
# pyghmi only notices after its retry timers expire.
MAX_IDLE_SECONDS = 20.0

_CONTROL_FOR_ACTION = {
    PowerAction.ON: CONTROL_ON,
    PowerAction.OFF: CONTROL_OFF,
    PowerAction.SOFT_OFF: CONTROL_SOFT_OFF,
}


class IpmiPower:
    """Power of one host through its BMC over IPMI 2.0; implements ``PowerDriver`` and ``PowerEvidence``.

    The constructor does no I/O. The session is opened on first use, reused, replaced when it broke or sat
    idle, and logged out by ``close()``. Calls on one instance are serialised; use one instance per thread
    or share it, both work. Every call raises ``DeviceUnreachable`` when the BMC does not answer within
    ``timeout`` seconds and ``DeviceRefused`` when it answers with an error (bad credentials included).
    """

    name = "ipmi"

    def __init__(
        self, address: str, port: int, username: str, password: str, *, timeout: float = 5.0
    ) -> None:
        self.address = address
        self.port = port
        self.username = username
        self.timeout = timeout
        self._password = password
        redaction.register(password)
        self._lock = threading.Lock()
        self._command: Any = None
        self._last_used = 0.0

    @property
    def device(self) -> str:
        """``address:port`` of the BMC, as every message names it."""
        return f"{self.address}:{self.port}"

    def __repr__(self) -> str:
        return f"IpmiPower({self.device}, user={self.username!r})"

    def __enter__(self) -> IpmiPower:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- PowerDriver -------------------------------------------------------------------------------------

    def state(self) -> PowerState:
        """Read the chassis power state (Get Chassis Status, bit 0 of byte 1)."""
        data = self._request("read power state", NETFN_CHASSIS, CMD_GET_CHASSIS_STATUS)
        if not data:
            raise DeviceRefused(
                f"IPMI BMC {self.device} answered Get Chassis Status without data",
                fix="the BMC firmware misbehaves; retry, or cold-reset the BMC",
            )
        return PowerState.ON if data[0] & 0x01 else PowerState.OFF

    def set_state(self, action: PowerAction) -> None:
        """Send one Chassis Control for ON, OFF or SOFT_OFF; no read first, no wait for the effect."""
        control = _CONTROL_FOR_ACTION.get(action)
        if control is None:
            raise InternalError(
                f"IpmiPower.set_state takes on, off or soft_off, not {action.value}; use cycle()"
            )
        self._request(f"power {action.value}", NETFN_CHASSIS, CMD_CHASSIS_CONTROL, bytes([control]))

    def cycle(self) -> None:
        """Send one Chassis Control "power cycle" (data 2)."""
        self._request("power cycle", NETFN_CHASSIS, CMD_CHASSIS_CONTROL, bytes([CONTROL_CYCLE]))

    def supported(self) -> frozenset[PowerAction]:
        """Every IPMI BMC takes all four chassis controls."""
        return frozenset(PowerAction)

    def close(self) -> None:
        """Log the session out (best effort, bounded by ``timeout``); safe to call twice."""
        with self._lock:
            command, self._command = self._command, None
        if command is None:
            return
        worker = threading.Thread(target=_logout_quietly, args=(command,), name=f"ipmi-logout {self.device}")
        worker.daemon = True
        worker.start()
        worker.join(self.timeout)

    # -- PowerEvidence -----------------------------------------------------------------------------------

    def event_marker(self) -> int:
        """The id of the newest SEL record (the highest, as BMCs number upwards); 0 when the SEL is empty."""
        info = self._request("read SEL info", NETFN_STORAGE, CMD_GET_SEL_INFO)
        if len(info) < 3 or int.from_bytes(info[1:3], "little") == 0:
            return 0
        last = self._sel_entry(SEL_LAST)
        if last is None:
            return 0
        return last[1].record_id

    def events_since(self, marker: int) -> list[PowerEvent]:
        """The power events the BMC recorded after ``marker`` (record id > marker), oldest first."""
        events = []
        for record in self.sel_entries():
            action = record.action
            if action is not None and record.record_id > marker:
                events.append(PowerEvent(marker=record.record_id, action=action, timestamp=record.timestamp))
        return events

    def sel_entries(self) -> list[SelRecord]:
        """Every record in the SEL, walked with Get SEL Entry from the first to next-id 0xFFFF."""
        records: list[SelRecord] = []
        seen: set[int] = set()
        record_id = SEL_FIRST
        while True:
            entry = self._sel_entry(record_id)
            if entry is None:
                return records
            next_id, record = entry
            if record.record_id in seen:
                raise DeviceRefused(
                    f"IPMI BMC {self.device} returned SEL record {record.record_id} twice while walking its SEL",
                    fix="the SEL looks corrupt; save it with ipmitool sel list and clear it",
                )
            seen.add(record.record_id)
            records.append(record)
            if next_id == SEL_LAST:
                return records
            record_id = next_id

    def _sel_entry(self, record_id: int) -> tuple[int, SelRecord] | None:
        request = struct.pack("<HHBB", 0, record_id, 0, 0xFF)
        try:
            data = self._request(f"read SEL record {record_id}", NETFN_STORAGE, CMD_GET_SEL_ENTRY, request)
        except _NotPresent:
            return None
        if len(data) < 18:
            raise DeviceRefused(
                f"IPMI BMC {self.device} answered Get SEL Entry with {len(data)} bytes, expected 18",
                fix="the BMC firmware misbehaves; read its SEL with ipmitool sel list",
            )
        return int.from_bytes(data[0:2], "little"), SelRecord.unpack(bytes(data[2:18]))

    # -- the one path to the wire ------------------------------------------------------------------------

    def _request(self, what: str, netfn: int, command: int, data: bytes = b"") -> bytes:
        """Send one raw request, return the response data; translate every failure."""

        def send(session: Any) -> bytes:
            response = session.raw_command(netfn=netfn, command=command, data=list(data))
            return self._response_data(what, response)

        return self._call(what, send)

    def _call(self, what: str, operation: Callable[[Any], T]) -> T:
        with self._lock:
            reuse, stale = self._command, None
            if reuse is not None and (
                time.monotonic() - self._last_used > MAX_IDLE_SECONDS or reuse.ipmi_session.broken
            ):
                reuse, stale, self._command = None, reuse, None
            outcome: dict[str, Any] = {}
            worker = threading.Thread(
                target=self._work, args=(reuse, stale, operation, outcome), name=f"ipmi {self.device} {what}"
            )
            worker.daemon = True
            worker.start()
            worker.join(self.timeout)
            if worker.is_alive():
                # pyghmi gives up on its own later; the abandoned session is not reused.
                self._command = None
                raise DeviceUnreachable(
                    f"IPMI BMC {self.device} did not answer within {self.timeout:g}s ({what})",
                    fix=self._unreachable_fix(),
                )
            error: BaseException | None = outcome.get("error")
            # A session that answered (even "no") is kept; after any other failure the next call logs in anew.
            kept = error is None or isinstance(error, DeviceRefused | _NotPresent)
            self._command = outcome.get("command") if kept else None
            self._last_used = time.monotonic()
            if error is None:
                result: T = outcome["result"]
                return result
        if isinstance(error, RemoteHandsError | _NotPresent):
            raise error
        raise self._translate(what, error) from error

    def _work(self, reuse: Any, stale: Any, operation: Callable[[Any], T], outcome: dict[str, Any]) -> None:
        if stale is not None:
            _logout_quietly(stale)  # BMCs have few session slots: do not leave one behind
        try:
            if reuse is None:
                reuse = self._login()
            outcome["command"] = reuse
            outcome["result"] = operation(reuse.ipmi_session)
        except BaseException as exc:  # handed to the caller's thread, translated there
            outcome["error"] = exc

    def _login(self) -> Any:
        install_pyghmi_io_fix()
        from pyghmi import exceptions as pyghmi_exc
        from pyghmi.ipmi import command as ipmi_command
        from pyghmi.ipmi.private import session as ipmisession

        # pyghmi files a login under (bmc, userid, password, port, kg) and later deletes it under the
        # *encoded* user and password, so the entry stays, and the next login with the same credentials is
        # handed that old session object, broken or logged out. Drop it first.
        # Two logins to one BMC at once can be given the same client socket, and the BMC (which keys
        # sessions by client address) then mixes them up: logins to one BMC take turns.
        with login_lock(self.address, self.port):
            ipmisession.Session.initting_sessions.pop(
                (self.address, self.username, self._password, self.port, None), None
            )
            command = ipmi_command.Command(
                bmc=self.address, userid=self.username, password=self._password, port=self.port
            )
        session = command.ipmi_session
        if session.broken or not session.logged:
            raise pyghmi_exc.IpmiException(
                getattr(session, "errormsg", None) or "Session no longer connected"
            )
        return command

    def _response_data(self, what: str, response: Any) -> bytes:
        if not isinstance(response, dict):
            raise DeviceUnreachable(
                f"IPMI BMC {self.device} gave no answer ({what})", fix=self._unreachable_fix()
            )
        code = int(response.get("code", 0) or 0)
        if "error" in response and code in (0, 0xFFFF):
            raise DeviceUnreachable(
                f"IPMI BMC {self.device} did not answer ({what}): {response['error']}",
                fix=self._unreachable_fix(),
            )
        if code == CC_NOT_PRESENT:
            raise _NotPresent(what)
        if code in TRANSIENT_CODES:
            raise DeviceUnreachable(
                f"IPMI BMC {self.device} is busy (completion code 0x{code:02X}) ({what})",
                fix="retry in a minute; if the BMC stays busy, cold-reset it",
            )
        if code == CC_NOT_IN_PRESENT_STATE:
            raise DeviceRefused(
                f"IPMI BMC {self.device} refused to {what} in the host's present state (completion code 0xD5)",
                fix="a BMC refuses a power cycle of a host that is off: read the state and power it on instead",
            )
        if code:
            reason = response.get("error") or "error"
            raise DeviceRefused(
                f"IPMI BMC {self.device} refused to {what}: completion code 0x{code:02X} ({reason})",
                fix="the BMC does not support this command or rejected its data; check the BMC firmware or use "
                "another power method for this host in the inventory",
            )
        return bytes(response.get("data", b""))

    def _translate(self, what: str, exc: BaseException) -> RemoteHandsError:
        from pyghmi import exceptions as pyghmi_exc
        from pyghmi.ipmi.private import constants

        if isinstance(exc, socket.gaierror):
            return DeviceUnreachable(
                f"IPMI BMC {self.device}: the address does not resolve ({what})",
                fix="check power.address of this host in the inventory and the DNS of this machine",
            )
        if isinstance(exc, OSError):
            return DeviceUnreachable(
                f"IPMI BMC {self.device}: network error {exc.strerror or exc} ({what})",
                fix=self._unreachable_fix(),
            )
        if isinstance(exc, pyghmi_exc.IpmiException):
            reason = str(exc.args[0]) if exc.args and exc.args[0] else ""
            if "Insufficient resources" in reason:
                return DeviceUnreachable(
                    f"IPMI BMC {self.device} has no free session ({what}): {reason}",
                    fix="retry in a minute, when idle sessions have expired; close other IPMI tools using this BMC",
                )
            refusals = [*constants.rmcp_codes.values(), "Incorrect password", "privelege level"]
            if any(text in reason for text in refusals):
                return DeviceRefused(
                    f"IPMI BMC {self.device} refused the login of user {self.username!r}: {reason}",
                    fix="check power.credentials of this host in the inventory (the user name and the secret its "
                    "password reference points at) and that the user has operator or administrator rights",
                )
            detail = f": {reason}" if reason else ""
            return DeviceUnreachable(
                f"IPMI BMC {self.device} did not answer ({what}){detail}", fix=self._unreachable_fix()
            )
        return InternalError(
            f"IPMI BMC {self.device}: unexpected {type(exc).__name__} from pyghmi ({what}): {exc}"
        )

    def _unreachable_fix(self) -> str:
        return (
            f"check that the BMC is up and answers on UDP port {self.port} from this machine (management network, "
            "VLAN, firewall); a BMC that stays silent may need a cold reset or an AC power cycle"
        )


class _NotPresent(Exception):
    """Completion code 0xCB: the record asked for does not exist (an empty SEL, the end of a walk)."""


def _logout_quietly(command: Any) -> None:
    try:
        command.ipmi_session.logout()
    except Exception as exc:  # a failed logout only leaves a session the BMC will expire
        log.debug("IPMI logout failed: %s", type(exc).__name__)
