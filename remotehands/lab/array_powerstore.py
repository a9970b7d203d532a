"""The lab's Dell PowerStore: the part of the REST API (``/api/rest``) that grows a volume, at the wire.

Shapes follow Dell's PowerStore REST API Developers Guide and what public clients (PyPowerStore,
gopowerstore, the Cinder driver) send and read. ``GET login_session`` with HTTP Basic opens a session: the
CSRF token in the ``DELL-EMC-TOKEN`` header, the session in the ``auth_cookie`` cookie; later requests send
the cookie (or Basic again), and every request but a GET also the session's token, or is answered 403.
``POST logout`` ends it. ``GET volume`` takes PostgREST-style filters (``name=eq.X``, case-insensitive as
the guide says) and ``select=`` (without it, only ``id``, as on the real array); ``GET volume/{id}``;
``PATCH volume/{id}`` ``{"size": N}`` answers 204; ``POST metrics/generate`` for
``space_metrics_by_appliance`` answers samples, oldest first, with ``physical_total``/``physical_used``.

A resize that does not grow the volume (the real API refuses an unchanged size too) or grows it by more
than the appliance's physical free space (the lab's guard; nothing is written here, so ``physical_used``
stays as built) is answered 422; above 256 TB or off the 8 KiB grain, 400. Errors have PowerStore's body
``{"messages": [{"code", "severity", "message_l10n", "arguments"}]}``. A volume is a ``SanLun`` named by
its ``wwn`` (``naa.68ccf09800`` and 22 hex digits, lowercase, as real arrays answer) whose size is the
volume's, changed holding ``San.lock`` (this array's lock too); each resize that changes it is a
command-log line ``(array, "resize", lun=NAME, size=BYTES)``.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import fnmatch
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from email.message import Message
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from remotehands.lab.redfish_sim_http import Answer
from remotehands.lab.san import San, SanLun

GiB = 1024**3
TiB = 1024**4
MAX_VOLUME_SIZE = 256 * TiB  # "Maximum volume size is 256TB" (API reference); read here as binary TB
MIN_VOLUME_SIZE = 1024**2
SIZE_GRAIN = 8192  # "Size must be a multiple of 8192"
TOKEN_HEADER = "DELL-EMC-TOKEN"  # noqa: S105 (a header name)
COOKIE = "auth_cookie"
IDLE_TIMEOUT_S = 3600
FAULTS = frozenset({"resize_error", "error_after_resize"})
INTERVALS = {"Twenty_Sec": 20, "Five_Mins": 300, "One_Hour": 3600, "One_Day": 86400}

# Codes seen in answers of real arrays (gopowerstore api/error_codes.go and its recorded error body).
UNKNOWN_VOLUME = "0xE0A08001000E"  # "Could not find the volume with ID: <id>"
INSTANCE_NOT_FOUND = "0xE04040020009"
# Stand-ins of the same shape for answers whose real code we have not seen.
NOT_AUTHENTICATED = "0xE09010010001"
BAD_TOKEN = "0xE09010010002"  # noqa: S105 (an error code)
BAD_REQUEST = "0xE04040010001"
NO_GROWTH = "0xE0A080010019"
NO_SPACE = "0xE0A08001001A"
INTERNAL = "0xE04040030001"

VOLUME_FIELDS = frozenset(
    {
        "id", "name", "description", "type", "type_l10n", "wwn", "nsid", "nguid", "appliance_id", "state",
        "state_l10n", "size", "node_affinity", "node_affinity_l10n", "creation_timestamp",
        "protection_policy_id", "performance_policy_id", "is_replication_destination",
    }
)  # fmt: skip


class _Fault(Exception):
    """An error answer in PowerStore's shape."""

    def __init__(self, status: int, code: str, message: str, *arguments: object) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.arguments = [str(a) for a in arguments]

    def answer(self) -> Answer:
        entry = {"code": self.code, "severity": "Error", "message_l10n": self.message}
        return self.status, {"messages": [{**entry, "arguments": self.arguments}]}, {}


@dataclass
class Appliance:
    """One appliance of the cluster; capacities in bytes."""

    id: str
    physical_total: int
    physical_used: int

    @property
    def free(self) -> int:
        return max(0, self.physical_total - self.physical_used)


@dataclass
class _Volume:
    id: str
    name: str
    appliance_id: str
    serial: str  # 22 hex digits; wwn and nguid are built from it as real arrays build them
    nsid: int
    lun: SanLun  # its size is the volume's size
    created: str

    def row(self) -> dict[str, Any]:
        nguid = f"nguid.{self.serial[:16]}8ccf096800{self.serial[16:]}"
        return {
            "id": self.id, "name": self.name, "description": "", "type": "Primary",
            "type_l10n": "Primary", "wwn": self.lun.naa, "nsid": self.nsid, "nguid": nguid,
            "appliance_id": self.appliance_id, "state": "Ready", "state_l10n": "Ready", "size": self.lun.size,
            "node_affinity": "System_Select_At_Attach", "node_affinity_l10n": "System Select At Attach",
            "creation_timestamp": self.created, "protection_policy_id": None,
            "performance_policy_id": "default_medium", "is_replication_destination": False,
        }  # fmt: skip


@dataclass(frozen=True)
class _Session:
    id: str
    token: str
    cookie: str


class PowerStoreSim:
    """A PowerStore cluster called ``name`` serving its volumes as LUNs of ``san``; a ``JsonService``.

    Build it with ``add_appliance`` and ``add_volume``; serve it with ``TlsJsonServer``. Thread-safe.
    """

    FAULTS = FAULTS

    def __init__(
        self, name: str, san: San, username: str, password: str, command_log: Any | None = None
    ) -> None:
        self.name = name
        self.san = san
        self.username = username
        self.password = password
        self.command_log = command_log
        self._lock = san.lock  # one lock: sizes are changed holding it, and so is everything else here
        self._appliances: dict[str, Appliance] = {}
        self._volumes: dict[str, _Volume] = {}  # id -> volume
        self._sessions: dict[str, _Session] = {}  # cookie -> session
        self._issued: list[str] = []
        self._armed: set[str] = set()
        self._failing: set[str] = set()  # ids of volumes whose GETs answer 500 (error_after_resize)

    # -- building and inspecting the array -----------------------------------------------------------

    def add_appliance(self, appliance_id: str, *, physical_total: int, physical_used: int) -> Appliance:
        """A new appliance with ``physical_total`` bytes of which ``physical_used`` are used."""
        appliance = Appliance(appliance_id, physical_total, physical_used)
        with self._lock:
            self._appliances[appliance_id] = appliance
        return appliance

    def add_volume(
        self, name: str, size: int, hosts: tuple[str, ...] = (), appliance_id: str = "A1"
    ) -> SanLun:
        """A new volume of ``size`` bytes on ``appliance_id``, mapped to ``hosts``; its LUN in the San.

        The volume's id and wwn are derived from the array and volume names, so a lab rebuilt is the same.
        Raises ``ValueError`` for an unknown appliance or a name already used."""
        digest = hashlib.sha256(f"{self.name}/{name}".encode()).hexdigest()
        with self._lock:
            if appliance_id not in self._appliances:
                raise ValueError(f"{self.name} has no appliance {appliance_id}")
            if any(v.name == name for v in self._volumes.values()):
                raise ValueError(f"{self.name} has a volume {name} already")
            serial = digest[:22]
            lun = self.san.add_lun(f"naa.68ccf09800{serial}", size, hosts)
            volume_id = str(uuid.UUID(digest[22:54]))
            created = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
            volume = _Volume(volume_id, name, appliance_id, serial, len(self._volumes) + 1, lun, created)
            self._volumes[volume_id] = volume
        return lun

    def volume_size(self, name: str) -> int:
        """The size in bytes of the volume called ``name``; ``StopIteration`` when there is none."""
        with self._lock:
            return next(v.lun.size for v in self._volumes.values() if v.name == name)

    def set_fault(self, fault: str, enabled: bool) -> None:
        """Arm (or clear) a fault. ``resize_error``: the next resize answers 500 and changes nothing (once).
        ``error_after_resize``: the next resize is applied but answered 500, and from then on every GET
        about that volume answers 500 until the fault is cleared. ``ValueError`` for another name."""
        if fault not in self.FAULTS:
            raise ValueError(f"unknown PowerStore fault {fault!r}; known: {', '.join(sorted(self.FAULTS))}")
        with self._lock:
            if enabled:
                self._armed.add(fault)
                return
            self._armed.discard(fault)
            if fault == "error_after_resize":
                self._failing.clear()

    def open_sessions(self) -> int:
        """How many login sessions are open (a driver's ``close`` ends its own)."""
        with self._lock:
            return len(self._sessions)

    def issued_secrets(self) -> list[str]:
        """Every token and cookie value handed out so far (tests check that none leaks)."""
        with self._lock:
            return list(self._issued)

    # -- requests -----------------------------------------------------------------------------------------

    def answer(self, method: str, path: str, headers: Message, body: dict[str, Any] | None) -> Answer:
        """Answer one request; every refusal is PowerStore's error body."""
        url = urlsplit(path)
        parts = [p for p in url.path.split("/") if p]
        query = parse_qsl(url.query, keep_blank_values=True)
        try:
            if parts[:2] != ["api", "rest"] or len(parts) < 3:
                raise _Fault(404, INSTANCE_NOT_FOUND, f"The resource {url.path} was not found.", url.path)
            resource, rest = parts[2], parts[3:]
            if resource == "login_session" and not rest:
                _only(method, "GET")
                return self._login(headers)
            session = self._authenticate(headers)
            if resource == "logout" and not rest:
                _only(method, "POST")
                return self._logout(session)
            if method != "GET":
                self._check_token(session, headers)
            status, payload = self._route(method, resource, rest, query, body or {})
            extra = {TOKEN_HEADER: session.token} if session is not None and method == "GET" else {}
            return status, payload, extra
        except _Fault as fault:
            return fault.answer()

    def _login(self, headers: Message) -> Answer:
        if headers.get("Authorization"):
            if not self._basic_valid(headers):
                raise _Fault(401, NOT_AUTHENTICATED, "Authentication failed: invalid user name or password.")
            session = _Session(str(uuid.uuid4()), secrets.token_urlsafe(24), secrets.token_urlsafe(32))
            with self._lock:
                self._sessions[session.cookie] = session
                self._issued += [session.token, session.cookie]
        else:
            found = self._authenticate(headers)
            if found is None:  # unreachable: Basic was handled above
                raise _Fault(401, NOT_AUTHENTICATED, "Authentication required.")
            session = found
        info = {
            "id": session.id, "user": {"id": "1", "name": self.username}, "role_ids": ["1"],
            "idle_timeout": IDLE_TIMEOUT_S, "is_password_change_required": False, "is_built_in_user": False,
        }  # fmt: skip
        cookie = f"{COOKIE}={session.cookie}; Path=/; Secure; HttpOnly"
        return 200, [info], {TOKEN_HEADER: session.token, "Set-Cookie": cookie}

    def _logout(self, session: _Session | None) -> Answer:
        if session is not None:
            with self._lock:
                self._sessions.pop(session.cookie, None)
        return 204, None, {}

    def _authenticate(self, headers: Message) -> _Session | None:
        """The session of the request's cookie, or None for valid Basic credentials; else a 401 fault."""
        cookies = dict(c.strip().partition("=")[::2] for c in (headers.get("Cookie") or "").split(";"))
        with self._lock:
            session = self._sessions.get(cookies.get(COOKIE) or "")
        if session is not None:
            return session
        if headers.get("Authorization") and self._basic_valid(headers):
            return None
        raise _Fault(401, NOT_AUTHENTICATED, "Authentication required: the session is not valid or expired.")

    def _check_token(self, session: _Session | None, headers: Message) -> None:
        token = headers.get(TOKEN_HEADER) or ""
        with self._lock:
            valid = [session.token] if session is not None else [s.token for s in self._sessions.values()]
        if not any(hmac.compare_digest(token.encode(), v.encode()) for v in valid):
            message = (
                f"Forbidden: a request that changes the system needs the session's {TOKEN_HEADER} header."
            )
            raise _Fault(403, BAD_TOKEN, message)

    def _basic_valid(self, headers: Message) -> bool:
        scheme, _, encoded = (headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return hmac.compare_digest(user.encode(), self.username.encode()) & hmac.compare_digest(
            password.encode(), self.password.encode()
        )

    def _route(
        self, method: str, resource: str, rest: list[str], query: list[tuple[str, str]], body: dict[str, Any]
    ) -> tuple[int, dict[str, Any] | list[Any] | None]:
        with self._lock:
            if resource == "volume" and not rest:
                _only(method, "GET")
                rows = _filter([v.row() for v in self._volumes.values()], query, VOLUME_FIELDS)
                if any(row["id"] in self._failing for row in rows):
                    raise _internal()
                return 200, [_pick(row, query, VOLUME_FIELDS) for row in rows]
            if resource == "volume" and len(rest) == 1:
                _only(method, "GET", "PATCH")
                volume = self._volumes.get(rest[0])
                if volume is None:
                    code = UNKNOWN_VOLUME if method == "PATCH" else INSTANCE_NOT_FOUND
                    raise _Fault(404, code, f"Could not find the volume with ID: {rest[0]}", rest[0])
                if method == "PATCH":
                    self._modify(volume, body)
                    return 204, None
                if volume.id in self._failing:
                    raise _internal()
                return 200, _pick(volume.row(), query, VOLUME_FIELDS)
            if resource == "metrics" and rest == ["generate"]:
                _only(method, "POST")
                return 200, self._space_metrics(body, query)
        raise _Fault(404, INSTANCE_NOT_FOUND, f"The resource /api/rest/{resource} was not found.", resource)

    def _modify(self, volume: _Volume, body: dict[str, Any]) -> None:
        # the lab changes sizes only; any other property is refused rather than silently ignored
        unknown = sorted(set(body) - {"size"})
        if unknown:
            raise _bad(f"Invalid request body: property {unknown[0]} is not supported here.", unknown[0])
        size = body.get("size")
        if not isinstance(size, int) or isinstance(size, bool):
            raise _bad("Invalid value for property size: an integer is required.", size)
        if "resize_error" in self._armed:
            self._armed.discard("resize_error")
            raise _internal()
        if size > MAX_VOLUME_SIZE or size < MIN_VOLUME_SIZE or size % SIZE_GRAIN:
            raise _bad(
                f"Invalid value {size} for property size: it must be between {MIN_VOLUME_SIZE} and "
                f"{MAX_VOLUME_SIZE} bytes and a multiple of {SIZE_GRAIN}.",
                size,
            )
        current = volume.lun.size
        if size <= current:
            message = f"The new size {size} of volume {volume.name} must be greater than its size {current}."
            raise _Fault(422, NO_GROWTH, message, volume.name, size, current)
        appliance = self._appliances[volume.appliance_id]
        if size - current > appliance.free:
            message = (
                f"Not enough free physical space on appliance {appliance.id} to expand volume {volume.name} "
                f"by {size - current} bytes ({appliance.free} bytes free)."
            )
            raise _Fault(422, NO_SPACE, message, appliance.id, volume.name)
        volume.lun.size = size
        if self.command_log is not None:
            self.command_log.write(self.name, "resize", lun=volume.name, size=size)
        if "error_after_resize" in self._armed:
            self._armed.discard("error_after_resize")
            self._failing.add(volume.id)
            raise _internal()

    def _space_metrics(self, body: dict[str, Any], query: list[tuple[str, str]]) -> list[dict[str, Any]]:
        entity, interval = body.get("entity"), body.get("interval", "Five_Mins")
        if entity != "space_metrics_by_appliance":
            raise _bad(f"Invalid value {entity} for property entity.", entity)
        if interval not in INTERVALS:
            raise _bad(f"Invalid value {interval} for property interval.", interval)
        appliance = self._appliances.get(str(body.get("entity_id")))
        if appliance is None:
            return []
        provisioned = sum(v.lun.size for v in self._volumes.values() if v.appliance_id == appliance.id)
        used = appliance.physical_used
        step = INTERVALS[interval]
        now = int(datetime.datetime.now(datetime.UTC).timestamp()) // step * step
        samples = []
        for back in (2, 1, 0):
            at = datetime.datetime.fromtimestamp(now - back * step, datetime.UTC)
            sample = {
                "entity": entity, "appliance_id": appliance.id, "repeat_count": 1,
                "timestamp": at.isoformat().replace("+00:00", "Z"),
                "physical_total": appliance.physical_total, "physical_used": used,
                "logical_provisioned": provisioned, "logical_used": used * 2,
                "data_reduction": 2.0, "efficiency_ratio": round(provisioned / (used or 1), 2),
                "snapshot_savings": 1.0, "thin_savings": round(provisioned / (2 * used or 1), 2),
            }  # fmt: skip
            select = dict(query).get("select")
            samples.append({k: v for k, v in sample.items() if select is None or k in select.split(",")})
        return samples


def _filter(
    rows: list[dict[str, Any]], query: list[tuple[str, str]], fields: frozenset[str]
) -> list[dict[str, Any]]:
    """``rows`` matching every filter of ``query`` (``eq``, ``neq``, ``ilike``; case-insensitive)."""
    for key, value in query:
        if key == "select":
            continue
        if key not in fields:
            raise _bad(f"Invalid filter: {key} is not an attribute of this resource.", key)
        op, _, operand = value.partition(".")
        if op not in ("eq", "neq", "ilike"):
            raise _bad(f"Invalid filter operator {op} for {key}.", op)

        def matches(row: dict[str, Any], key: str = key, op: str = op, operand: str = operand) -> bool:
            have = str(row.get(key)).casefold()
            if op == "ilike":
                return fnmatch.fnmatchcase(have, operand.casefold())
            return (have == operand.casefold()) == (op == "eq")

        rows = [row for row in rows if matches(row)]
    return rows


def _pick(row: dict[str, Any], query: list[tuple[str, str]], fields: frozenset[str]) -> dict[str, Any]:
    """``row`` reduced to the ``select``ed attributes; only ``id`` when there is no ``select``."""
    select = [name for name in (dict(query).get("select") or "id").split(",") if name]
    unknown = [name for name in select if name not in fields]
    if unknown:
        raise _bad(f"Invalid select: {unknown[0]} is not an attribute.", unknown[0])
    return {name: row[name] for name in select}


def _bad(message: str, *arguments: object) -> _Fault:
    return _Fault(400, BAD_REQUEST, message, *arguments)


def _internal() -> _Fault:
    return _Fault(500, INTERNAL, "An internal error occurred while processing the request. Retry it.")


def _only(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise _Fault(405, BAD_REQUEST, f"The HTTP method {method} is not supported on this resource.", method)


def lab_powerstore(
    san: San, username: str, password: str, hosts: tuple[str, ...], command_log: Any | None = None
) -> PowerStoreSim:
    """The lab's ``san-pstore-01``: appliance ``A1`` with 12 TiB physical of which 7.5 TiB are used
    (4.5 TiB free: a 100 GiB volume grows to 150 GiB, not to 50 TiB), and volume ``lnx-xfs-01`` of
    100 GiB mapped to ``hosts``."""
    sim = PowerStoreSim("san-pstore-01", san, username, password, command_log)
    sim.add_appliance("A1", physical_total=12 * TiB, physical_used=7 * TiB + 512 * GiB)
    sim.add_volume("lnx-xfs-01", 100 * GiB, hosts, appliance_id="A1")
    return sim
