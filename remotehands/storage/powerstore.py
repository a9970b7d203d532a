"""``PowerStoreArray``: grows a Dell PowerStore volume over the PowerStore REST API (``/api/rest``).

On first use it logs in: ``GET /api/rest/login_session`` with HTTP Basic answers the CSRF token in the
``DELL-EMC-TOKEN`` header and the session in the ``auth_cookie`` cookie. Both are held by this object only
(never logged, never put in a message; the client's cookie jar is emptied) and sent with every later
request, as the API wants the token on every request but a GET. ``close`` posts ``/api/rest/logout``.

A volume is found with ``GET /api/rest/volume?name=eq.NAME&select=...`` (the API answers only ``id``
without ``select``); the naa hosts see is its ``wwn`` lowercased. Its room is the physical free space of
its appliance, from the newest ``space_metrics_by_appliance`` sample of ``POST /api/rest/metrics/generate``
(what Dell's Cinder driver and gopowerstore read), up to PowerStore's 256 TB volume limit. A resize is
``PATCH /api/rest/volume/{id}`` with ``{"size": N}`` (204). Errors follow ``remotehands.storage.base``; the
array's message is ``messages[].message_l10n`` of its error body.
"""

from __future__ import annotations

import difflib
import logging
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from remotehands import redaction, secrets
from remotehands.errors import DeviceRefused, InvalidRequest, RemoteHandsError
from remotehands.inventory.models import StorageArray
from remotehands.storage.base import Lun, Room
from remotehands.storage.http import ArrayHttp

log = logging.getLogger(__name__)

API = "/api/rest"
TOKEN_HEADER = "DELL-EMC-TOKEN"  # noqa: S105 (a header name)
COOKIE = "auth_cookie"
MAX_VOLUME_SIZE = 256 * 1024**4  # "Maximum volume size is 256TB" (PowerStore API reference)
VOLUME_FIELDS = "id,name,size,wwn,appliance_id"
NAA_HEX = frozenset("0123456789abcdef")


class _Volume(BaseModel):
    """The attributes of a ``volume`` the driver selects."""

    model_config = ConfigDict(extra="ignore")

    id: str
    name: str
    size: int
    wwn: str
    appliance_id: str


class _SpaceSample(BaseModel):
    """One ``space_metrics_by_appliance`` sample; bytes."""

    model_config = ConfigDict(extra="ignore")

    appliance_id: str
    physical_total: int
    physical_used: int


T = TypeVar("T")
_VOLUME = TypeAdapter(_Volume)
_VOLUMES = TypeAdapter(list[_Volume])
_SAMPLES = TypeAdapter(list[_SpaceSample])


def message_of(body: Any) -> str | None:
    """PowerStore's error text: every ``messages[].message_l10n``, each with its code; None when absent."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return None
    said = [
        f"{m['message_l10n']} ({m['code']})" if m.get("code") else str(m["message_l10n"])
        for m in body["messages"]
        if isinstance(m, dict) and m.get("message_l10n")
    ]
    return "; ".join(said) or None


class PowerStoreArray:
    """The ``ArrayDriver`` of one inventory PowerStore cluster. No I/O until first used; not thread-safe."""

    def __init__(self, array: StorageArray) -> None:
        self.array = array
        self.name = array.name
        self._http: ArrayHttp | None = None
        self._token: str | None = None
        self._cookie: str | None = None

    def lun(self, name: str) -> Lun:
        """The volume called ``name`` as a ``Lun`` (naa = its wwn, lowercase).

        Raises ``InvalidRequest`` (field ``lun``, naming close volume names) when the array has none,
        ``DeviceRefused``/``DeviceUnreachable`` as ``remotehands.storage.base`` says."""
        # the API's filters are case-insensitive: only an exact name is this volume
        found = [v for v in self._volumes(name=f"eq.{name}", select=VOLUME_FIELDS) if v.name == name]
        if not found:
            listed = self._request("GET", f"{API}/volume", params={"select": "id,name"})
            names = [str(row.get("name")) for row in _json(listed) or [] if isinstance(row, dict)]
            close = difflib.get_close_matches(name, names, n=3)
            raise InvalidRequest(
                f"lun: array {self.name} has no volume called {name!r}",
                fix=("did you mean " + ", ".join(close) + "?")
                if close
                else f"check the volume's name on {self.name} and the array's luns in the inventory",
            )
        volume = found[0]
        return Lun(id=volume.id, name=volume.name, size=volume.size, naa=self._naa(volume))

    def room(self, lun: Lun) -> Room:
        """Physical free space of the appliance holding ``lun`` and PowerStore's 256 TB size limit.

        Raises ``DeviceRefused`` when the array answers no space sample, else as ``lun`` does."""
        response = self._request("GET", f"{API}/volume/{lun.id}", params={"select": VOLUME_FIELDS})
        volume = self._parse(_VOLUME, response, f"volume {lun.name}")
        body = {
            "entity": "space_metrics_by_appliance",
            "entity_id": volume.appliance_id,
            "interval": "Five_Mins",
        }
        response = self._request("POST", f"{API}/metrics/generate", json=body)
        samples = self._parse(_SAMPLES, response, f"space metrics of appliance {volume.appliance_id}")
        if not samples:
            raise DeviceRefused(
                f"array {self.name}: no space metrics for appliance {volume.appliance_id}",
                fix="check the appliance in PowerStore Manager; metrics appear within minutes of start-up",
            )
        newest = samples[-1]  # the API answers samples oldest first
        return Room(
            free=max(0, newest.physical_total - newest.physical_used),
            max_size=MAX_VOLUME_SIZE,
            container=f"appliance {volume.appliance_id} of {self.name}",
        )

    def resize(self, lun: Lun, size: int) -> None:
        """Make ``lun`` ``size`` bytes. The array refuses (``DeviceRefused``, its message) a size that does
        not grow the volume, exceeds its limits or its appliance's space; ``DeviceUnreachable`` when the
        outcome is unknown (no answer, 5xx): read the volume back before trying again."""
        self._request("PATCH", f"{API}/volume/{lun.id}", json={"size": size})
        log.info("array %s: volume %s resized to %d bytes", self.name, lun.name, size)

    def close(self) -> None:
        """Log out (errors ignored) and close the connection; the driver logs in again if used after."""
        if self._http is None:
            return
        if self._cookie is not None:
            try:
                self._http.request("POST", f"{API}/logout", headers=self._session_headers())
            except RemoteHandsError as exc:
                log.debug("array %s: logout failed (ignored): %s", self.name, exc)
        self._token = self._cookie = None
        self._http.close()
        self._http = None

    # -- the session -----------------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        http = self._login()
        return http.request(method, path, headers=self._session_headers(), **kwargs)

    def _login(self) -> ArrayHttp:
        """The connection, logged in; raises ``DeviceRefused`` for refused credentials or an odd answer."""
        if self._http is None:
            self._http = ArrayHttp(self.array, message_of)
        if self._cookie is not None:
            return self._http
        credentials = self.array.credentials
        password = secrets.resolve(credentials.password, field=f"{self.name}.credentials.password")
        response = self._http.request("GET", f"{API}/login_session", auth=(credentials.username, password))
        token, cookie = response.headers.get(TOKEN_HEADER), response.cookies.get(COOKIE)
        # the cookie is held here and sent explicitly: nothing else keeps session state
        self._http.client.cookies.clear()
        if not token or not cookie:
            missing = " and ".join(n for n, v in ((TOKEN_HEADER, token), (COOKIE, cookie)) if not v)
            raise DeviceRefused(
                f"array {self.name}: the login answered no {missing}",
                fix=f"check that {self.array.mgmt_address}:{self.array.port} is a PowerStore's management address",
            )
        # masked wherever text leaves the process from now on, as resolved passwords are
        redaction.register(token)
        redaction.register(cookie)
        self._token, self._cookie = token, cookie
        log.debug("array %s: logged in as %s", self.name, credentials.username)
        return self._http

    def _session_headers(self) -> dict[str, str]:
        return {TOKEN_HEADER: self._token or "", "Cookie": f"{COOKIE}={self._cookie}"}

    def _volumes(self, **params: str) -> list[_Volume]:
        response = self._request("GET", f"{API}/volume", params=params)
        return self._parse(_VOLUMES, response, "the volume list")

    def _parse(self, adapter: TypeAdapter[T], response: httpx.Response, what: str) -> T:
        """The body of ``response`` read as ``adapter``'s type; ``DeviceRefused`` when it is not that."""
        try:
            return adapter.validate_python(_json(response))
        except ValidationError as exc:
            raise DeviceRefused(
                f"array {self.name}: cannot read {what}: {exc.error_count()} field(s) missing or malformed",
                fix="compare the array's answer with the PowerStore REST API reference for its PowerStoreOS",
            ) from None

    def _naa(self, volume: _Volume) -> str:
        naa = volume.wwn.lower()
        if not (naa.startswith("naa.") and len(naa) == 36 and set(naa[4:]) <= NAA_HEX):
            raise DeviceRefused(
                f"array {self.name}: volume {volume.name} has wwn {volume.wwn!r}, not an NAA name",
                fix="a PowerStore volume's wwn is naa. and 32 hex digits; check the array's answer",
            )
        return naa


def _json(response: httpx.Response) -> Any:
    """The JSON body of ``response``; None when it has none or it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None
