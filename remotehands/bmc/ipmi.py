"""IPMI over LAN (RMCP+) with pyghmi: power, boot device and chassis identify, and power evidence from the SEL.

Every command is one raw IPMI request (Get Chassis Status, Chassis Control, Set/Get System Boot Options
with the boot flags of ``remotehands.bmc.ipmi_boot``, Chassis Identify, the SEL commands), so a power action
or a boot-device change is exactly one command on the wire. pyghmi's calls run in a short-lived worker
thread that the caller waits on for at most ``timeout`` seconds: pyghmi's own retry timers can otherwise
keep a caller for 20-40 s against a BMC that stopped answering, and a login to a dead BMC takes about 5 s
whatever one asks. Failures become remotehands errors in ``remotehands.bmc.ipmi_errors``.

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
import struct
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from remotehands import redaction
from remotehands.bmc import ipmi_boot
from remotehands.bmc.base import BootDevice, BootSetting, PowerAction, PowerEvent, PowerState
from remotehands.bmc.ipmi_errors import IpmiEndpoint, NotPresent, response_data, translate
from remotehands.bmc.ipmi_protocol import (
    CMD_CHASSIS_CONTROL,
    CMD_CHASSIS_IDENTIFY,
    CMD_GET_CHASSIS_STATUS,
    CMD_GET_SEL_ENTRY,
    CMD_GET_SEL_INFO,
    CMD_GET_SYSTEM_BOOT_OPTIONS,
    CMD_SET_SYSTEM_BOOT_OPTIONS,
    CONTROL_CYCLE,
    CONTROL_OFF,
    CONTROL_ON,
    CONTROL_SOFT_OFF,
    NETFN_CHASSIS,
    NETFN_STORAGE,
    SEL_FIRST,
    SEL_LAST,
    SelRecord,
)
from remotehands.bmc.pyghmi_fixes import install_pyghmi_io_fix, login_lock
from remotehands.errors import (
    DeviceRefused,
    DeviceUnreachable,
    InternalError,
    InvalidRequest,
    RemoteHandsError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# A session left idle this long is replaced before use: BMCs drop idle sessions (often after 60 s) and
# pyghmi only notices after its retry timers expire.
MAX_IDLE_SECONDS = 20.0
IDENTIFY_MAX_SECONDS = 255  # the interval is one byte

_CONTROL_FOR_ACTION = {
    PowerAction.ON: CONTROL_ON,
    PowerAction.OFF: CONTROL_OFF,
    PowerAction.SOFT_OFF: CONTROL_SOFT_OFF,
}


class IpmiPower:
    """One host's BMC over IPMI 2.0; implements ``PowerDriver``, ``PowerEvidence`` and ``BootControl``, and
    turns the chassis identify light on and off (``identify``).

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
        self._endpoint = IpmiEndpoint(address, port, username)
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

    # -- BootControl and identify ------------------------------------------------------------------------

    def set_boot_device(self, device: BootDevice, *, once: bool = True, uefi: bool = True) -> None:
        """Write the boot flags (System Boot Options parameter 5) in one Set System Boot Options request:
        valid, once or persistent, EFI or legacy, and the device selector.

        Raises ``DeviceRefused`` for UEFI HTTP boot, which IPMI has no device selector for (nothing is sent).
        """
        try:
            flags = ipmi_boot.BootFlags.for_device(device, once=once, uefi=uefi)
        except KeyError:
            raise DeviceRefused(
                f"IPMI BMC {self.device}: {device.value} boot cannot be asked for over IPMI (the boot flags "
                "select PXE, disk, CD/DVD, BIOS setup or floppy, not UEFI HTTP); nothing was sent",
                fix="use the host's Redfish power path for UEFI HTTP boot, or boot it from PXE",
            ) from None
        what = f"set the boot device to {device.value} ({'once' if once else 'persistent'})"
        self._request(what, NETFN_CHASSIS, CMD_SET_SYSTEM_BOOT_OPTIONS, ipmi_boot.set_request(flags))

    def get_boot_device(self) -> BootSetting:
        """The boot flags as the BMC reads now, from one Get System Boot Options request (parameter 5).

        Device None: no override (flags not valid, no device selected, or a device we have no name for).
        """
        data = self._request(
            "read the boot device", NETFN_CHASSIS, CMD_GET_SYSTEM_BOOT_OPTIONS, ipmi_boot.get_request()
        )
        try:
            flags = ipmi_boot.parse_get_response(data)
        except ValueError as exc:
            raise DeviceRefused(
                f"IPMI BMC {self.device} answered Get System Boot Options with a malformed answer: {exc}",
                fix="the BMC firmware misbehaves; read it with ipmitool chassis bootparam get 5",
            ) from exc
        if flags is None:
            return BootSetting(device=None, once=False, uefi=None)
        setting = flags.setting()
        if setting.device is None and flags.valid and flags.selector:
            log.warning(
                "IPMI %s: boot device selector %s has no remotehands name; reading none",
                self.device,
                flags.selector_name,
            )
        return setting

    def identify(self, seconds: int | None) -> None:
        """Turn the chassis identify light on for ``seconds`` (1-255), on until turned off (None), or off (0),
        with one Chassis Identify request.

        Raises ``InvalidRequest`` for a number of seconds outside 0-255 (nothing is sent).
        """
        if seconds is None:
            data, what = bytes([0x00, 0x01]), "turn the identify light on"  # byte 2 bit 0: force on
        elif 0 <= seconds <= IDENTIFY_MAX_SECONDS:
            data = bytes([seconds])
            what = (
                "turn the identify light off"
                if seconds == 0
                else f"turn the identify light on for {seconds}s"
            )
        else:
            raise InvalidRequest(
                f"IPMI chassis identify takes 0-{IDENTIFY_MAX_SECONDS} seconds, not {seconds}",
                fix="ask for at most 255 seconds, or None to keep the light on until turned off",
            )
        self._request(what, NETFN_CHASSIS, CMD_CHASSIS_IDENTIFY, data)

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
        except NotPresent:
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
            return response_data(self._endpoint, what, response)

        return self._call(what, send, read=(netfn, command) in _READS)

    def _call(self, what: str, operation: Callable[[Any], T], *, read: bool = False) -> T:
        with self._lock:
            reuse, stale = self._command, None
            if reuse is not None and (
                time.monotonic() - self._last_used > MAX_IDLE_SECONDS or reuse.ipmi_session.broken
            ):
                reuse, stale, self._command = None, reuse, None
            outcome: dict[str, Any] = {}
            deadline = time.monotonic() + self.timeout
            worker = threading.Thread(
                target=self._work,
                args=(reuse, stale, operation, outcome, deadline, read),
                name=f"ipmi {self.device} {what}",
            )
            worker.daemon = True
            worker.start()
            worker.join(self.timeout)
            if worker.is_alive():
                # pyghmi gives up on its own later; the abandoned session is not reused.
                self._command = None
                raise DeviceUnreachable(
                    f"IPMI BMC {self.device} did not answer within {self.timeout:g}s ({what})",
                    fix=self._endpoint.unreachable_fix(),
                )
            error: BaseException | None = outcome.get("error")
            # A session that answered (even "no") is kept; after any other failure the next call logs in anew.
            kept = error is None or isinstance(error, DeviceRefused | NotPresent)
            self._command = outcome.get("command") if kept else None
            self._last_used = time.monotonic()
            if error is None:
                result: T = outcome["result"]
                return result
        if isinstance(error, RemoteHandsError | NotPresent):
            raise error
        raise translate(self._endpoint, what, error) from error

    def _work(
        self,
        reuse: Any,
        stale: Any,
        operation: Callable[[Any], T],
        outcome: dict[str, Any],
        deadline: float,
        read: bool = False,
    ) -> None:
        if stale is not None:
            _logout_quietly(stale)  # BMCs have few session slots: do not leave one behind
        for attempt in (1, 2):
            try:
                if reuse is None:
                    reuse = self._login(deadline)
                outcome["command"] = reuse
                outcome["result"] = operation(reuse.ipmi_session)
                outcome.pop("error", None)
                return
            except KeyError as exc:
                # pyghmi checks its session table, then reads it without a lock: a session another thread
                # dropped in between raises KeyError (seen with two test processes on 2 cores). A read is
                # asked once more on a new login; a write is not (it may have reached the BMC).
                outcome["error"] = exc
                if not read or attempt == 2 or time.monotonic() >= deadline:
                    return
                log.info(
                    "IPMI %s: pyghmi's session table changed under the request (%s); once more",
                    self.device,
                    exc,
                )
                reuse = None
            except BaseException as exc:  # handed to the caller's thread, translated there
                outcome["error"] = exc
                return

    def _login(self, deadline: float) -> Any:
        """Log in. A login that got no answer is tried again until ``deadline``: pyghmi restarts a handshake
        that lost a packet only once, so on a lossy network (30% loss: a clean five-packet handshake one
        time in six) a single attempt fails often. A refused login is not tried again, except a first
        "Incorrect password": pyghmi reports that for any RAKP2 whose HMAC does not match, and a stale RAKP2
        answering a retransmitted handshake does not (seen under load with workers SIGKILLed around the
        BMCs); a wrong password fails the second login too."""
        from pyghmi import exceptions as pyghmi_exc

        hmac_mismatches = 0
        while True:
            try:
                return self._login_once()
            except pyghmi_exc.IpmiException as exc:
                if isinstance(translate(self._endpoint, "log in", exc), DeviceRefused):
                    hmac_mismatches += "Incorrect password" in str(exc)
                    if hmac_mismatches != 1 or "Incorrect password" not in str(exc):
                        raise
                    log.info("IPMI %s: login HMAC mismatch (a stale answer?); trying once more", self.device)
                    continue
                if time.monotonic() >= deadline:
                    raise
                log.info("IPMI %s: login got no answer (%s); trying again", self.device, exc)

    def _login_once(self) -> Any:
        install_pyghmi_io_fix()
        from pyghmi import exceptions as pyghmi_exc
        from pyghmi.ipmi import command as ipmi_command
        from pyghmi.ipmi.private import session as ipmisession

        # pyghmi files a login under (bmc, userid, password, port, kg) but deletes it under the *encoded*
        # credentials, so a later login is handed the old, broken session: drop it first. Logins to one BMC
        # take turns: two at once can share a client socket, which the BMC (keying by address) mixes up.
        with login_lock(self.address, self.port):
            ipmisession.Session.initting_sessions.pop(
                (self.address, self.username, self._password, self.port, None), None
            )
            try:
                command = ipmi_command.Command(
                    bmc=self.address, userid=self.username, password=self._password, port=self.port
                )
            except AttributeError as exc:
                if "errormsg" not in str(exc):
                    raise
                # pyghmi marked the session broken before storing why (a race under load): retry the login
                raise pyghmi_exc.IpmiException("Session failed to initialize") from None
        session = command.ipmi_session
        if session.broken or not session.logged:
            raise pyghmi_exc.IpmiException(
                getattr(session, "errormsg", None) or "Session no longer connected"
            )
        # When a request goes unanswered, pyghmi logs in again and sends it once more on the new session,
        # where the BMC cannot tell it from a new request: a power cycle could run twice, and after this
        # driver has reported the BMC unreachable. Without a login to spare it reports the timeout instead,
        # and the next call logs in anew.
        session.logontries = 0
        return command


# Requests that only read: asked once more after pyghmi's session-table race (``_work``).
_READS = frozenset(
    {
        (NETFN_CHASSIS, CMD_GET_CHASSIS_STATUS),
        (NETFN_CHASSIS, CMD_GET_SYSTEM_BOOT_OPTIONS),
        (NETFN_STORAGE, CMD_GET_SEL_INFO),
        (NETFN_STORAGE, CMD_GET_SEL_ENTRY),
    }
)


def _logout_quietly(command: Any) -> None:
    try:
        command.ipmi_session.logout()
    except Exception as exc:  # a failed logout only leaves a session the BMC will expire
        log.debug("IPMI logout failed: %s", type(exc).__name__)
