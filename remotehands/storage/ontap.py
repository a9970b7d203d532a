"""``OntapArray``: the ``ArrayDriver`` for NetApp ONTAP 9 arrays (inventory platform ``ontap``), over REST.

A LUN is named by its path (``/vol/VOL/LUN``), or ``SVM:/vol/VOL/LUN`` where two SVMs have that path, and found with ``GET /api/storage/luns?name=PATH``; its NAA name
is NetApp's ``naa.600a0980`` followed by the hex of its 12-character serial number. Room to grow is the
containing volume's available space (``/api/storage/volumes/{uuid}``) and the LUN's maximum resize size,
which the REST LUN object does not carry: it is read through the CLI passthrough, as ``lun show -fields
max-resize-size`` (``GET /api/private/cli/lun``). A resize is ``PATCH /api/storage/luns/{uuid}`` with
``{"space": {"size": N}}``; ONTAP answers it synchronously and refuses to shrink through REST.

Authentication is HTTP Basic with the inventory's credentials, resolved at first use; there is no session
to log out of. Transport and HTTP errors are translated by ``ArrayHttp`` with ONTAP's own message
(``{"error": {"message", "code"}}``).
"""

from __future__ import annotations

import difflib
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from remotehands import secrets
from remotehands.errors import DeviceRefused, InvalidRequest
from remotehands.inventory.models import StorageArray
from remotehands.storage.base import Lun, Room
from remotehands.storage.http import ArrayHttp

NAA_PREFIX = "naa.600a0980"  # NetApp's IEEE company id in the SCSI name of an ONTAP LUN
LUN_FIELDS = "uuid,name,svm.name,serial_number,space.size,location.volume.name,location.volume.uuid"
CLOSE_NAMES = 5


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Named(_Answer):
    name: str
    uuid: str = ""


class _LunSpace(_Answer):
    size: int


class _LunLocation(_Answer):
    volume: _Named


class _LunRecord(_Answer):
    uuid: str
    name: str
    svm: _Named
    serial_number: str
    space: _LunSpace
    location: _LunLocation


class _LunList(_Answer):
    records: list[_LunRecord]


class _NameList(_Answer):
    records: list[_Named]


class _VolumeSpace(_Answer):
    available: int


class _Volume(_Answer):
    name: str
    aggregates: list[_Named]
    space: _VolumeSpace


class _CliLunRow(_Answer):
    path: str
    max_resize_size: int | None = None


class _CliLunShow(_Answer):
    records: list[_CliLunRow]


_Model = TypeVar("_Model", bound=_Answer)


def ontap_message(body: Any) -> str | None:
    """ONTAP's error text in a JSON body (``{"error": {"message", "code"}}``) with its code; None if none."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or not error.get("message"):
        return None
    code = error.get("code")
    return f"{error['message']} (ONTAP error {code})" if code else str(error["message"])


def naa_of(serial: str) -> str:
    """The NAA name hosts see for an ONTAP LUN with this serial number; ``ValueError`` unless it is 12 ASCII
    characters."""
    if len(serial) != 12 or not serial.isascii():
        raise ValueError(f"an ONTAP LUN serial number is 12 ASCII characters, not {serial!r}")
    return NAA_PREFIX + serial.encode("ascii").hex()


class OntapArray:
    """An ONTAP array of the inventory. The constructor does no I/O; the first call resolves the credentials
    (``SecretError`` when the reference cannot be) and opens the HTTPS session."""

    def __init__(self, array: StorageArray) -> None:
        self.array = array
        self.name = array.name
        self._http: ArrayHttp | None = None

    def lun(self, name: str) -> Lun:
        """The LUN at path ``name``.

        Raises ``InvalidRequest`` (field ``lun``, naming close paths) when the array has none,
        ``DeviceRefused``/``DeviceUnreachable`` when the array refuses or does not answer."""
        return self._lun_of(self._find(name))

    def room(self, lun: Lun) -> Room:
        """The containing volume's available space, and the LUN's maximum resize size.

        Raises ``InvalidRequest`` (field ``lun``) when the LUN is gone, ``DeviceRefused`` and
        ``DeviceUnreachable`` as ``lun``."""
        response = self._http_session().request(
            "GET", f"/api/storage/luns/{lun.id}", ok404=True, params={"fields": LUN_FIELDS}
        )
        if response.status_code == 404:
            raise self._no_such_lun(lun.name)
        record = self._parse(_LunRecord, response)
        volume_uuid = record.location.volume.uuid
        volume = self._parse(
            _Volume,
            self._http_session().request(
                "GET", f"/api/storage/volumes/{volume_uuid}", params={"fields": "name,aggregates,space"}
            ),
        )
        aggregates = ", ".join(a.name for a in volume.aggregates) or "unknown"
        return Room(
            free=volume.space.available,
            max_size=self._max_resize_size(record),
            container=f"volume {volume.name} (aggregate {aggregates})",
        )

    def resize(self, lun: Lun, size: int) -> None:
        """Make ``lun`` ``size`` bytes (larger only; ONTAP refuses to shrink through REST).

        Raises ``DeviceRefused`` with ONTAP's message when the array refuses (no space in the volume, beyond
        the maximum resize size), ``DeviceUnreachable`` when it fails or does not answer (the outcome is then
        unknown: read the LUN back)."""
        self._http_session().request("PATCH", f"/api/storage/luns/{lun.id}", json={"space": {"size": size}})

    def close(self) -> None:
        """Close the HTTPS session (Basic authentication has nothing to log out of)."""
        if self._http is not None:
            self._http.close()
            self._http = None

    def _http_session(self) -> ArrayHttp:
        if self._http is None:
            password = secrets.resolve(
                self.array.credentials.password, field=f"{self.array.name}.credentials.password"
            )
            http = ArrayHttp(self.array, ontap_message)
            http.client.auth = httpx.BasicAuth(self.array.credentials.username, password)
            self._http = http
        return self._http

    def _find(self, name: str) -> _LunRecord:
        # Volume names are unique per SVM only: two tenants' SVMs may both have /vol/vol_esx/lun0, so a LUN
        # may be named SVM:/vol/VOL/LUN, and a bare path that matches in two SVMs is refused.
        svm, _, path = name.rpartition(":") if ":" in name else ("", "", name)
        params = {"name": path, "fields": LUN_FIELDS} | ({"svm.name": svm} if svm else {})
        found = self._parse(_LunList, self._http_session().request("GET", "/api/storage/luns", params=params))
        # ONTAP's query values are patterns (* and |); only an exact match is the LUN asked for.
        exact = [r for r in found.records if r.name == path and (not svm or r.svm.name == svm)]
        if not exact:
            raise self._no_such_lun(path)
        if len(exact) > 1:
            svms = sorted(r.svm.name for r in exact)
            raise InvalidRequest(
                f"lun: {path} is in {len(exact)} SVMs of {self.name} ({', '.join(svms)})",
                fix=f"name it with its SVM, e.g. {svms[0]}:{path}, in the request and in luns: of the inventory",
            )
        return exact[0]

    def _no_such_lun(self, path: str) -> InvalidRequest:
        listing = self._parse(
            _NameList, self._http_session().request("GET", "/api/storage/luns", params={"fields": "name"})
        )
        close = difflib.get_close_matches(path, [r.name for r in listing.records], n=CLOSE_NAMES, cutoff=0.5)
        hint = f"; close: {', '.join(close)}" if close else ""
        return InvalidRequest(
            f"lun: array {self.name} has no LUN {path!r}{hint}",
            fix="name the LUN by its ONTAP path /vol/VOLUME/LUN, as `lun show` on the array lists it",
        )

    def _max_resize_size(self, record: _LunRecord) -> int | None:
        params = {"vserver": record.svm.name, "path": record.name, "fields": "max-resize-size"}
        response = self._http_session().request("GET", "/api/private/cli/lun", ok404=True, params=params)
        if response.status_code == 404:  # no CLI passthrough (before ONTAP 9.6): the PATCH still enforces it
            return None
        exact = [row for row in self._parse(_CliLunShow, response).records if row.path == record.name]
        return exact[0].max_resize_size if exact else None

    def _lun_of(self, record: _LunRecord) -> Lun:
        try:
            naa = naa_of(record.serial_number)
        except ValueError as exc:
            raise DeviceRefused(
                f"array {self.name}: LUN {record.name}: {exc}",
                fix="check the array runs ONTAP 9; the LUN's host-side name cannot be derived",
            ) from None
        return Lun(id=record.uuid, name=record.name, size=record.space.size, naa=naa)

    def _parse(self, model: type[_Model], response: httpx.Response) -> _Model:
        try:
            return model.model_validate(response.json())
        except ValidationError as exc:
            # Where the answer differs, never the values (pydantic's text would quote them).
            problem = "unexpected " + ", ".join(".".join(map(str, e["loc"])) or "body" for e in exc.errors())
        except ValueError:
            problem = "not JSON"
        raise DeviceRefused(
            f"array {self.name}: {response.request.method} {response.request.url.path} answered {problem}",
            fix="check the array runs ONTAP 9.6 or later and the user may read storage objects",
        ) from None
