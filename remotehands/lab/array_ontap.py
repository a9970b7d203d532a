"""The lab's NetApp ONTAP array: the part of the ONTAP 9 REST API that growing a LUN needs, over HTTPS.

``OntapSim`` answers (as a ``redfish_sim_http.JsonService``) with HTTP Basic authentication:

    GET   /api/cluster                          version {generation, major, minor, full}
    GET   /api/storage/aggregates/{uuid}        space.block_storage {size, available, used}
    GET   /api/storage/volumes/{uuid}           space {size, available, used}, aggregates, svm
    GET   /api/storage/luns?name=...&fields=... {records, num_records}
    GET   /api/storage/luns/{uuid}
    PATCH /api/storage/luns/{uuid}              {"space": {"size": N}} (or {"space.size": N}): grow only
    GET   /api/private/cli/lun?path=...&fields=max-resize-size

The maximum resize size is not a field of the REST LUN object (``space`` has size, used, guarantee, ...); as
on a real array it is read through the CLI passthrough (``lun show -fields max-resize-size``), whose rows
use the CLI's field names with ``-`` turned into ``_`` and carry the command's keys (``vserver``, ``path``).
Collections return uuid and name unless ``fields`` asks for more; query parameters that are fields filter
(``*`` wildcards and ``|`` alternatives); any other parameter is refused as ONTAP does. Errors have ONTAP's
shape ``{"error": {"message", "code", "target"}}``.

Growing a LUN takes the difference from its volume's available space and updates the ``SanLun`` the hosts
see (its NAA name is NetApp's ``600a0980`` prefix and the hex of the 12-character serial number). Every
resize that changes state is a line of the command log: ``{"bmc": <array>, "command": "resize", "lun",
"size"}``. Faults (``set_fault``): ``resize_error`` (the next resize answers 500 and changes nothing; fires
once) and ``error_after_resize`` (the next resize is applied and answered 500; from then on every request
about that LUN answers 500 until the fault is cleared).
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import hmac
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from email.message import Message
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from remotehands.lab.redfish_sim_http import Answer, TlsJsonServer
from remotehands.lab.san import San, SanLun

GiB = 1024**3
TiB = 1024**4
NAA_PREFIX = "naa.600a0980"  # NetApp's IEEE company id, as hosts see ONTAP LUNs
MAX_RESIZE_SIZE = 16 * TiB  # what an ONTAP 9.5+ LUN reports; before 9.5 it was ~10x the created size
VERSION = {"full": "NetApp Release 9.13.1P6", "generation": 9, "major": 13, "minor": 1}
FAULTS = frozenset({"resize_error", "error_after_resize"})
_CONTROL = {"fields", "max_records", "return_records", "return_timeout", "order_by"}
LUN_FIELDS = frozenset({"uuid", "name", "svm", "location", "os_type", "serial_number", "enabled", "status"})
LUN_FIELDS |= {"space"}
CLI_LUN_COLUMNS = frozenset({"vserver", "path", "uuid", "volume", "lun", "size", "max_resize_size", "serial"})
_SERIAL_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-]?_"
# ONTAP's generic codes (3 unknown API, 4 no such entry, 6 not authorized, 262179 unexpected argument) and
# 5374875 (LUN not found, from the LUN API's error table). The resize refusals' codes are in the LUN range
# but not confirmed against a live array; the shrink refusal's text is the REST API's.
NO_SPACE, TOO_LARGE, NO_SHRINK, RESIZE_FAILED = "5374860", "5374861", "5374863", "5374864"
SHRINK_REFUSED = (
    "Reducing the size of a LUN might cause permanent data loss or corruption and is not supported by the "
    'LUN REST API. The ONTAP command "lun resize" can be used to reduce the LUN size.'
)
TOO_LARGE_REFUSED = (
    'Cannot resize LUN "{path}" to {size} bytes: the size exceeds the maximum resize size of this LUN '
    "({max} bytes)."
)
NO_SPACE_REFUSED = (
    'Cannot resize LUN "{path}" to {size} bytes: not enough space in volume "{volume}" (Vserver "{svm}"): '
    "{delta} bytes are needed and {available} bytes are available."
)
RESIZE_TIMED_OUT = (
    'Failed to resize LUN "{path}": the operation timed out waiting for the node hosting volume "{volume}" '
    "to respond. Retry the operation."
)
LUN_BUSY = (
    'Internal error. Failed to get information about LUN "{path}": the LUN\'s metadata is being updated by a '
    "previous operation. Wait a few minutes, then try the operation again."
)


@dataclass
class Container:
    """An aggregate, or a volume (on ``aggregate``): where a LUN's space comes from."""

    name: str
    uuid: str
    size: int
    available: int
    aggregate: Container | None = None


@dataclass
class SimLun:
    path: str  # /vol/VOL/LUN, the LUN's name in the REST API
    uuid: str
    volume: Container
    serial: str
    max_resize_size: int
    san: SanLun = field(repr=False)
    size: int = 0


def naa_of(serial: str) -> str:
    """The NAA name hosts see for an ONTAP LUN with this 12-character ASCII serial number."""
    return NAA_PREFIX + serial.encode("ascii").hex()


def _error(status: int, message: str, code: str, target: str | None = None) -> Answer:
    body: dict[str, Any] = {"message": message, "code": code}
    if target:
        body["target"] = target
    return status, {"error": body}, {}


_MISSING = object()


def _dotted(record: dict[str, Any], key: str) -> Any:
    value: Any = record
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _matches(actual: Any, wanted: str) -> bool:
    text = str(actual).lower() if isinstance(actual, bool) else str(actual)
    return any(fnmatch.fnmatchcase(text, alternative) for alternative in wanted.split("|"))


def _select(record: dict[str, Any], fields: str | None, always: tuple[str, ...]) -> dict[str, Any]:
    """``record`` cut down to ``always`` plus the dotted ``fields`` asked for (``*``/``**``: everything)."""
    wanted = [f.strip() for f in (fields or "").split(",") if f.strip()]
    if "*" in wanted or "**" in wanted:
        return record
    out: dict[str, Any] = {}
    for key in (*always, *wanted):
        value = _dotted(record, key)
        if value is _MISSING:
            continue
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


class OntapSim:
    """One simulated ONTAP cluster (one SVM) serving LUNs into ``san``; thread-safe."""

    FAULTS = FAULTS

    def __init__(
        self, name: str, san: San, username: str, password: str, command_log: Any | None = None
    ) -> None:
        self.name = name
        self.san = san
        self.command_log = command_log
        self.svm = {"name": f"svm_{name.replace('-', '_')}", "uuid": self._uuid("svm")}
        self._credentials = f"{username}:{password}".encode()
        self._lock = threading.Lock()  # taken before san.lock, never inside it
        self._aggregates: dict[str, Container] = {}
        self._volumes: dict[str, Container] = {}
        self._luns: dict[str, SimLun] = {}  # uuid -> LUN
        self._faults: set[str] = set()
        self._broken: set[str] = set()  # LUN uuids answering 500 (error_after_resize)

    def _uuid(self, what: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ontap-sim/{self.name}/{what}"))

    def add_aggregate(self, name: str, size: int, available: int) -> Container:
        """A new aggregate; ValueError when the name is taken."""
        return self._add(self._aggregates, Container(name, self._uuid(f"aggr/{name}"), size, available))

    def add_volume(self, name: str, aggregate: Container, size: int, available: int) -> Container:
        """A new volume on ``aggregate`` with ``available`` bytes left; ValueError when the name is taken."""
        return self._add(
            self._volumes, Container(name, self._uuid(f"vol/{name}"), size, available, aggregate)
        )

    def _add(self, into: dict[str, Container], new: Container) -> Container:
        with self._lock:
            if any(known.name == new.name for known in into.values()):
                raise ValueError(f"{new.name} exists")
            into[new.uuid] = new
            return new

    def add_lun(
        self,
        volume: Container,
        name: str,
        size: int,
        hosts: tuple[str, ...] = (),
        *,
        serial: str | None = None,
        max_resize_size: int = MAX_RESIZE_SIZE,
    ) -> SanLun:
        """LUN ``/vol/VOLUME/name`` of ``size`` bytes mapped to ``hosts``, registered in the SAN by its NAA.

        ``serial`` (12 ASCII characters) defaults to one derived from the array and path. The LUN's space is
        taken to be already counted in the volume's. ValueError for a taken path or a malformed serial."""
        path = f"/vol/{volume.name}/{name}"
        if serial is None:
            digest = hashlib.sha256(f"{self.name}{path}".encode()).digest()
            serial = "".join(_SERIAL_CHARS[b % len(_SERIAL_CHARS)] for b in digest[:12])
        if len(serial) != 12 or not serial.isascii() or not serial.isprintable():
            raise ValueError(f"an ONTAP serial number is 12 printable ASCII characters, not {serial!r}")
        with self._lock:
            if any(lun.path == path for lun in self._luns.values()):
                raise ValueError(f"LUN {path} exists")
            san_lun = self.san.add_lun(naa_of(serial), size, hosts)
            lun = SimLun(path, self._uuid(f"lun{path}"), volume, serial, max_resize_size, san_lun, size)
            self._luns[lun.uuid] = lun
            return san_lun

    def lun_size(self, path: str) -> int:
        """The size in bytes of the LUN at ``path`` (for tests); KeyError when there is none."""
        with self._lock:
            return next(lun.size for lun in self._luns.values() if lun.path == path)

    def volume_available(self, name: str) -> int:
        """Bytes still available in volume ``name`` (for tests); KeyError when there is none."""
        with self._lock:
            return next(v.available for v in self._volumes.values() if v.name == name)

    def set_fault(self, fault: str, enabled: bool) -> None:
        """Turn a fault of ``FAULTS`` on or off; clearing ``error_after_resize`` heals its LUN. ValueError
        for an unknown fault."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; the ONTAP simulator knows {sorted(FAULTS)}")
        with self._lock:
            if enabled:
                self._faults.add(fault)
            else:
                self._faults.discard(fault)
                if fault == "error_after_resize":
                    self._broken.clear()

    def answer(self, method: str, path: str, headers: Message, body: dict[str, Any] | None) -> Answer:
        """Answer one request (the ``JsonService`` protocol)."""
        if not self._authorized(headers.get("Authorization")):
            status, payload, _ = _error(401, "not authorized for that command", "6")
            return status, payload, {"WWW-Authenticate": 'Basic realm="ONTAP"'}
        url = urlsplit(path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        parts = [p for p in url.path.split("/") if p]
        with self._lock:
            return self._route(method, parts, query, body or {})

    def _authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            given = base64.b64decode(header[6:], validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(given, self._credentials)

    def _route(self, method: str, parts: list[str], query: dict[str, str], body: dict[str, Any]) -> Answer:
        fields = query.get("fields")
        match parts:
            case ["api", "cluster"] if method == "GET":
                cluster = {"name": self.name, "uuid": self._uuid("cluster"), "version": VERSION}
                return 200, _select(cluster, fields or "*", ()), {}
            case ["api", "storage", ("aggregates" | "volumes") as kind, key] if method == "GET":
                item = (self._aggregates if kind == "aggregates" else self._volumes).get(key)
                if item is None:
                    return _error(404, "entry doesn't exist", "4", "uuid")
                return 200, _select(self._container_json(item), fields or "*", ("uuid", "name")), {}
            case ["api", "storage", "luns"] if method == "GET":
                return self._listing([self._lun_json(lun) for lun in self._luns.values()], query, LUN_FIELDS)
            case ["api", "storage", "luns", key] if method in ("GET", "PATCH"):
                lun = self._luns.get(key)
                if lun is None:
                    return _error(404, "The specified LUN was not found.", "5374875", "uuid")
                if lun.uuid in self._broken:
                    return self._lun_failed(lun)
                if method == "PATCH":
                    return self._resize(lun, body)
                return 200, _select(self._lun_json(lun), fields or "*", ("uuid", "name")), {}
            case ["api", "private", "cli", "lun"] if method == "GET":
                return self._listing(
                    [self._cli_row(lun) for lun in self._luns.values()], query, CLI_LUN_COLUMNS
                )
        return _error(404, "API not found", "3")

    def _listing(self, rows: list[dict[str, Any]], query: dict[str, str], known: frozenset[str]) -> Answer:
        """``rows`` filtered by the query's field parameters, cut to ``fields``; 500 for a broken LUN."""
        cli = "vserver" in known  # the CLI's field names may be written with "-" (max-resize-size)
        fields = query.get("fields", "").replace("-", "_") if cli else query.get("fields", "")
        asked = [f.strip() for f in fields.split(",") if f.strip() not in ("", "*", "**")]
        filters = [(k.replace("-", "_") if cli else k, v) for k, v in query.items() if k not in _CONTROL]
        for key in asked + [k for k, _ in filters]:
            if key.split(".")[0] not in known:
                return _error(400, f'Unexpected argument "{key}".', "262179", key)
        for key, wanted in filters:
            rows = [row for row in rows if _matches(_dotted(row, key), wanted)]
        for row in rows:
            if row["uuid"] in self._broken:
                return self._lun_failed(self._luns[row["uuid"]])
        always = ("vserver", "path") if cli else ("uuid", "name")
        records = [_select(row, fields, always) for row in rows]
        return 200, {"records": records, "num_records": len(records)}, {}

    def _cli_row(self, lun: SimLun) -> dict[str, Any]:
        return {
            "vserver": self.svm["name"],
            "path": lun.path,
            "uuid": lun.uuid,
            "volume": lun.volume.name,
            "lun": lun.path.rsplit("/", 1)[1],
            "size": lun.size,
            "max_resize_size": lun.max_resize_size,
            "serial": lun.serial,
            "state": "online",
        }

    def _resize(self, lun: SimLun, body: dict[str, Any]) -> Answer:
        raw = body.get("space.size", (body.get("space") or {}).get("size"))
        if set(body) - {"space", "space.size"} or isinstance(raw, bool) or not str(raw).isdigit():
            return _error(400, "The simulator only changes space.size of a LUN.", "262179", "space.size")
        size = int(str(raw))
        if size == lun.size:
            return 200, {}, {}
        delta, volume = size - lun.size, lun.volume
        details = {"path": lun.path, "size": size, "max": lun.max_resize_size, "delta": delta}
        details |= {"volume": volume.name, "svm": self.svm["name"], "available": volume.available}
        # When both limits are exceeded, the LUN's own (its maximum resize size) is the one reported.
        for refused, code, text in (
            (delta < 0, NO_SHRINK, SHRINK_REFUSED),
            (size > lun.max_resize_size, TOO_LARGE, TOO_LARGE_REFUSED),
            (delta > volume.available, NO_SPACE, NO_SPACE_REFUSED),
        ):
            if refused:
                return _error(400, text.format(**details), code, "space.size")
        if "resize_error" in self._faults:
            self._faults.discard("resize_error")
            return _error(500, RESIZE_TIMED_OUT.format(**details), RESIZE_FAILED)
        lun.size = size
        volume.available -= delta
        with self.san.lock:
            lun.san.size = size
        if self.command_log is not None:
            self.command_log.write(self.name, "resize", lun=lun.path, size=size)
        if "error_after_resize" in self._faults:
            self._broken.add(lun.uuid)
            return self._lun_failed(lun)
        return 200, {}, {}

    def _lun_failed(self, lun: SimLun) -> Answer:
        return _error(500, LUN_BUSY.format(path=lun.path), RESIZE_FAILED)

    def _container_json(self, item: Container) -> dict[str, Any]:
        space = {"size": item.size, "available": item.available, "used": item.size - item.available}
        if item.aggregate is None:  # an aggregate
            return {"uuid": item.uuid, "name": item.name, "space": {"block_storage": space}}
        volume = {"uuid": item.uuid, "name": item.name, "style": "flexvol", "svm": dict(self.svm)}
        return volume | {
            "aggregates": [{"name": item.aggregate.name, "uuid": item.aggregate.uuid}],
            "space": space,
        }

    def _lun_json(self, lun: SimLun) -> dict[str, Any]:
        return {
            "uuid": lun.uuid,
            "name": lun.path,
            "svm": dict(self.svm),
            "location": {
                "logical_unit": lun.path.rsplit("/", 1)[1],
                "volume": {"name": lun.volume.name, "uuid": lun.volume.uuid},
            },
            "os_type": "vmware",
            "serial_number": lun.serial,
            "enabled": True,
            "status": {"state": "online", "mapped": bool(lun.san.hosts)},
            "space": {"size": lun.size, "used": 0, "guarantee": {"requested": False, "reserved": False}},
        }


def lab_ontap(
    san: San, username: str, password: str, hosts: tuple[str, ...], command_log: Any | None = None
) -> OntapSim:
    """The lab's array ``san-ontap-01``: aggregate aggr1 (2 TiB available), volume vol_esx01 (600 GiB, 400 GiB
    available) holding ``/vol/vol_esx01/lun0`` (100 GiB, mapped to ``hosts``, max resize size 16 TiB)."""
    sim = OntapSim("san-ontap-01", san, username, password, command_log)
    aggr = sim.add_aggregate("aggr1", 4 * TiB, 2 * TiB)
    volume = sim.add_volume("vol_esx01", aggr, 600 * GiB, 400 * GiB)
    sim.add_lun(volume, "lun0", 100 * GiB, tuple(hosts))
    return sim


def serve(sim: OntapSim, tls: ssl.SSLContext) -> TlsJsonServer:
    """Serve ``sim`` over HTTPS on 127.0.0.1 (a free port: ``server.server_address[1]``) in a daemon thread.

    Stop with ``stop_serving(server)``. Raises ``OSError`` when no port can be bound."""
    server = TlsJsonServer(("127.0.0.1", 0), sim, tls)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.2}, name=f"ontap-{sim.name}", daemon=True
    ).start()
    return server


def stop_serving(server: TlsJsonServer) -> None:
    """Stop answering, drop open connections and release the port."""
    server.shutdown()
    server.close_connections()
    server.server_close()
