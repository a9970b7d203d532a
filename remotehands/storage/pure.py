"""Pure Storage FlashArray driver (REST 2.x) for growing volumes.

On first use the driver reads ``GET /api/api_version``, picks the highest 2.x version it speaks, and trades
the API token (the inventory's ``credentials.password`` reference) for a session token with ``POST
/api/2.N/login``; the session token travels as ``x-auth-token``, lives in memory only and is registered with
the redactor like the API token. ``close`` logs out.

A volume is looked up with ``filter=name='...'``, which answers an empty list for a volume the array lacks
(``names=`` would answer 400, indistinguishable here from other refusals); a destroyed volume (pending
eradication) counts as absent. Its NAA is ``naa.624a9370`` + the serial. Room on a Pure array is physical:
volumes are thin, so ``free`` is the array's capacity minus its used space (``GET /arrays/space``), and a
caller refuses growth larger than that; the largest volume Pure allows is 4 PiB. ``resize`` never sends
``truncate=true``: an accidental shrink is refused by the array ("Implicit truncation not permitted.").
"""

from __future__ import annotations

import difflib
import logging
import re
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from remotehands import redaction, secrets
from remotehands.errors import DeviceRefused, InvalidRequest, RemoteHandsError, VerificationFailed
from remotehands.inventory.models import StorageArray
from remotehands.storage.base import Lun, Room
from remotehands.storage.http import ArrayHttp

log = logging.getLogger(__name__)

MAX_VOLUME_SIZE = 4 * 1024**5  # 4 PiB, the maximum of Volume.provisioned in the 2.x API
NAA_OUI = "624a9370"  # NAA type 6 + Pure's IEEE OUI
OLDEST_VERSION = (2, 2)  # GET /arrays/space first appears in 2.2
NEWEST_VERSION = (2, 26)  # the newest 2.x whose models this driver was checked against
# Pure names: letters, digits, '-' and '_'; pods and volume groups add '::' and '/'. Anything else (a quote,
# a '*' wildcard) could not be a volume and would change the meaning of the filter.
VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_:/-]{0,254}$")
SERIAL = re.compile(r"^[0-9A-Fa-f]{24}$")
SUGGESTIONS_LISTED = 1000  # volumes read to suggest close names for a missing one

_M = TypeVar("_M", bound=BaseModel)


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _ApiVersions(_Answer):
    version: list[str]


class _Volume(_Answer):
    id: str
    name: str
    serial: str
    provisioned: int
    destroyed: bool = False


class _Volumes(_Answer):
    items: list[_Volume]


class _Space(_Answer):
    total_used: int | None = None
    total_physical: int | None = None  # deprecated in later 2.x for total_used (same value)


class _ArraySpace(_Answer):
    capacity: int
    space: _Space


class _ArraySpaces(_Answer):
    items: list[_ArraySpace]


def pure_message(body: Any) -> str | None:
    """Pure's error text from a 2.x error body ``{"errors": [{"context", "message"}]}``, as
    ``context: message`` joined by ``; ``; None when the body holds none."""
    if not isinstance(body, dict) or not isinstance(body.get("errors"), list):
        return None
    found = []
    for error in body["errors"]:
        if isinstance(error, dict) and error.get("message"):
            context = error.get("context")
            found.append(f"{context}: {error['message']}" if context else str(error["message"]))
    return "; ".join(found) or None


def naa_of(serial: str) -> str:
    """The NAA name hosts see for a Pure volume with ``serial``."""
    return f"naa.{NAA_OUI}{serial.lower()}"


def pick_version(offered: list[str]) -> str | None:
    """The highest of ``offered`` between ``OLDEST_VERSION`` and ``NEWEST_VERSION``; None if there is none."""
    usable: list[tuple[int, int]] = []
    for text in offered:
        major, _, minor = text.partition(".")
        if major.isdigit() and minor.isdigit():
            version = (int(major), int(minor))
            if OLDEST_VERSION <= version <= NEWEST_VERSION:
                usable.append(version)
    if not usable:
        return None
    best = max(usable)
    return f"{best[0]}.{best[1]}"


class PureArray:
    """The ``ArrayDriver`` for one FlashArray of the inventory. No I/O until first used."""

    def __init__(self, array: StorageArray) -> None:
        self.array = array
        self.name = array.name
        self._http: ArrayHttp | None = None
        self._session: str | None = None
        self._version: str | None = None

    @property
    def api_version(self) -> str | None:
        """The REST version in use ("2.26"), or None before the first call."""
        return self._version

    def lun(self, name: str) -> Lun:
        """The live volume called ``name``.

        Raises ``InvalidRequest`` (field ``lun``, with close names) when the array has no such volume or it is
        destroyed; ``DeviceRefused``/``DeviceUnreachable`` per the error contract of ``storage.base``."""
        if not VOLUME_NAME.match(name):
            raise InvalidRequest(
                f"lun: {name!r} is not a Pure volume name",
                fix="use the volume's name as 'purevol list' shows it (letters, digits, '-', '_')",
            )
        answer = self._get("volumes", {"filter": f"name='{name}'"}, _Volumes, "volume lookup")
        found = [v for v in answer.items if v.name == name and not v.destroyed]
        if not found:
            raise InvalidRequest(f"lun: array {self.name} has no volume {name!r}", fix=self._suggest(name))
        volume = found[0]
        if not SERIAL.match(volume.serial):
            raise DeviceRefused(
                f"array {self.name}: volume {name} has serial {volume.serial!r}, not 24 hex digits",
                fix="check the array's Purity version; this driver expects FlashArray serials",
            )
        return Lun(id=volume.id, name=volume.name, size=volume.provisioned, naa=naa_of(volume.serial))

    def room(self, lun: Lun) -> Room:
        """The array's free physical space (capacity minus used) and Pure's 4 PiB volume limit.

        Raises ``DeviceRefused``/``DeviceUnreachable`` per the error contract of ``storage.base``."""
        answer = self._get("arrays/space", {}, _ArraySpaces, "array space")
        if not answer.items:
            raise DeviceRefused(f"array {self.name}: GET arrays/space listed no array", fix="check the array")
        array = answer.items[0]
        used = array.space.total_used if array.space.total_used is not None else array.space.total_physical
        if used is None:
            raise DeviceRefused(
                f"array {self.name}: arrays/space shows neither total_used nor total_physical",
                fix="check the array's Purity version",
            )
        return Room(
            free=max(0, array.capacity - used), max_size=MAX_VOLUME_SIZE, container=f"array {self.name}"
        )

    def resize(self, lun: Lun, size: int) -> None:
        """Set ``lun``'s provisioned size to ``size`` bytes (never truncating: the array refuses a shrink).

        Raises ``DeviceRefused`` (carrying the array's message) when the array refuses, ``DeviceUnreachable``
        on no answer or a 5xx (the outcome is then unknown: read the volume back), ``VerificationFailed`` when
        the array answers with another size."""
        http = self._http_client()  # logs in first: the path needs the negotiated version
        response = http.request(
            "PATCH",
            self._path("volumes"),
            params={"names": lun.name},
            json={"provisioned": size},
            headers=self._auth(),
        )
        # A 200 means the array took the change; an answer we cannot read is unverified, not refused.
        try:
            answer = _Volumes.model_validate(response.json())
            shown: list[int] | None = [v.provisioned for v in answer.items if v.name == lun.name]
        except ValueError:  # pydantic's ValidationError is a ValueError, as is a JSON decoding error
            shown = None
        if shown != [size]:
            said = "an answer without the volume's size" if not shown else f"provisioned {shown}"
            raise VerificationFailed(
                f"array {self.name}: asked volume {lun.name} to be {size} bytes, the array answered {said}",
                fix="read the volume back on the array (purevol list) before retrying",
            )
        log.info("array %s: volume %s resized to %d bytes", self.name, lun.name, size)

    def close(self) -> None:
        """Log out (errors ignored) and close the connection. Safe to call twice."""
        if self._http is None:
            return
        if self._session is not None and self._version is not None:
            try:
                self._http.request("POST", f"/api/{self._version}/logout", headers=self._auth())
            except RemoteHandsError as exc:
                log.debug("array %s: logout failed (ignored): %s", self.name, exc)
        self._session = None
        self._http.close()
        self._http = None

    # -- session -------------------------------------------------------------------------------------------

    def _http_client(self) -> ArrayHttp:
        if self._http is None:
            self._http = ArrayHttp(self.array, pure_message)
        if self._session is None:
            self._login(self._http)
        return self._http

    def _login(self, http: ArrayHttp) -> None:
        """Pick the REST version and trade the API token for a session token (kept in memory only)."""
        versions = self._parse(http.request("GET", "/api/api_version"), _ApiVersions, "api_version")
        version = pick_version(versions.version)
        if version is None:
            raise DeviceRefused(
                f"array {self.name} offers no REST version this driver speaks "
                f"({OLDEST_VERSION[0]}.{OLDEST_VERSION[1]} to {NEWEST_VERSION[0]}.{NEWEST_VERSION[1]})",
                fix="upgrade Purity//FA to a release with REST 2.2 or later",
            )
        token = secrets.resolve(self.array.credentials.password, field=f"array {self.name} API token")
        try:
            response = http.request("POST", f"/api/{version}/login", headers={"api-token": token})
        except DeviceRefused as exc:
            raise DeviceRefused(
                exc.message,
                fix=f"check that the API token behind {self.array.credentials.password} is current "
                "(pureadmin list --api-token) and belongs to a user allowed to resize volumes",
            ) from None
        session = response.headers.get("x-auth-token")
        if not session:
            raise DeviceRefused(
                f"array {self.name}: login answered without an x-auth-token header",
                fix="check that the address is a FlashArray's management interface",
            )
        redaction.register(session)
        self._session, self._version = session, version
        log.debug("array %s: logged in, REST %s", self.name, version)

    def _auth(self) -> dict[str, str]:
        return {"x-auth-token": self._session or ""}

    def _path(self, resource: str) -> str:
        return f"/api/{self._version}/{resource}"

    # -- reading -------------------------------------------------------------------------------------------

    def _get(self, resource: str, params: dict[str, str], model: type[_M], what: str) -> _M:
        http = self._http_client()
        response = http.request("GET", self._path(resource), params=params, headers=self._auth())
        return self._parse(response, model, what)

    def _parse(self, response: httpx.Response, model: type[_M], what: str) -> _M:
        try:
            return model.model_validate(response.json())
        except (ValueError, ValidationError) as exc:
            count = exc.error_count() if isinstance(exc, ValidationError) else "unparsable"
            raise DeviceRefused(
                f"array {self.name}: unexpected answer to the {what} request ({count} problems)",
                fix="check that the address is a FlashArray with REST 2.x",
            ) from None

    def _suggest(self, name: str) -> str:
        """Close names of live volumes, for the message about a missing one."""
        try:
            listed = self._get(
                "volumes", {"destroyed": "false", "limit": str(SUGGESTIONS_LISTED)}, _Volumes, "volume list"
            )
        except RemoteHandsError:
            return "check the volume name on the array (purevol list)"
        close = difflib.get_close_matches(name, [v.name for v in listed.items], n=3)
        if close:
            return "did you mean " + ", ".join(close) + "?"
        return "check the volume name on the array (purevol list)"
