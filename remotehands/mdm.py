"""Client for a NanoMDM-style MDM server: erase a Mac with ``EraseDevice``, push it, read the answer back.

Every call is HTTP Basic auth with user ``nanomdm`` and the API key as password (NanoMDM's ``-api`` key):

    PUT  /v1/enqueue/{udid}     NanoMDM: queue a raw command plist; also pushes unless ``?nopush=1``
    GET  /v1/push/{udid}        NanoMDM: an APNs push, so the device checks in and fetches its queue
    GET  /v1/commands/{uuid}    results store: the device's latest answer to one command
    GET  /v1/devices/{udid}     results store: whether the device is enrolled, and since when

NanoMDM answers ``{"status": {udid: {"push_result" | "push_error" | "command_error"}}, "command_uuid",
"request_type", "command_error"}`` with 200 (all ok), 207 (some failed) or 500 (all failed).

**The results store.** NanoMDM keeps command results in its storage but has no API to read them, and
nothing about enrollment times. A deployment serves the last two endpoints from a small service behind the
same base URL (a reverse proxy routes ``/v1/commands/`` and ``/v1/devices/`` to it) with the same API key.
NanoMDM started with ``-webhook-url`` posts MicroMDM-style events to it: ``mdm.Connect`` carries an
``acknowledge_event`` (``udid``, ``command_uuid``, ``status``, ``raw_payload`` = the device's response
plist, base64, holding ``ErrorChain`` on Error); ``mdm.TokenUpdate`` marks a device enrolled at that moment,
``mdm.CheckOut`` not enrolled. The store answers (404s carry a JSON body with an ``error`` key, so a
missing store, whose 404 has none, is told apart from an unknown command or device):

    GET /v1/commands/{uuid} -> {"command_uuid", "udid", "request_type", "status": Pending|Acknowledged|
                                Error|NotNow, "error_chain": [{ErrorCode, ErrorDomain, LocalizedDescription,
                                USEnglishDescription}], "enqueued_at", "updated_at"}
    GET /v1/devices/{udid}  -> {"udid", "serial", "enrolled": bool, "enrolled_at": ISO 8601 or null}

A store fed only by the webhook learns of a command when the device answers, so until then it returns 404:
``CommandState.UNKNOWN``, which after our own enqueue means "not answered yet". A store that also reads
NanoMDM's queue (``GET /v1/queue/{id}`` in newer NanoMDM, or the SQL ``enrollment_queue``) answers Pending.
``remotehands.lab.mdm_sim`` serves all four endpoints.

**Erasing once.** A job that crashed after enqueueing re-sends the *same* CommandUUID (``command_uuid=``).
The client first asks the store: a command it knows is not sent again. Otherwise it enqueues, and NanoMDM's
SQL storage refuses a CommandUUID it already has ("Duplicate entry" / "duplicate key"), which we take as
"already queued". Either way the command is queued once, so the Mac is erased once.
"""

from __future__ import annotations

import functools
import logging
import plistlib
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from remotehands import redaction
from remotehands.errors import BadInput, ConfigError, DeviceRefused, DeviceUnreachable, UnknownTarget
from remotehands.numbers import ascii_int

log = logging.getLogger(__name__)

API_USER = "nanomdm"
ENQUEUE_PATH, PUSH_PATH = "/v1/enqueue/", "/v1/push/"
COMMANDS_PATH, DEVICES_PATH = "/v1/commands/", "/v1/devices/"
OBLITERATION_BEHAVIORS = ("Default", "DoNotObliterate", "ObliterateWithWarning", "Always")
RETRY_STATUSES = frozenset({429, 502, 503, 504})


class CommandState(StrEnum):
    """A command's state as the device reported it (Apple's ``Status`` values), plus ``Unknown``."""

    PENDING = "Pending"
    ACKNOWLEDGED = "Acknowledged"
    ERROR = "Error"
    NOT_NOW = "NotNow"
    UNKNOWN = "Unknown"  # the results store has no record of the command (not answered yet, or never sent)


@dataclass(frozen=True)
class MdmErrorEntry:
    """One entry of a device's ``ErrorChain``."""

    code: int | None
    domain: str
    description: str

    def __str__(self) -> str:
        return f"{self.domain} {self.code}: {self.description}"


@dataclass(frozen=True)
class MdmCommandStatus:
    """What the results store knows about one command."""

    command_uuid: str
    state: CommandState
    udid: str | None = None
    request_type: str | None = None
    error_chain: tuple[MdmErrorEntry, ...] = ()
    updated_at: datetime | None = None

    @property
    def finished(self) -> bool:
        """True once the device answered for good (Acknowledged or Error); NotNow is retried by the device."""
        return self.state in (CommandState.ACKNOWLEDGED, CommandState.ERROR)

    def error_text(self) -> str:
        """The error chain as one line, for a ticket comment or an error message."""
        return "; ".join(str(entry) for entry in self.error_chain) or "no ErrorChain given"


@dataclass(frozen=True)
class MdmDevice:
    """A device's enrollment as the results store knows it."""

    udid: str
    serial: str | None
    enrolled: bool
    enrolled_at: datetime | None


def erase_command(
    command_uuid: str,
    *,
    pin: str | None = None,
    preserve_data_plan: bool = True,
    obliteration_behavior: str | None = "DoNotObliterate",
) -> bytes:
    """The ``EraseDevice`` command plist (XML). ``PIN`` (six characters, the Find My firmware lock) matters
    only on Macs without a T2 chip; T2 and Apple silicon Macs ignore it and erase with EACS, falling back
    as ``ObliterationBehavior`` says (``DoNotObliterate``: an EACS preflight failure is an Error and nothing
    is erased, so the job can fall back to another method). ``PreserveDataPlan`` is read by eSIM devices."""
    if obliteration_behavior is not None and obliteration_behavior not in OBLITERATION_BEHAVIORS:
        raise BadInput(
            f"unknown ObliterationBehavior {obliteration_behavior!r}",
            fix=f"use one of {', '.join(OBLITERATION_BEHAVIORS)}",
        )
    command: dict[str, Any] = {"RequestType": "EraseDevice", "PreserveDataPlan": preserve_data_plan}
    if obliteration_behavior is not None:
        command["ObliterationBehavior"] = obliteration_behavior
    if pin is not None:
        redaction.register(pin)
        if len(pin) != 6 or not pin.isascii() or not pin.isdigit():
            raise BadInput("the EraseDevice PIN must be six ASCII digits", fix="check the PIN reference")
        command["PIN"] = pin
    return plistlib.dumps({"Command": command, "CommandUUID": command_uuid}, fmt=plistlib.FMT_XML)


class MdmClient:
    """A synchronous client for one MDM server (thread-safe, as ``httpx.Client`` is).

    ``verify``: True (system CAs), a CA bundle path (trust only it), or False. 429/502/503/504 are retried
    ``retries`` times honouring ``Retry-After`` (at most ``max_wait`` s per wait); no answer raises
    ``DeviceUnreachable`` (retryable); a refused key ``DeviceRefused`` at once. The key never appears in
    a message or a log line, and is registered with the redactor in case it ever would."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        verify: bool | str = True,
        timeout: float = 10.0,
        retries: int = 2,
        max_wait: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not api_key:
            raise ConfigError("the MDM API key is empty", fix="set the MDM api_key reference in the settings")
        redaction.register(api_key)
        parts = urlsplit(url)
        if parts.password:
            redaction.register(parts.password)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
            raise ConfigError(
                "the MDM URL must be http(s)://host[:port][/prefix] without credentials",
                fix="give the API key by reference in the MDM settings, not in the URL",
            )
        self.where = f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")
        self.retries = retries
        self.max_wait = max_wait
        self._sleep = sleep
        self._client = httpx.Client(
            base_url=self.where,
            auth=httpx.BasicAuth(API_USER, api_key),
            verify=_tls(verify),
            timeout=timeout,
            follow_redirects=False,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def __enter__(self) -> MdmClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- commands ---------------------------------------------------------------------------------

    def erase(
        self,
        udid: str,
        *,
        pin: str | None = None,
        preserve_data_plan: bool = True,
        obliteration_behavior: str | None = "DoNotObliterate",
        command_uuid: str | None = None,
        push: bool = True,
    ) -> str:
        """Enqueue ``EraseDevice`` for ``udid`` (and push, unless ``push=False``); returns the CommandUUID.

        Pass the ``command_uuid`` of an earlier attempt to re-send the same command after a crash: a
        command the server already has is not enqueued again (see the module docstring)."""
        _check_id(udid, "UDID")
        if command_uuid is None:
            command_uuid = str(uuid.uuid4()).upper()
        else:
            _check_id(command_uuid, "command UUID")
            known = self.command_status(command_uuid)
            if known.state is not CommandState.UNKNOWN:
                if known.udid not in (None, udid):
                    raise BadInput(
                        f"command {command_uuid} was sent to {known.udid}, not {udid}",
                        fix="re-send a command only to the device it was made for",
                    )
                log.info("MDM: %s for %s is already %s; not sent again", command_uuid, udid, known.state)
                return command_uuid
        body = erase_command(
            command_uuid,
            pin=pin,
            preserve_data_plan=preserve_data_plan,
            obliteration_behavior=obliteration_behavior,
        )
        self._enqueue(udid, command_uuid, body, push=push)
        log.info("MDM: enqueued EraseDevice %s for %s", command_uuid, udid)
        return command_uuid

    def push(self, udid: str) -> None:
        """Send an APNs push so the device checks in. ``UnknownTarget`` when the server does not know the
        device; ``DeviceUnreachable`` when the push failed (APNs, push certificate): try again later."""
        _check_id(udid, "UDID")
        response = self._request("GET", PUSH_PATH, udid, "push")
        result = _json(response)
        entry = _entry(result, udid)
        error = entry.get("push_error") or result.get("push_error")
        if response.status_code == 200 and not error:
            return
        if response.status_code == 404 and not result:
            raise self._unexpected(response, "push", PUSH_PATH)
        self.device(udid)  # UnknownTarget when the server has no such enrollment
        raise DeviceUnreachable(
            f"MDM server {self.where} could not push to {udid}: {_text(error or response.status_code)}",
            fix="check the MDM server's APNs push certificate and its access to APNs; the step retries",
        )

    def command_status(self, command_uuid: str) -> MdmCommandStatus:
        """The device's latest answer to ``command_uuid``; state ``UNKNOWN`` when the store has no record."""
        _check_id(command_uuid, "command UUID")
        response = self._request("GET", COMMANDS_PATH, command_uuid, "read a command's status")
        data = _json(response)
        if response.status_code == 404 and "error" in data:
            return MdmCommandStatus(command_uuid, CommandState.UNKNOWN)
        if response.status_code != 200:
            raise self._unexpected(response, "read a command's status", COMMANDS_PATH)
        try:
            state = CommandState(str(data.get("status")))
        except ValueError:
            raise DeviceRefused(
                f"MDM results store {self.where} gave command {command_uuid} the unknown status "
                f"{_text(data.get('status'))}",
                fix="check the results store against remotehands.mdm's documented answer",
            ) from None
        chain = tuple(
            MdmErrorEntry(
                code=ascii_int(item.get("ErrorCode"), signed=True),
                domain=str(item.get("ErrorDomain", "")),
                description=str(item.get("USEnglishDescription") or item.get("LocalizedDescription") or ""),
            )
            for item in data.get("error_chain") or []
            if isinstance(item, dict)
        )
        udid, request_type = data.get("udid"), data.get("request_type")
        return MdmCommandStatus(command_uuid, state, udid, request_type, chain, _when(data.get("updated_at")))

    def device(self, udid: str) -> MdmDevice:
        """The device's enrollment from the results store; ``UnknownTarget`` when it has none."""
        _check_id(udid, "UDID")
        response = self._request("GET", DEVICES_PATH, udid, "read a device's enrollment")
        data = _json(response)
        if response.status_code == 404 and "error" in data:
            raise UnknownTarget(
                f"MDM server {self.where} has no enrollment for device {udid}",
                fix="check the host's MDM UDID in the inventory, or enroll the Mac in the MDM server",
            )
        if response.status_code != 200:
            raise self._unexpected(response, "read a device's enrollment", DEVICES_PATH)
        return MdmDevice(udid, data.get("serial"), bool(data.get("enrolled")), _when(data.get("enrolled_at")))

    def enrolled(self, udid: str, *, since: datetime | None = None) -> bool:
        """True when the device is enrolled -- and, with ``since``, enrolled (again) at or after it. After an
        erase pass the time the erase was sent: a store may not notice the erase, only the re-enrollment."""
        device = self.device(udid)
        if not device.enrolled:
            return False
        return since is None or (device.enrolled_at is not None and device.enrolled_at >= since)

    # -- plumbing ---------------------------------------------------------------------------------

    def _enqueue(self, udid: str, command_uuid: str, body: bytes, *, push: bool) -> None:
        response = self._request(
            "PUT",
            ENQUEUE_PATH,
            udid,
            "enqueue EraseDevice",
            content=body,
            headers={"Content-Type": "application/xml"},
            params=None if push else {"nopush": "1"},
        )
        result = _json(response)
        entry = _entry(result, udid)
        error = entry.get("command_error") or result.get("command_error")
        if response.status_code in (200, 207) and not error:
            if entry.get("push_error"):
                log.warning(
                    "MDM: %s queued for %s; push failed: %s", command_uuid, udid, _text(entry["push_error"])
                )
            return
        if response.status_code == 404 and not result:
            raise self._unexpected(response, "enqueue EraseDevice", ENQUEUE_PATH)
        if "duplicate" in str(error).lower():
            log.info("MDM: the server already has command %s for %s; not queued twice", command_uuid, udid)
            return
        self.device(udid)  # UnknownTarget when the server has no such enrollment
        raise DeviceRefused(
            f"MDM server {self.where} did not enqueue EraseDevice {command_uuid} for {udid}: "
            f"{_text(error or response.status_code)}",
            fix="read the server's message; check the device's enrollment and the server's storage",
        )

    def _request(self, method: str, path: str, ident: str, what: str, **kwargs: Any) -> httpx.Response:
        """One call to ``path`` + ``ident`` (URL-quoted), retrying 429/502/503/504."""
        for attempt in range(self.retries + 1):
            try:
                response = self._client.request(method, path + quote(ident, safe=""), **kwargs)
            except httpx.HTTPError as exc:
                raise DeviceUnreachable(
                    f"MDM server {self.where} did not answer ({what}): {type(exc).__name__}",
                    fix="check that the MDM server is up and reachable from here; the step retries",
                ) from None
            code = response.status_code
            if code in (401, 403):
                raise DeviceRefused(
                    f"MDM server {self.where} refused the API key ({what}): HTTP {code}",
                    fix=f"check the MDM API key reference in the settings (HTTP Basic user {API_USER!r})",
                )
            if code not in RETRY_STATUSES:
                return response
            if attempt < self.retries:
                wait = ascii_int(response.headers.get("Retry-After"), max_digits=6)
                delay = min(float(wait) if wait is not None else 0.2 * 2**attempt, self.max_wait)
                log.info("MDM server answered %s to %s; retrying in %.1f s", code, what, delay)
                self._sleep(delay)
        raise DeviceUnreachable(
            f"MDM server {self.where} answered HTTP {code} to {what} {self.retries + 1} times",
            fix="the MDM server is overloaded or down; the step retries later",
        )

    def _unexpected(self, response: httpx.Response, what: str, path: str) -> DeviceRefused:
        if response.status_code == 404:
            return DeviceRefused(
                f"MDM server {self.where} has no {path} endpoint ({what})",
                fix="check the MDM URL and that NanoMDM's API is on (-api); /v1/commands/ and /v1/devices/ "
                "come from the results store described in remotehands.mdm",
            )
        return DeviceRefused(
            f"MDM server {self.where} answered HTTP {response.status_code} ({what}): {_text(response.text)}",
            fix="check the MDM server's logs",
        )


@functools.lru_cache(maxsize=8)
def _tls(verify: bool | str) -> bool | ssl.SSLContext:
    """The TLS context for ``verify``, built once per process: loading a CA bundle costs ~15 ms of CPU,
    and a job makes a client for every look at the MDM (measured: 17% of a 300-job batch's worker CPU)."""
    if verify is False:
        return False
    if verify is True:
        return httpx.create_ssl_context()
    try:
        return ssl.create_default_context(cafile=verify)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load the MDM server's CA bundle {verify}: {exc}",
            fix="point the MDM tls_ca setting at a readable PEM file",
        ) from exc


def _check_id(value: str, what: str) -> None:
    """An enrollment id or command UUID goes into a URL path: a comma would address several devices."""
    if not value or len(value) > 128 or not value.isprintable() or any(c in value for c in ",/?#% "):
        raise BadInput(f"invalid {what} {value!r}", fix=f"give one {what} (no commas, slashes or spaces)")


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _entry(result: dict[str, Any], udid: str) -> dict[str, Any]:
    status = result.get("status")
    entry = status.get(udid) if isinstance(status, dict) else None
    return entry if isinstance(entry, dict) else {}


def _text(value: object) -> str:
    return redaction.redact(str(value))[:300]


def _when(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
