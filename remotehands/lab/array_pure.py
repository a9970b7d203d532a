"""The lab's Pure Storage FlashArray: a REST 2.x API simulator (``PureSim``) serving volumes of the lab's SAN.

What it answers (shapes from Pure's REST 2.x reference as mirrored by py-pure-client's ``FA_2_x`` models):

- ``GET /api/api_version`` (no session): ``{"version": ["1.0", ..., "2.26"]}``;
- ``POST /api/2.N/login`` with header ``api-token``: 200, the session in response header ``x-auth-token`` and
  ``{"items": [{"username": ...}]}``; a wrong token answers 400 "Unable to list user for API token." (the
  text Pure's own exporter maintainers report); ``POST /api/2.N/logout`` ends the session;
- every other 2.x call needs a live ``x-auth-token``, else 401 "Invalid session.";
- ``GET /api/2.N/volumes`` with ``names=a,b`` (400 "Volume does not exist." per missing name), or
  ``filter=name='x'`` (``*`` wildcards; no match is an empty list), ``destroyed=true|false`` and ``limit``;
- ``PATCH /api/2.N/volumes?names=x`` with ``{"provisioned": N}``: N must be a multiple of 512 and at most
  4 PiB; shrinking needs ``truncate=true`` ("Implicit truncation not permitted."); a destroyed volume answers
  "Volume has been destroyed.";
- ``GET /api/2.N/arrays/space``: ``capacity`` and ``space.total_used`` (and the deprecated, equal
  ``space.total_physical``), so a client computes free physical space as capacity minus used.

Errors use Pure's 2.x body ``{"errors": [{"context": ..., "message": ...}]}``. A volume's SCSI name as hosts
see it is ``naa.624a9370`` + its 24-digit serial in lowercase; each volume is a ``SanLun`` whose ``size`` is
kept equal to ``provisioned``. Growing a volume does not use physical space (thin provisioning), so the
array's used space is what the lab sets with ``set_space``.

Faults (``set_fault``): ``resize_error`` (the next valid resize answers 500 and changes nothing; fires once)
and ``error_after_resize`` (the next valid resize is applied and answered 500, and from then on every GET
that would show that volume answers 500 until the fault is cleared).
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import re
import threading
import time
import uuid
from dataclasses import dataclass
from email.message import Message
from typing import Any
from urllib.parse import parse_qs, urlsplit

from remotehands.lab.redfish_sim_http import Answer
from remotehands.lab.san import San, SanLun

GiB = 1024**3
TiB = 1024**4
MAX_VOLUME_SIZE = 4 * 1024**5  # 4 PiB: the maximum of Volume.provisioned in Pure's 2.x API
SECTOR = 512  # provisioned sizes are a multiple of this
NAA_OUI = "624a9370"  # NAA type 6 + Pure's IEEE OUI 24a937: hosts see naa.624a9370<serial>
API_VERSIONS: tuple[str, ...] = tuple(f"1.{n}" for n in range(20)) + tuple(f"2.{n}" for n in range(27))

RESIZE_ERROR = "resize_error"
ERROR_AFTER_RESIZE = "error_after_resize"
FAULTS = frozenset({RESIZE_ERROR, ERROR_AFTER_RESIZE})

# Pure's wording where a public source shows it; the 500 text and the size limits' wording are the sim's own.
NO_SUCH_VOLUME = "Volume does not exist."
DESTROYED = "Volume has been destroyed."
TRUNCATION = "Implicit truncation not permitted."
LOGIN_REFUSED = "Unable to list user for API token."
INVALID_SESSION = "Invalid session."
TOO_LARGE = "Volume size exceeds the maximum volume size."
NOT_SECTOR_ALIGNED = "Volume size must be a multiple of 512 bytes."
INTERNAL = "An internal error occurred. Please retry the operation."

_FILTER = re.compile(r"^\s*name\s*=\s*'([^']*)'\s*$")


@dataclass(eq=False)
class PureVolume:
    """One volume of the simulated array; its size lives in ``lun.size`` (changed holding ``San.lock``)."""

    id: str
    name: str
    serial: str  # 24 uppercase hex digits
    lun: SanLun
    created: int  # ms since the epoch
    written: int  # bytes hosts have written (the volume's "virtual" space)
    destroyed: bool = False


def naa_of(serial: str) -> str:
    """The NAA name hosts see for a Pure volume with ``serial``."""
    return f"naa.{NAA_OUI}{serial.lower()}"


def _error(status: int, message: str, context: str | None = None) -> Answer:
    entry = {"context": context, "message": message} if context is not None else {"message": message}
    return status, {"errors": [entry]}, {}


class PureSim:
    """A FlashArray called ``name`` whose volumes are LUNs of ``san``; implements ``JsonService.answer``.

    ``api_token`` is the one token ``POST /login`` accepts. ``command_log.write(name, "resize", lun=...,
    size=...)`` is called for every resize that changes a volume's size. Thread-safe: the HTTPS server answers
    each connection in its own thread."""

    def __init__(
        self,
        name: str,
        san: San,
        api_token: str,
        command_log: Any | None = None,
        *,
        capacity: int = 10 * TiB,
        used: int = 0,
        username: str = "pureuser",
        api_versions: tuple[str, ...] = API_VERSIONS,
    ) -> None:
        self.name = name
        self.san = san
        self.command_log = command_log
        self.username = username
        self.api_versions = api_versions
        self.id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"pure://{name}"))
        self._api_token = api_token
        self._lock = threading.Lock()
        self._sessions: set[str] = set()
        self._volumes: dict[str, PureVolume] = {}
        self._capacity = capacity
        self._used = used
        self._armed: set[str] = set()  # faults waiting for the next resize
        self._failing: set[str] = set()  # volumes whose GETs answer 500 (error_after_resize fired)

    # -- building the lab ---------------------------------------------------------------------------------

    def set_space(self, capacity: int, used: int) -> None:
        """Set the array's usable capacity and used physical space (bytes); ValueError if used > capacity."""
        if not 0 <= used <= capacity:
            raise ValueError(f"used {used} must be between 0 and capacity {capacity}")
        with self._lock:
            self._capacity, self._used = capacity, used

    def add_volume(
        self, name: str, size: int, hosts: tuple[str, ...] = (), *, written: int | None = None
    ) -> SanLun:
        """A new volume of ``size`` bytes connected to ``hosts``; its LUN is registered in the SAN.

        Raises ValueError for a taken name or a size Pure would refuse (not a multiple of 512, over 4 PiB)."""
        if size <= 0 or size % SECTOR or size > MAX_VOLUME_SIZE:
            raise ValueError(f"volume size {size} is not a multiple of {SECTOR} between 512 and 4 PiB")
        if written is not None and not 0 <= written <= size:
            raise ValueError(f"written {written} must be between 0 and the volume's size {size}")
        with self._lock:
            if name in self._volumes:
                raise ValueError(f"volume {name} exists on {self.name}")
            # Real serials share an array-specific prefix and count up; deterministic so lab NAAs are stable.
            prefix = hashlib.sha256(self.name.encode()).hexdigest()[:16].upper()
            serial = f"{prefix}{len(self._volumes) + 1:08X}"
            lun = self.san.add_lun(naa_of(serial), size, hosts)
            self._volumes[name] = PureVolume(
                id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"pure://{self.name}/{name}")),
                name=name,
                serial=serial,
                lun=lun,
                created=int(time.time() * 1000),
                written=size // 2 if written is None else written,
            )
            return lun

    def destroy_volume(self, name: str) -> None:
        """Destroy ``name`` (pending eradication, as ``purevol destroy``): hosts lose it; KeyError if absent."""
        with self._lock:
            volume = self._volumes[name]
            volume.destroyed = True
            with self.san.lock:
                volume.lun.hosts = ()

    def volume(self, name: str) -> PureVolume:
        """The volume called ``name``; KeyError if absent."""
        with self._lock:
            return self._volumes[name]

    def set_fault(self, fault: str, enabled: bool) -> None:
        """Arm (or clear) one of ``FAULTS``; clearing ``error_after_resize`` also ends its failing GETs."""
        if fault not in FAULTS:
            raise ValueError(f"unknown Pure fault {fault!r}; known: {', '.join(sorted(FAULTS))}")
        with self._lock:
            if enabled:
                self._armed.add(fault)
                return
            self._armed.discard(fault)
            if fault == ERROR_AFTER_RESIZE:
                self._failing.clear()

    # -- the REST API ---------------------------------------------------------------------------------------

    def answer(self, method: str, path: str, headers: Message, body: dict[str, Any] | None) -> Answer:
        """Answer one request (``JsonService`` protocol); every answer carries an ``x-request-id``."""
        status, payload, extra = self._route(method, path, headers, body)
        return status, payload, {**extra, "x-request-id": str(uuid.uuid4())}

    def _route(self, method: str, path: str, headers: Message, body: dict[str, Any] | None) -> Answer:
        parts = urlsplit(path)
        query = {key: values[-1] for key, values in parse_qs(parts.query, keep_blank_values=True).items()}
        segments = parts.path.strip("/").split("/")
        if segments == ["api", "api_version"] and method == "GET":
            return 200, {"version": list(self.api_versions)}, {}
        if len(segments) < 3 or segments[0] != "api" or segments[1] not in self.api_versions:
            return _error(404, "Not found.")
        if not segments[1].startswith("2."):
            return _error(404, "REST 1.x is not simulated.")
        resource = "/".join(segments[2:])
        if (method, resource) == ("POST", "login"):
            return self._login(headers)
        session = headers.get("x-auth-token") or ""
        with self._lock:
            live = session in self._sessions
        if not live:
            return _error(401, INVALID_SESSION)
        if (method, resource) == ("POST", "logout"):
            with self._lock:
                self._sessions.discard(session)
            return 200, None, {}
        if (method, resource) == ("GET", "volumes"):
            return self._get_volumes(query)
        if (method, resource) == ("PATCH", "volumes"):
            return self._patch_volumes(query, body or {})
        if (method, resource) == ("GET", "arrays/space"):
            return self._array_space()
        return _error(404, "Not found.")

    def _login(self, headers: Message) -> Answer:
        offered = headers.get("api-token") or ""
        if not hmac.compare_digest(offered.encode(), self._api_token.encode()):
            return _error(400, LOGIN_REFUSED)
        session = str(uuid.uuid4())
        with self._lock:
            self._sessions.add(session)
        return 200, {"items": [{"username": self.username}]}, {"x-auth-token": session}

    def _get_volumes(self, query: dict[str, str]) -> Answer:
        with self._lock:
            if "names" in query:
                names = [n for n in query["names"].split(",") if n]
                missing = [n for n in names if n not in self._volumes]
                if missing:
                    return 400, {"errors": [{"context": n, "message": NO_SUCH_VOLUME} for n in missing]}, {}
                chosen = [self._volumes[n] for n in names]
            elif "filter" in query:
                match = _FILTER.match(query["filter"])
                if not match:
                    return _error(400, "Invalid filter.", query["filter"])
                chosen = [v for v in self._volumes.values() if fnmatch.fnmatchcase(v.name, match.group(1))]
            else:
                chosen = list(self._volumes.values())
            if query.get("destroyed") in ("true", "false"):
                wanted = query["destroyed"] == "true"
                chosen = [v for v in chosen if v.destroyed == wanted]
            if query.get("limit", "").isdigit():
                chosen = chosen[: int(query["limit"])]
            failing = [v.name for v in chosen if v.name in self._failing]
            if failing:
                return _error(500, INTERNAL, failing[0])
            items = [self._view(v) for v in chosen]
        total = len(items) if query.get("total_item_count") == "true" else None
        return (
            200,
            {
                "continuation_token": None,
                "items": items,
                "more_items_remaining": False,
                "total_item_count": total,
            },
            {},
        )

    def _patch_volumes(self, query: dict[str, str], body: dict[str, Any]) -> Answer:
        names = [n for n in query.get("names", "").split(",") if n]
        if not names:
            return _error(400, "Missing names or ids.")
        size = body.get("provisioned")
        if size is None:
            return 200, {"items": []}, {}  # nothing asked that the sim models (qos, name, ...)
        if not isinstance(size, int) or isinstance(size, bool):
            return _error(400, "Invalid value for provisioned.", "provisioned")
        truncate = query.get("truncate") == "true"
        with self._lock:
            for name in names:
                refusal = self._resize_refusal(name, size, truncate)
                if refusal:
                    return refusal
            if RESIZE_ERROR in self._armed:
                self._armed.discard(RESIZE_ERROR)
                return _error(500, INTERNAL, names[0])
            for name in names:
                self._apply_resize(self._volumes[name], size)
            if ERROR_AFTER_RESIZE in self._armed:
                self._armed.discard(ERROR_AFTER_RESIZE)
                self._failing.update(names)
                return _error(500, INTERNAL, names[0])
            return 200, {"items": [self._view(self._volumes[n]) for n in names]}, {}

    def _resize_refusal(self, name: str, size: int, truncate: bool) -> Answer | None:
        """Why the array refuses to make ``name`` ``size`` bytes, or None. Caller holds ``_lock``."""
        volume = self._volumes.get(name)
        if volume is None:
            return _error(400, NO_SUCH_VOLUME, name)
        if volume.destroyed:
            return _error(400, DESTROYED, name)
        if size <= 0 or size % SECTOR:
            return _error(400, NOT_SECTOR_ALIGNED, name)
        if size > MAX_VOLUME_SIZE:
            return _error(400, TOO_LARGE, name)
        if size < volume.lun.size and not truncate:
            return _error(400, TRUNCATION, name)
        return None

    def _apply_resize(self, volume: PureVolume, size: int) -> None:
        with self.san.lock:
            changed = volume.lun.size != size
            volume.lun.size = size
        volume.written = min(volume.written, size)
        if changed and self.command_log is not None:
            self.command_log.write(self.name, "resize", lun=volume.name, size=size)

    def _array_space(self) -> Answer:
        with self._lock:
            provisioned = sum(v.lun.size for v in self._volumes.values() if not v.destroyed)
            written = sum(v.written for v in self._volumes.values() if not v.destroyed)
            capacity, used = self._capacity, self._used
        space = {
            "data_reduction": 3.0,
            "shared": 0,
            "snapshots": 0,
            "system": 0,
            "thin_provisioning": round(1 - written / provisioned, 4) if provisioned else 0.0,
            "total_physical": used,  # deprecated in 2.x for total_used, which holds the same
            "total_provisioned": provisioned,
            "total_reduction": round(provisioned / used, 2) if used else 0.0,
            "unique": used,
            "virtual": written,
            "total_used": used,
        }
        item = {
            "id": self.id,
            "name": self.name,
            "capacity": capacity,
            "parity": 1.0,
            "space": space,
            "time": int(time.time() * 1000),
        }
        return 200, {"continuation_token": None, "items": [item], "more_items_remaining": False}, {}

    def _view(self, volume: PureVolume) -> dict[str, Any]:
        """The volume as ``GET /volumes`` shows it. Caller holds ``_lock``."""
        with self.san.lock:
            size, hosts = volume.lun.size, volume.lun.hosts
        unique = volume.written // 3  # the sim's fixed 3:1 data reduction
        return {
            "id": volume.id,
            "name": volume.name,
            "connection_count": len(hosts),
            "created": volume.created,
            "destroyed": volume.destroyed,
            "provisioned": size,
            "serial": volume.serial,
            "subtype": "regular",
            "time_remaining": 86_400_000 if volume.destroyed else None,
            "space": {
                "data_reduction": 3.0,
                "shared": 0,
                "snapshots": 0,
                "system": None,
                "thin_provisioning": round(1 - volume.written / size, 4),
                "total_physical": unique,
                "total_provisioned": size,
                "total_reduction": round(size / unique, 2) if unique else 0.0,
                "unique": unique,
                "virtual": volume.written,
                "total_used": unique,
            },
        }


def lab_pure(san: San, api_token: str, hosts: tuple[str, ...], command_log: Any | None = None) -> PureSim:
    """The lab's array ``san-pure-01``: 10 TiB usable, 9 TiB used (1 TiB free physical space), and volume
    ``lnx-data-01`` of 100 GiB connected to ``hosts``. Growing it to 150 GiB fits; to 50 TiB does not."""
    sim = PureSim("san-pure-01", san, api_token, command_log, capacity=10 * TiB, used=9 * TiB)
    sim.add_volume("lnx-data-01", 100 * GiB, hosts, written=60 * GiB)
    return sim
