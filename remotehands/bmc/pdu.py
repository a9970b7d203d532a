"""One switched-PDU outlet as a power path, over SNMP v2c or v3 with pysnmp; the model is data (``pdu_models``).

pysnmp is asyncio-based and building an engine costs about 70 ms of CPU, so requests go through an
``SnmpClient``: engines on one asyncio loop in a daemon thread, shared by every ``SnmpOutlet`` of the
process unless one is passed in. Synchronous callers hand it a coroutine and wait for the result; a status
read then costs about 0.75 ms of client CPU with v2c and 1.4 ms with v3 authPriv (500 reads, loopback).

A command that gets no answer is the dangerous case: pysnmp would resend it, and the PDU runs every copy
it receives (a lost *answer* means the first copy ran). So commands are sent once, without pysnmp's
retries, and when no answer comes the driver looks at the outlet before it sends again:

- on/off: once ``2 * timeout`` has passed since sending, the state shows whether the command ran; when
  the state cannot be read, ``DeviceUnreachable`` (the next attempt reads the state before acting);
- reboot of an outlet that was on: polled from the moment of sending; the off-period the PDU reports
  (the model's ``cycle_delay_oids``) must be longer than every gap between two readings, so an executed
  reboot cannot hide between them. Off seen -> it ran; on seen throughout until ``2 * timeout`` after
  sending -> it did not, send again;
- reboot of an outlet that was off: read once the longest off-period plus ``2 * timeout`` has passed.
  On -> it ran; still off -> it did not.

When the readings cannot prove either (the PDU stops answering, gaps too long, no off-period known) a
reboot raises ``NeedsOperator`` and is never sent twice. This rests on one assumption, stated here: a PDU
that has not carried out a command ``2 * timeout`` after it was sent never will.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any, Literal

from pysnmp.error import PySnmpError  # type: ignore[import-untyped]
from pysnmp.proto import errind, rfc1902, rfc1905  # type: ignore[import-untyped]

from remotehands.bmc.base import PowerAction, PowerState
from remotehands.bmc.pdu_models import (
    SYS_OBJECT_ID,
    PduModel,
    fill,
    model_for_sys_object_id,
    model_named,
)
from remotehands.bmc.snmp_client import (
    ACCESS_DENIED,
    AUTH_FAILURES,
    AUTH_PROTOCOLS,
    PRIV_PROTOCOLS,
    SnmpClient,
    SnmpTarget,
)
from remotehands.errors import DeviceRefused, DeviceUnreachable, InternalError, NeedsOperator

log = logging.getLogger(__name__)


class _Outcome(enum.Enum):
    RAN = "ran"
    DID_NOT_RUN = "did not run"
    UNKNOWN = "unknown"


class SnmpOutlet:
    """One outlet of one switched PDU; implements ``PowerDriver`` and ``OutletIdentity``.

    No I/O in the constructor. On first use the PDU's sysObjectID picks the model, unless ``model`` names
    one, and for models whose rows are not numbered by outlet the row of (``unit``, ``outlet``) is looked
    up. Every method raises ``DeviceUnreachable`` when the PDU does not answer (a wrong v2c community looks
    the same) and ``DeviceRefused`` when it refuses: bad v3 credentials, read-only access, an unknown
    sysObjectID, an outlet it does not have, an outlet name that is not ``expected_name``. Credentials
    never appear in messages or logs.
    """

    def __init__(
        self,
        address: str,
        port: int,
        outlet: int,
        *,
        model: str | None = None,
        version: Literal["v2c", "v3"] = "v2c",
        community: str | None = None,
        v3_user: str | None = None,
        v3_auth_key: str | None = None,
        v3_priv_key: str | None = None,
        v3_auth_protocol: str = "SHA",
        v3_priv_protocol: str = "AES",
        expected_name: str | None = None,
        timeout: float = 2.0,
        retries: int = 1,
        unit: int = 1,
        client: SnmpClient | None = None,
    ) -> None:
        self.address, self.port, self.where = address, port, f"{address}:{port}"
        self.name = f"pdu {self.where} outlet {outlet}"
        self.outlet, self.unit, self.expected_name = outlet, unit, expected_name
        self.timeout, self.retries, self.version = timeout, max(0, retries), version
        if version == "v2c":
            if not community:
                raise DeviceRefused(
                    f"{self.name}: SNMPv2c needs a community",
                    fix="set the PDU's read-write community in the inventory",
                )
            self._credentials: tuple[str, ...] = ("v2c", community)
        else:
            auth, priv = v3_auth_protocol.upper(), v3_priv_protocol.upper()
            if (
                not v3_user
                or not v3_auth_key
                or auth not in AUTH_PROTOCOLS
                or priv not in PRIV_PROTOCOLS
                or (priv != "NONE" and not v3_priv_key)
            ):
                raise DeviceRefused(
                    f"{self.name}: SNMPv3 needs a user, an auth key and a priv key (auth {sorted(AUTH_PROTOCOLS)}, priv {sorted(PRIV_PROTOCOLS)})",
                    fix="complete the PDU's SNMPv3 settings in the inventory",
                )
            self._credentials = ("v3", v3_user, auth, v3_auth_key, priv, v3_priv_key or "")
        self._model: PduModel | None = model_named(model) if model else None
        self._client, self._row = client, outlet
        self._target: SnmpTarget | None = None
        self._lock = threading.Lock()

    # -- PowerDriver / OutletIdentity ---------------------------------------------------------------------

    def supported(self) -> frozenset[PowerAction]:
        return frozenset({PowerAction.ON, PowerAction.OFF, PowerAction.CYCLE})

    def state(self) -> PowerState:
        """The outlet's state (UNKNOWN for a value the model does not map)."""
        with self._lock:
            model = self._ready()
            return self._decode(self._get([self._oid(model.state_oid)])[0])

    def outlet_name(self) -> str:
        """The outlet's user-defined name as the PDU reports it."""
        with self._lock:
            return str(self._get([self._oid(self._ready().name_oid)])[0])

    def set_state(self, action: PowerAction) -> None:
        """Switch the outlet ON or OFF with one command, after the outlet-name check when one is expected."""
        if action not in (PowerAction.ON, PowerAction.OFF):
            raise DeviceRefused(
                f"{self.name}: a PDU outlet cannot {action.value}", fix="use off (hard power-off) or cycle"
            )
        with self._lock:
            model = self._ready()
            if self.expected_name is not None:
                self._check_name(str(self._get([self._oid(model.name_oid)])[0]))
            self._command(model, action)

    def cycle(self) -> None:
        """Power-cycle the outlet with the model's reboot command (off, then on after its off-period).

        Raises ``NeedsOperator`` when the command got no answer and the outlet cannot tell whether it ran.
        """
        with self._lock:
            model = self._ready()
            if not model.native_cycle:
                raise DeviceRefused(
                    f"{self.name}: model {model.name} has no reboot command", fix="use off then on"
                )
            oids = [self._oid(t) for t in (model.state_oid, model.name_oid, *model.cycle_delay_oids)]
            values = [
                value for _, value in self._request("get", [(o, None) for o in oids], refuse_missing=False)
            ]
            for oid, value in zip(oids[:2], values[:2], strict=True):
                if _missing(value):
                    raise self._no_such(oid)
            if self.expected_name is not None:
                self._check_name(str(values[1]))
            delays = [_int(v) for v in values[2:] if _int(v) > 0]  # a PDU without them: unknown
            before = self._decode(values[0])
            self._command(model, PowerAction.CYCLE, before, (min(delays), max(delays)) if delays else None)

    def close(self) -> None:
        """Forget this outlet's targets in the client; the shared engine stays for other outlets."""
        with self._lock:
            if self._client is not None and self._target is not None:
                self._client.run(self._client.drop_target(self._target), 10)
                self._target = None

    # -- commands and the lost-answer rules of the module docstring ----------------------------------------

    def _command(
        self,
        model: PduModel,
        action: PowerAction,
        before: PowerState = PowerState.UNKNOWN,
        delays: tuple[int, int] | None = None,
    ) -> None:
        oid, value = self._oid(model.command_oid), model.command_values[action]
        for attempt in range(1, self.retries + 2):
            sent = time.monotonic()
            if self._send(oid, value):
                log.info("%s: %s sent", self.name, action.value)
                return
            outcome = self._after_silence(action, before, delays, sent)
            log.warning(
                "%s: no answer to %s (attempt %d): it %s", self.name, action.value, attempt, outcome.value
            )
            if outcome is _Outcome.RAN:
                return
            if outcome is _Outcome.UNKNOWN and action is not PowerAction.CYCLE:
                raise DeviceUnreachable(
                    f"{self.name}: no answer to the {action.value} command, and the outlet's state could not "
                    "be read to tell whether it switched",
                    fix=f"check the PDU at {self.where}; reading the state first shows whether to try again",
                )
            if outcome is _Outcome.UNKNOWN:
                raise NeedsOperator(
                    f"{self.name}: no answer to the {action.value} command and the outlet's readings cannot "
                    "tell whether it ran",
                    fix="check the host (uptime, console) or the PDU's log before trying again; sending the "
                    "command again could switch the outlet twice",
                )
        raise DeviceUnreachable(
            f"{self.name}: no answer to {self.retries + 1} {action.value} commands; the outlet was seen not to "
            "switch",
            fix=f"check the PDU at {self.where} (network, load, SNMP service) and try again",
        )

    def _after_silence(
        self, action: PowerAction, before: PowerState, delays: tuple[int, int] | None, sent: float
    ) -> _Outcome:
        settle = sent + 2 * self.timeout
        if action is not PowerAction.CYCLE:
            time.sleep(max(0.0, settle - time.monotonic()))
            return _judge(self._read_state(), PowerState.ON if action is PowerAction.ON else PowerState.OFF)
        if delays is None or before is PowerState.UNKNOWN:
            return _Outcome.UNKNOWN
        if before is PowerState.OFF:
            time.sleep(max(0.0, settle + delays[1] - time.monotonic()))
            return _judge(self._read_state(), PowerState.ON)
        previous = sent  # the outlet was on, and the command cannot have run before it was sent
        while True:
            start = time.monotonic()
            seen = self._poll_state()
            end = time.monotonic()
            if seen is PowerState.OFF:
                return _Outcome.RAN
            if seen is PowerState.ON:
                if end - previous >= delays[0]:
                    return _Outcome.UNKNOWN  # an off-period could have fitted between two readings
                if start > settle:
                    return _Outcome.DID_NOT_RUN
                previous = start
            elif time.monotonic() - previous >= delays[0]:
                return _Outcome.UNKNOWN

    # -- SNMP plumbing --------------------------------------------------------------------------------------

    def _ready(self) -> PduModel:
        if self._client is None:
            self._client = SnmpClient.shared()
        if self._target is None:
            self._target = self._run(
                self._client.add_target(
                    self._credentials, (self.address, self.port), self.timeout, self.retries
                )
            )
        if self._model is None:
            self._model = model_for_sys_object_id(str(self._get([SYS_OBJECT_ID])[0]), where=self.where)
            self._row = self._find_row(self._model)
        return self._model

    def _find_row(self, model: PduModel) -> int:
        if model.row_lookup is None:
            return self.outlet
        columns = (model.row_lookup.module_column, model.row_lookup.number_column)
        first = self._request("get", [(f"{c}.{self.outlet}", None) for c in columns], refuse_missing=False)
        if [_int(v) for _, v in first] == [self.unit, self.outlet]:
            return self.outlet
        cursor = list(columns)
        for _ in range(1024):  # a daisy chain of four 42-outlet PDUs has 168 rows
            found = self._request("next", [(c, None) for c in cursor], refuse_missing=False)
            names = [str(n) for n, _ in found]
            if not all(n.startswith(c + ".") for n, c in zip(names, columns, strict=True)):
                break
            if [_int(v) for _, v in found] == [self.unit, self.outlet]:
                return int(names[0].rsplit(".", 1)[1])
            cursor = names
        raise DeviceRefused(
            f"{self.name}: PDU {self.where} has no outlet {self.outlet} on unit {self.unit} (model {model.name})",
            fix="check the outlet number and, for a daisy chain, the unit (rPDU2 module) in the inventory",
        )

    def _oid(self, template: str) -> str:
        return fill(template, outlet=self.outlet, unit=self.unit, row=self._row)

    def _decode(self, raw: Any) -> PowerState:
        assert self._model is not None
        return self._model.state_values.get(_int(raw), PowerState.UNKNOWN)

    def _check_name(self, actual: str) -> None:
        if actual.strip() != (self.expected_name or "").strip():
            raise DeviceRefused(
                f"{self.name}: outlet is named {actual!r} on the PDU, the inventory expects {self.expected_name!r}; "
                "nothing was sent",
                fix="check the cabling and the outlet number, then fix the inventory or the outlet's name on the PDU",
            )

    def _read_state(self) -> PowerState | None:
        try:
            return self._decode(self._get([self._oid(self._ready().state_oid)])[0])
        except DeviceUnreachable:
            return None

    def _poll_state(self) -> PowerState | None:
        try:
            return self._decode(
                self._request("get", [(self._oid(self._ready().state_oid), None)], target="p")[0][1]
            )
        except DeviceUnreachable:
            return None

    def _send(self, oid: str, value: int) -> bool:
        """Send one SET, once. True when the PDU accepted it, False on silence; refusals raise."""
        try:
            self._request("set", [(oid, rfc1902.Integer32(value))], target="w")
        except DeviceUnreachable:
            return False
        return True

    def _get(self, oids: Sequence[str]) -> list[Any]:
        return [value for _, value in self._request("get", [(oid, None) for oid in oids])]

    def _request(
        self,
        kind: str,
        var_binds: Sequence[tuple[str, Any]],
        *,
        target: str = "r",
        refuse_missing: bool = True,
    ) -> Sequence[tuple[Any, Any]]:
        assert self._client is not None and self._target is not None
        name = {"r": self._target.read, "w": self._target.write, "p": self._target.poll}[target]
        vbs = [
            (rfc1902.ObjectName(oid), value if value is not None else rfc1902.Null(""))
            for oid, value in var_binds
        ]
        indication, status, answer = self._run(self._client.request(self._target.engine, kind, name, vbs))
        if indication:
            raise self._translate(indication)
        if status:
            raise self._refusal(kind, status, var_binds)
        for oid, value in answer:
            if refuse_missing and _missing(value):
                raise self._no_such(str(oid))
        return list(answer)

    def _no_such(self, oid: str) -> DeviceRefused:
        model = self._model.name if self._model else "an unknown model"
        return DeviceRefused(
            f"{self.name}: PDU {self.where} has no object {oid} ({model}): outlet {self.outlet} does not exist "
            "there or the PDU is another model",
            fix="check the outlet number and the model in the inventory (omit the model to detect it)",
        )

    def _run(self, coro: Any) -> Any:
        assert self._client is not None
        try:
            return self._client.run(coro, (self.retries + 1) * self.timeout + 10)
        except TimeoutError as exc:
            raise DeviceUnreachable(
                f"{self.name}: the SNMP client did not finish in time", fix="retry"
            ) from exc
        except PySnmpError as exc:
            raise InternalError(f"{self.name}: SNMP engine error {type(exc).__name__}") from exc

    def _translate(self, indication: Any) -> Exception:
        if isinstance(indication, errind.RequestTimedOut):
            if self.version == "v2c":
                return DeviceUnreachable(
                    f"no answer from PDU {self.where} (outlet {self.outlet}) within {self.timeout:g}s x"
                    f"{self.retries + 1}: PDU down or wrong community",
                    fix=f"check that the PDU is up and reachable on UDP port {self.port} from here, and that the inventory has its "
                    "read-write community (an SNMPv2c agent drops a wrong community without answering)",
                )
            return DeviceUnreachable(
                f"no answer from PDU {self.where} (outlet {self.outlet}) within {self.timeout:g}s x{self.retries + 1}",
                fix=f"check that the PDU is up, reachable on UDP port {self.port} from here, and has SNMPv3 enabled",
            )
        if isinstance(indication, AUTH_FAILURES):
            return DeviceRefused(
                f"PDU {self.where} refused SNMPv3 user {self._credentials[1]!r} for outlet {self.outlet}: {indication}",
                fix="check the v3 user, its auth and priv keys and protocols in the inventory against the PDU's SNMPv3 settings",
            )
        return DeviceUnreachable(
            f"PDU {self.where} (outlet {self.outlet}): SNMP error {indication}", fix="retry; check the PDU"
        )

    def _refusal(self, kind: str, status: int, var_binds: Sequence[tuple[str, Any]]) -> Exception:
        status_name = str(rfc1905.errorStatus.namedValues.getName(status) or status)
        what = ", ".join(oid for oid, _ in var_binds)
        if status_name in ACCESS_DENIED:
            return DeviceRefused(
                f"PDU {self.where} refused to {'write' if kind == 'set' else 'read'} {what} (outlet {self.outlet}): {status_name}",
                fix="give the community or v3 user read-write access to the outlet tables in the PDU's SNMP settings",
            )
        return DeviceRefused(
            f"PDU {self.where} answered {status_name} to {kind} {what} (outlet {self.outlet})",
            fix="check that the model in the inventory is the PDU's model (omit it to detect it from sysObjectID)",
        )


def _judge(seen: PowerState | None, proof: PowerState) -> _Outcome:
    if seen is None:
        return _Outcome.UNKNOWN
    return _Outcome.RAN if seen is proof else _Outcome.DID_NOT_RUN


def _missing(value: Any) -> bool:
    return isinstance(value, (rfc1905.NoSuchObject, rfc1905.NoSuchInstance, rfc1905.EndOfMibView))


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1
