"""A NanoMDM-style MDM server and its enrolled Macs, for the tests and the lab.

HTTP, as NanoMDM's API (HTTP Basic, user ``nanomdm``, the API key as password; 401 otherwise):

* ``PUT /v1/enqueue/{udid}[?nopush=1]``: a raw command plist (``CommandUUID``, ``Command.RequestType``).
  200 ``{"status": {udid: {"push_result": ...}}, "command_uuid", "request_type"}`` (or ``"no_push": true``);
  500 with ``command_error`` for an unknown enrollment, a bad plist, or a CommandUUID the server already
  has (worded "duplicate", as NanoMDM's SQL storage refuses a second row with the same primary key).
* ``GET``/``POST /v1/push/{udid}``: 200 ``{"status": {udid: {"push_result": ...}}}``, 500 ``push_error``
  for an unknown enrollment.

and the results store NanoMDM lacks, which a real deployment builds from NanoMDM's ``-webhook-url`` events
into a small service (see ``remotehands.mdm``): ``GET /v1/commands/{uuid}`` (status Pending, Acknowledged,
Error with an ``error_chain``, or NotNow) and ``GET /v1/devices/{udid}`` (``enrolled``, ``enrolled_at``).

The devices: a push makes a device check in ``checkin_delay`` seconds later and answer its queued commands
in order. ``EraseDevice`` is acknowledged, the device leaves enrollment and ``on_erase(udid)`` runs (the
lab makes the SSH host go dark and come back with a new build); ``erase_seconds`` later it re-enrolls
(``enrolled_at`` = then) and ``on_enroll(udid)`` runs. Faults per device: ``silent`` (never checks in),
``error`` (answers every command Error with an ErrorChain), ``notnow`` (answers NotNow ``notnow_count``
times, checking in again by itself ``notnow_retry`` seconds later, then as normal). All delays are lab
seconds, multiplied by ``time_scale`` (0.001: ten lab minutes pass in 0.6 s). The shared ``Faults`` answer
the next calls with 429 or 503. Tests drive and inspect the sim through its methods, not over HTTP.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import plistlib
import threading
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from remotehands.lab.ticket_sims.harness import Faults, fault_middleware

log = logging.getLogger(__name__)

Fault = Literal["silent", "error", "notnow"]
API_USER = "nanomdm"
SIM_ERROR_CHAIN: tuple[dict[str, Any], ...] = (
    {
        "ErrorCode": 4,
        "ErrorDomain": "RHSimMDMErrorDomain",
        "LocalizedDescription": "Simulated: Erase All Content and Settings preflight failed",
        "USEnglishDescription": "Simulated: Erase All Content and Settings preflight failed",
    },
)


@dataclass
class SimDevice:
    """One simulated Mac as the MDM server sees it."""

    udid: str
    serial: str
    enrolled: bool
    enrolled_at: datetime | None
    fault: Fault | None = None
    notnow_left: int = 0
    error_chain: list[dict[str, Any]] = field(default_factory=list)
    queue: list[str] = field(default_factory=list)
    pushes: int = 0
    checkins: int = 0
    erases: int = 0
    enrollments: int = 0
    erasing: bool = False
    checkin_scheduled: bool = False


@dataclass
class SimCommand:
    """One enqueued command: the body as received, the parsed plist, and every status it went through."""

    command_uuid: str
    udid: str
    request_type: str
    body: bytes
    payload: dict[str, Any]
    enqueued_at: datetime
    updated_at: datetime
    status: str = "Pending"
    error_chain: list[dict[str, Any]] = field(default_factory=list)
    history: list[str] = field(default_factory=lambda: ["Pending"])
    enqueue_attempts: int = 1


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(when: datetime | None) -> str | None:
    return when.isoformat() if when else None


class MdmSim:
    """An in-memory NanoMDM plus results store and devices; ``app`` is its ASGI application."""

    def __init__(
        self,
        *,
        api_key: str,
        time_scale: float = 1.0,
        checkin_delay: float = 5.0,
        erase_seconds: float = 600.0,
        notnow_retry: float = 60.0,
        on_erase: Callable[[str], None] | None = None,
        on_enroll: Callable[[str], None] | None = None,
    ) -> None:
        self.api_key = api_key
        self.time_scale = time_scale
        self.checkin_delay = checkin_delay
        self.erase_seconds = erase_seconds
        self.notnow_retry = notnow_retry
        self.on_erase = on_erase
        self.on_enroll = on_enroll
        self.faults = Faults()
        self._lock = threading.Lock()
        self._devices: dict[str, SimDevice] = {}
        self._commands: dict[str, SimCommand] = {}
        self._timers: set[threading.Timer] = set()
        self._closed = False
        self.app = FastAPI(title="mdm-sim")
        self.app.middleware("http")(self._auth)
        self.app.middleware("http")(fault_middleware(self.faults))
        self._routes()

    # -- the test and lab side --------------------------------------------------------------------

    def add_device(self, udid: str, serial: str, *, enrolled: bool = True) -> None:
        """Add (or replace) a device; an enrolled one has ``enrolled_at`` = now."""
        with self._lock:
            self._devices[udid] = SimDevice(udid, serial, enrolled, _now() if enrolled else None)

    def device(self, udid: str) -> SimDevice:
        """A copy of the device's state (``KeyError`` when unknown)."""
        with self._lock:
            dev = self._devices[udid]
            return replace(dev, queue=list(dev.queue), error_chain=list(dev.error_chain))

    def enrolled(self, udid: str) -> bool:
        """Whether the device is enrolled now."""
        with self._lock:
            return self._devices[udid].enrolled

    def set_fault(
        self,
        udid: str,
        fault: Fault | None,
        *,
        notnow_count: int = 1,
        error_chain: list[dict[str, Any]] | None = None,
    ) -> None:
        """Arm a fault on one device (``None`` clears it)."""
        with self._lock:
            dev = self._devices[udid]
            dev.fault = fault
            dev.notnow_left = notnow_count if fault == "notnow" else 0
            dev.error_chain = list(error_chain or SIM_ERROR_CHAIN)

    def commands(self, udid: str | None = None) -> list[SimCommand]:
        """The command log (copies), oldest first, optionally for one device."""
        with self._lock:
            return [
                replace(c, history=list(c.history), error_chain=list(c.error_chain))
                for c in self._commands.values()
                if udid is None or c.udid == udid
            ]

    def command(self, command_uuid: str) -> SimCommand:
        """One command (a copy; ``KeyError`` when unknown)."""
        with self._lock:
            c = self._commands[command_uuid]
            return replace(c, history=list(c.history), error_chain=list(c.error_chain))

    def set_time_scale(self, scale: float) -> None:
        """Real seconds per lab second, for delays scheduled from now on."""
        self.time_scale = scale

    def push(self, udid: str) -> bool:
        """Push the device as APNs would (the HTTP push endpoint calls this); False when unknown."""
        with self._lock:
            dev = self._devices.get(udid)
            if dev is None:
                return False
            dev.pushes += 1
            self._schedule_checkin(dev, self.checkin_delay)
        return True

    def close(self) -> None:
        """Cancel every scheduled check-in and re-enrollment."""
        with self._lock:
            self._closed = True
            timers, self._timers = list(self._timers), set()
        for timer in timers:
            timer.cancel()

    # -- the devices ------------------------------------------------------------------------------

    def _later(self, lab_seconds: float, action: Callable[[str], None], udid: str) -> None:
        """Run ``action(udid)`` after ``lab_seconds`` scaled. Called with the lock held."""
        if self._closed:
            return

        def run() -> None:
            with self._lock:
                self._timers.discard(timer)
                if self._closed:
                    return
            try:
                action(udid)
            except Exception:
                log.exception("mdm-sim: %s for %s failed", action.__name__, udid)

        timer = threading.Timer(max(0.0, lab_seconds * self.time_scale), run)
        timer.daemon = True
        self._timers.add(timer)
        timer.start()

    def _schedule_checkin(self, dev: SimDevice, lab_seconds: float) -> None:
        if dev.fault == "silent" or dev.erasing or not dev.enrolled or dev.checkin_scheduled:
            return
        dev.checkin_scheduled = True
        self._later(lab_seconds, self._checkin, dev.udid)

    def _answer(self, cmd: SimCommand, status: str, error_chain: list[dict[str, Any]] | None = None) -> None:
        cmd.status, cmd.updated_at = status, _now()
        cmd.error_chain = list(error_chain or [])
        cmd.history.append(status)

    def _checkin(self, udid: str) -> None:
        """The device connects and answers its queued commands in order, as an MDM client does."""
        erased = False
        with self._lock:
            dev = self._devices[udid]
            dev.checkin_scheduled = False
            if dev.fault == "silent" or dev.erasing or not dev.enrolled:
                return
            dev.checkins += 1
            while dev.queue:
                cmd = self._commands[dev.queue[0]]
                if dev.fault == "notnow" and dev.notnow_left > 0:
                    dev.notnow_left -= 1
                    self._answer(cmd, "NotNow")
                    self._schedule_checkin(dev, self.notnow_retry)  # the device comes back by itself
                    break
                dev.queue.pop(0)
                if dev.fault == "error":
                    self._answer(cmd, "Error", dev.error_chain or list(SIM_ERROR_CHAIN))
                    continue
                self._answer(cmd, "Acknowledged")
                if cmd.request_type == "EraseDevice":
                    dev.erasing, dev.enrolled, erased = True, False, True
                    dev.erases += 1
                    self._later(self.erase_seconds, self._reenroll, udid)
                    break  # the device is gone until it re-enrolls
        if erased and self.on_erase is not None:
            self.on_erase(udid)

    def _reenroll(self, udid: str) -> None:
        with self._lock:
            dev = self._devices[udid]
            dev.erasing, dev.enrolled, dev.enrolled_at = False, True, _now()
            dev.enrollments += 1
        if self.on_enroll is not None:
            self.on_enroll(udid)

    # -- HTTP -------------------------------------------------------------------------------------

    def _authorized(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return user == API_USER and hmac.compare_digest(password.encode(), self.api_key.encode())

    async def _auth(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if request.url.path.startswith("/v1/") and not self._authorized(
            request.headers.get("authorization", "")
        ):
            return PlainTextResponse(
                "Unauthorized\n", status_code=401, headers={"WWW-Authenticate": 'Basic realm="nanomdm"'}
            )
        return await call_next(request)

    def _enqueue(self, udid: str, body: bytes, nopush: bool) -> JSONResponse:
        try:
            payload = plistlib.loads(body)
            command_uuid = str(payload["CommandUUID"])
            request_type = str(payload["Command"]["RequestType"])
        except Exception as exc:  # a bad plist (plistlib raises several types) or a missing key
            return JSONResponse({"command_error": f"decoding command plist: {exc!r}"}, status_code=500)
        result: dict[str, Any] = {"command_uuid": command_uuid, "request_type": request_type}
        with self._lock:
            dev = self._devices.get(udid)
            known = self._commands.get(command_uuid)
            if known is not None:
                known.enqueue_attempts += 1
                result["command_error"] = f"storing command: duplicate command UUID {command_uuid!r}"
                return JSONResponse(result, status_code=500)
            if dev is None:
                result["command_error"] = f"storing command: no enrollment with id {udid!r}"
                return JSONResponse(result, status_code=500)
            now = _now()
            self._commands[command_uuid] = SimCommand(
                command_uuid, udid, request_type, body, payload, enqueued_at=now, updated_at=now
            )
            dev.queue.append(command_uuid)
        if nopush:
            result["no_push"] = True
        else:
            self.push(udid)
            result["status"] = {udid: {"push_result": str(uuid.uuid4()).upper()}}
        return JSONResponse(result)

    def _routes(self) -> None:
        app = self.app

        @app.put("/v1/enqueue/{udid}")
        async def enqueue(udid: str, request: Request) -> Response:
            return self._enqueue(udid, await request.body(), bool(request.query_params.get("nopush")))

        @app.api_route("/v1/push/{udid}", methods=["GET", "POST"])
        async def push(udid: str) -> Response:
            if not self.push(udid):
                error = f"no push info for enrollment {udid!r}"
                return JSONResponse({"status": {udid: {"push_error": error}}, "push_error": error}, 500)
            return JSONResponse({"status": {udid: {"push_result": str(uuid.uuid4()).upper()}}})

        @app.get("/v1/commands/{command_uuid}")
        async def command_status(command_uuid: str) -> Response:
            with self._lock:
                cmd = self._commands.get(command_uuid)
                if cmd is None:
                    return JSONResponse({"error": "command not found"}, status_code=404)
                return JSONResponse(
                    {
                        "command_uuid": cmd.command_uuid,
                        "udid": cmd.udid,
                        "request_type": cmd.request_type,
                        "status": cmd.status,
                        "error_chain": cmd.error_chain,
                        "enqueued_at": _stamp(cmd.enqueued_at),
                        "updated_at": _stamp(cmd.updated_at),
                    }
                )

        @app.get("/v1/devices/{udid}")
        async def device(udid: str) -> Response:
            with self._lock:
                dev = self._devices.get(udid)
                if dev is None:
                    return JSONResponse({"error": "enrollment not found"}, status_code=404)
                return JSONResponse(
                    {
                        "udid": dev.udid,
                        "serial": dev.serial,
                        "enrolled": dev.enrolled,
                        "enrolled_at": _stamp(dev.enrolled_at),
                    }
                )
