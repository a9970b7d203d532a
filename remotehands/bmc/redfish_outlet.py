"""One switched outlet of a rack PDU as a power path, over Redfish's PowerEquipment model (DSP0268 PowerDistribution
and Outlet schemas).

``RedfishOutlet`` implements ``PowerDriver`` and ``OutletIdentity``. The constructor does no I/O; the first
call connects (``redfish_connection``: TLS verified unless told otherwise, a session reused until
``close()``, or a shared ``RedfishSessionPool``'s) and finds the outlet at the URI Redfish 1.6 fixes for it:

    /redfish/v1/PowerEquipment/RackPDUs/{pdu_id}/Outlets/{outlet}

With no ``pdu_id`` the service must list exactly one rack PDU. A status read is one GET of the outlet
(``PowerState``; ``PoweringOn``/``PoweringOff`` read UNKNOWN). On and off are one POST of its
``#Outlet.PowerControl`` action each (``PowerState`` ``On``/``Off``). A cycle is one ``PowerCycle`` when
the action allows it (``PowerState@Redfish.AllowableValues``, else its ``@Redfish.ActionInfo``), else
``Off``, a wait of ``cycle_off_seconds``, and ``On``: an outlet that lists no allowable values is cycled
that way, as ``PowerCycle`` is optional in the schema.

When ``expected_name`` is given, every change reads the outlet first and its ``UserLabel`` or ``Name`` must
be that name (spaces around it ignored), else ``DeviceRefused`` and nothing is sent.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field

from remotehands.bmc.base import PowerAction, PowerState
from remotehands.bmc.redfish_connection import RedfishConnection, Reply
from remotehands.bmc.redfish_models import ActionInfo, Collection
from remotehands.bmc.redfish_pool import RedfishSessionPool
from remotehands.bmc.redfish_replies import check_reply, parse_reply
from remotehands.errors import ActionFailed, DeviceRefused, InternalError

log = logging.getLogger(__name__)

RACK_PDUS = "/redfish/v1/PowerEquipment/RackPDUs"
POWER_STATES = {"On": PowerState.ON, "Off": PowerState.OFF}  # PoweringOn, PoweringOff, ...: UNKNOWN
ASSUMED_POWER_STATES = ("On", "Off")  # when the action lists no allowable values

M = TypeVar("M", bound=BaseModel)


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class PowerControlAction(_Payload):
    target: str
    allowable: list[str] | None = Field(None, alias="PowerState@Redfish.AllowableValues")
    action_info: str | None = Field(None, alias="@Redfish.ActionInfo")


class OutletActions(_Payload):
    power_control: PowerControlAction | None = Field(None, alias="#Outlet.PowerControl")


class OutletPower(_Payload):
    """What a status read parses: the one property it needs."""

    power_state: str | None = Field(None, alias="PowerState")


class Outlet(OutletPower):
    """An ``Outlet``: its names, power state and PowerControl action."""

    id: str | None = Field(None, alias="Id")
    name: str | None = Field(None, alias="Name")
    user_label: str | None = Field(None, alias="UserLabel")
    actions: OutletActions = Field(default_factory=OutletActions, alias="Actions")

    @property
    def label(self) -> str:
        """The name an operator gave the outlet (``UserLabel``), else its ``Name``, else ``""``."""
        return (self.user_label or "").strip() or (self.name or "").strip()


class RedfishOutlet:
    """One outlet of a Redfish rack PDU; implements ``PowerDriver`` and ``OutletIdentity``.

    Calls on one instance are serialised. Every call raises ``DeviceUnreachable`` when the PDU does not
    answer (or answers busy) and ``DeviceRefused`` when it refuses: credentials, TLS, an outlet or PDU it
    does not have, a power state it does not offer, an outlet name that is not ``expected_name``.
    """

    def __init__(
        self,
        address: str,
        port: int,
        username: str,
        password: str,
        *,
        outlet: int | str,
        pdu_id: str | None = None,
        expected_name: str | None = None,
        tls_ca: str | None = None,
        tls_insecure: bool = False,
        timeout: float = 5.0,
        sessions: RedfishSessionPool | None = None,
        scheme: str = "https",
        cycle_off_seconds: float = 5.0,
    ) -> None:
        self.outlet = str(outlet)
        self.pdu_id = pdu_id
        self.expected_name = expected_name
        self.cycle_off_seconds = cycle_off_seconds
        self.name = f"redfish pdu {address}:{port}{f'/{pdu_id}' if pdu_id else ''} outlet {self.outlet}"
        self._owns_connection = sessions is None
        make = RedfishConnection if sessions is None else sessions.connection
        self._connection = make(
            address,
            port,
            username,
            password,
            tls_ca=tls_ca,
            tls_insecure=tls_insecure,
            scheme=scheme,
            timeout=timeout,
        )
        self._lock = threading.RLock()
        self._uri: str | None = None
        self._allowed: frozenset[str] = frozenset(ASSUMED_POWER_STATES)
        self._control_target = ""

    @property
    def device(self) -> str:
        """``address:port`` of the PDU, as every message names it."""
        return self._connection.device

    def __repr__(self) -> str:
        return f"RedfishOutlet({self.name}, user={self._connection.username!r})"

    def __enter__(self) -> RedfishOutlet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- PowerDriver / OutletIdentity ------------------------------------------------------------------------

    def state(self) -> PowerState:
        """The outlet's power: ON, OFF, or UNKNOWN while it changes (one GET; the first call also finds it)."""
        with self._lock:
            if self._uri is None:
                power = self._discover().power_state
            else:
                power = self._read(OutletPower, self._uri, "read the outlet's power state").power_state
        return POWER_STATES.get(power or "", PowerState.UNKNOWN)

    def outlet_name(self) -> str:
        """The outlet's name as the PDU reports it: its ``UserLabel``, else its ``Name``."""
        with self._lock:
            return self._outlet_now("read the outlet's name").label

    def set_state(self, action: PowerAction) -> None:
        """Switch the outlet ON or OFF with one PowerControl, after the outlet-name check when one is expected."""
        if action is PowerAction.CYCLE:
            raise InternalError("RedfishOutlet.set_state takes on or off, not cycle; use cycle()")
        if action is PowerAction.SOFT_OFF:
            raise DeviceRefused(
                f"{self.name}: a PDU outlet cannot soft_off (it cuts the power)",
                fix="use off (a hard power-off) or cycle; a graceful shutdown needs the host's BMC or OS",
            )
        with self._lock:
            self._checked()
            self._control("On" if action is PowerAction.ON else "Off")

    def cycle(self) -> None:
        """Power-cycle the outlet: one ``PowerCycle`` when the PDU offers it, else ``Off``, a wait of
        ``cycle_off_seconds`` and ``On``. Checks the outlet name first when one is expected.

        When the fallback's ``On`` fails, the error says that the outlet was left off.
        """
        with self._lock:
            self._checked()
            if "PowerCycle" in self._allowed:
                self._control("PowerCycle")
                return
            log.info(
                "%s: PowerControl does not offer PowerCycle (it takes %s); cycling as Off, %gs, On",
                self.name,
                ", ".join(sorted(self._allowed)),
                self.cycle_off_seconds,
            )
            self._control("Off")
            time.sleep(self.cycle_off_seconds)
            try:
                self._control("On")
            except ActionFailed as exc:
                raise type(exc)(
                    f"{exc.message}; the outlet was switched off {self.cycle_off_seconds:g}s before and is "
                    "probably still off",
                    fix="switch the outlet on (remotehands power on) or at the PDU"
                    + (f"; {exc.fix}" if exc.fix else ""),
                ) from exc

    def supported(self) -> frozenset[PowerAction]:
        """ON and OFF as the PowerControl action allows them; CYCLE by PowerCycle or by Off then On."""
        with self._lock:
            if self._uri is None:
                self._discover()
            allowed = self._allowed
        found = {
            action for action, value in ((PowerAction.ON, "On"), (PowerAction.OFF, "Off")) if value in allowed
        }
        if "PowerCycle" in allowed or {"On", "Off"} <= allowed:
            found.add(PowerAction.CYCLE)
        return frozenset(found)

    def close(self) -> None:
        """Delete the session and close the connection (best effort; not a pool's); safe to call twice."""
        with self._lock:
            if self._owns_connection:
                self._connection.close()

    # -- finding the outlet ----------------------------------------------------------------------------------

    def _discover(self) -> Outlet:
        """Find the outlet and its PowerControl action; returns the outlet as read now."""
        pdu_uri = f"{RACK_PDUS}/{self.pdu_id}" if self.pdu_id is not None else self._only_pdu()
        uri = f"{pdu_uri}/Outlets/{self.outlet}"
        reply = self._connection.request("GET", uri, "read the outlet")
        if reply.status == 404:
            raise self._no_outlet(pdu_uri)
        outlet = self._parse(Outlet, self._check(reply, "read the outlet"), "read the outlet")
        control = outlet.actions.power_control
        if control is None:
            raise DeviceRefused(
                f"{self.name}: the outlet has no PowerControl action (it is not switched)",
                fix="this outlet only meters power; plug the host into a switched outlet or use another power path",
            )
        allowed = control.allowable
        if allowed is None and control.action_info is not None:
            info = self._read(ActionInfo, control.action_info, "read the PowerControl action's parameters")
            allowed = next((p.allowable for p in info.parameters if p.name == "PowerState"), None)
        self._allowed = frozenset(allowed if allowed is not None else ASSUMED_POWER_STATES)
        self._uri, self._control_target = uri, control.target
        return outlet

    def _only_pdu(self) -> str:
        pdus = self._pdus()
        if len(pdus.members) == 1:
            return pdus.members[0].uri.rstrip("/")
        raise DeviceRefused(
            f"Redfish PDU {self.device} lists {len(pdus.members)} rack PDUs, not one (it has: {_ids(pdus)})",
            fix="set the PDU id (pdu_id) of this outlet in the inventory to one of those ids",
        )

    def _pdus(self) -> Collection:
        reply = self._connection.request("GET", RACK_PDUS, "list the rack PDUs")
        if reply.status == 404:
            raise DeviceRefused(
                f"Redfish service {self.device} has no rack PDUs (no {RACK_PDUS})",
                fix="check that this address is the PDU's management address, or drive the PDU over SNMP",
            )
        return self._parse(Collection, self._check(reply, "list the rack PDUs"), "list the rack PDUs")

    def _no_outlet(self, pdu_uri: str) -> DeviceRefused:
        reply = self._connection.request("GET", f"{pdu_uri}/Outlets", "list the outlets")
        if reply.status == 404:
            return DeviceRefused(
                f"Redfish PDU {self.device} has no rack PDU {self.pdu_id!r} (it has: {_ids(self._pdus())})",
                fix="set the PDU id (pdu_id) of this outlet in the inventory to one of those ids",
            )
        outlets = self._parse(Collection, self._check(reply, "list the outlets"), "list the outlets")
        return DeviceRefused(
            f"{self.name}: the PDU has no outlet {self.outlet!r} (it has: {_ids(outlets)})",
            fix="check the outlet number of this host in the inventory",
        )

    # -- acting ----------------------------------------------------------------------------------------------

    def _outlet_now(self, what: str) -> Outlet:
        if self._uri is None:
            return self._discover()
        return self._read(Outlet, self._uri, what)

    def _checked(self) -> None:
        """Be ready to act: the outlet found, and its name checked against ``expected_name`` (read fresh)."""
        if self.expected_name is None:
            if self._uri is None:
                self._discover()
            return
        outlet = self._outlet_now("check the outlet's name")
        expected = self.expected_name.strip()
        if expected not in {(outlet.user_label or "").strip(), (outlet.name or "").strip()}:
            raise DeviceRefused(
                f"{self.name}: outlet is named {outlet.label!r} on the PDU, the inventory expects "
                f"{self.expected_name!r}; nothing was sent",
                fix="check the cabling and the outlet number, then fix the inventory or the outlet's name on "
                "the PDU",
            )

    def _control(self, power_state: str) -> None:
        if power_state not in self._allowed:
            raise DeviceRefused(
                f"{self.name}: the outlet's PowerControl does not offer {power_state}; it takes "
                f"{', '.join(sorted(self._allowed)) or 'nothing'}",
                fix="use another power path for this host in the inventory",
            )
        what = f"switch the outlet {power_state}"
        self._check(
            self._connection.request("POST", self._control_target, what, {"PowerState": power_state}), what
        )
        log.info("%s: %s sent", self.name, power_state)

    # -- typed requests --------------------------------------------------------------------------------------

    def _read(self, model: type[M], uri: str, what: str) -> M:
        return self._parse(model, self._check(self._connection.request("GET", uri, what), what), what)

    def _parse(self, model: type[M], reply: Reply, what: str) -> M:
        return parse_reply(model, reply, what, device=self.device, role="PDU")

    def _check(self, reply: Reply, what: str) -> Reply:
        return check_reply(reply, what, device=self.device, role="PDU")


def _ids(collection: Collection) -> str:
    """The ids (last URI segments) of a collection's members, for messages."""
    return ", ".join(m.uri.rstrip("/").rsplit("/", 1)[-1] for m in collection.members) or "none"
