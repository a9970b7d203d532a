"""Rack PDUs of the lab's Redfish service, in DMTF's PowerEquipment model (PowerDistribution and Outlet schemas).

    /redfish/v1/PowerEquipment                            links to the RackPDUs collection
    /redfish/v1/PowerEquipment/RackPDUs                   the PDUs; ids are the names given to the lab
    /redfish/v1/PowerEquipment/RackPDUs/{id}              a PowerDistribution (EquipmentType RackPDU)
    /redfish/v1/PowerEquipment/RackPDUs/{id}/Outlets      its outlets, numbered 1..N
    /redfish/v1/PowerEquipment/RackPDUs/{id}/Outlets/{n}  an Outlet: Name "Outlet n", UserLabel the name
        given to the lab, PowerState, PowerCycleDelaySeconds, and the ``#Outlet.PowerControl`` action
    POST .../Outlets/{n}/Actions/Outlet.PowerControl      {"PowerState": "On" | "Off" | "PowerCycle"}

Outlets start on. A ``PowerCycle`` reads ``Off`` at once and ``On`` after ``cycle_delay``; an outlet that
is off is switched on after the same delay. ``PduOptions(power_cycle=False)`` leaves ``PowerCycle`` out of
``PowerState@Redfish.AllowableValues`` and refuses it (400 ``ActionParameterNotSupported``), as PDUs
without a native reboot do. Every PowerControl is a command-log line with ``bmc`` = the PDU id, an
``outlet`` field, the ``power_state`` asked for and the HTTP ``status`` answered, e.g.
``{"bmc": "pdu-r1-b", "command": "outlet_power_cycle", "outlet": "2", "power_state": "PowerCycle", "status": 204}``;
an outlet GET is an ``outlet_get`` line.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from remotehands.lab.redfish_sim_http import Answer
from remotehands.lab.redfish_sim_system import RedfishFault, base_fault

ROOT = "/redfish/v1/PowerEquipment"
RACK_PDUS = f"{ROOT}/RackPDUs"
COMMAND_FOR_POWER_STATE = {"On": "outlet_on", "Off": "outlet_off", "PowerCycle": "outlet_power_cycle"}

LogLine = Callable[..., None]  # log(pdu_id, command, **fields)


@dataclass(frozen=True)
class PduOptions:
    """What one simulated PDU offers."""

    power_cycle: bool = True  # False: PowerControl takes On and Off only


class SimulatedOutlet:
    """One outlet. Power is a timeline evaluated when read (no timer threads), as in ``redfish_sim_system``."""

    def __init__(self, number: int, label: str, cycle_delay: float) -> None:
        self.id = str(number)
        self.label = label
        self.cycle_delay = cycle_delay
        self._lock = threading.Lock()
        self._timeline: list[tuple[float, str]] = [(0.0, "On")]

    def power_state(self) -> str:
        """``On`` or ``Off`` as a GET reads now."""
        with self._lock:
            now = time.monotonic()
            while len(self._timeline) > 1 and self._timeline[1][0] <= now:
                self._timeline.pop(0)
            return self._timeline[0][1]

    def control(self, power_state: str) -> None:
        """Carry out a PowerControl that was checked against the allowable values."""
        with self._lock:
            now = time.monotonic()
            if power_state == "PowerCycle":
                self._timeline = [(now, "Off"), (now + self.cycle_delay, "On")]
            else:
                self._timeline = [(now, power_state)]


class SimulatedPdu:
    """One rack PDU with outlets named by ``outlet_names`` (outlet 1 first). Thread-safe."""

    def __init__(
        self, pdu_id: str, outlet_names: list[str], *, cycle_delay: float, options: PduOptions | None = None
    ) -> None:
        self.id = pdu_id
        self.options = options or PduOptions()
        self.outlets = {
            str(n): SimulatedOutlet(n, label, cycle_delay) for n, label in enumerate(outlet_names, start=1)
        }

    @property
    def uri(self) -> str:
        return f"{RACK_PDUS}/{self.id}"

    def configure(self, **changes: Any) -> None:
        """Change options from now on, e.g. ``configure(power_cycle=False)``."""
        self.options = replace(self.options, **changes)

    def allowable(self) -> list[str]:
        """The ``PowerState`` values PowerControl takes."""
        return ["On", "Off", "PowerCycle"] if self.options.power_cycle else ["On", "Off"]

    def payload(self) -> dict[str, Any]:
        """The PowerDistribution resource."""
        return {
            "@odata.id": self.uri,
            "@odata.type": "#PowerDistribution.v1_3_0.PowerDistribution",
            "Id": self.id,
            "Name": f"Rack PDU {self.id}",
            "EquipmentType": "RackPDU",
            "Manufacturer": "remotehands lab",
            "Status": {"State": "Enabled", "Health": "OK"},
            "Outlets": {"@odata.id": f"{self.uri}/Outlets"},
        }

    def outlets_payload(self) -> dict[str, Any]:
        members = [{"@odata.id": f"{self.uri}/Outlets/{n}"} for n in self.outlets]
        return {
            "@odata.id": f"{self.uri}/Outlets",
            "@odata.type": "#OutletCollection.OutletCollection",
            "Name": "Outlets",
            "Members@odata.count": len(members),
            "Members": members,
        }

    def outlet_payload(self, outlet: SimulatedOutlet) -> dict[str, Any]:
        uri = f"{self.uri}/Outlets/{outlet.id}"
        state = outlet.power_state()
        return {
            "@odata.id": uri,
            "@odata.type": "#Outlet.v1_4_3.Outlet",
            "Id": outlet.id,
            "Name": f"Outlet {outlet.id}",
            "UserLabel": outlet.label,
            "PowerState": state,
            "PowerEnabled": True,
            "PowerCycleDelaySeconds": outlet.cycle_delay,
            "Status": {"State": "Enabled" if state == "On" else "StandbyOffline", "Health": "OK"},
            "Actions": {
                "#Outlet.PowerControl": {
                    "target": f"{uri}/Actions/Outlet.PowerControl",
                    "PowerState@Redfish.AllowableValues": self.allowable(),
                }
            },
        }

    def control(self, outlet: SimulatedOutlet, body: dict[str, Any]) -> str:
        """Carry out a PowerControl; returns the ``PowerState`` asked for. Raises ``RedfishFault``."""
        power_state = body.get("PowerState")
        if power_state is None:
            raise base_fault(
                400, "ActionParameterMissing", "The action PowerControl requires the parameter PowerState."
            )
        if power_state not in self.allowable():
            raise base_fault(
                400,
                "ActionParameterNotSupported",
                f"The parameter PowerState with the value {power_state} is not supported by this outlet.",
            )
        outlet.control(str(power_state))
        return str(power_state)


class PowerEquipment:
    """Answers the requests under ``/redfish/v1/PowerEquipment`` for the lab's PDUs; ``log`` writes lines."""

    def __init__(self, pdus: dict[str, SimulatedPdu], log: LogLine) -> None:
        self.pdus = pdus
        self._log = log

    def answer(self, method: str, rest: list[str], body: dict[str, Any], auth: str) -> Answer:
        """Route one request; ``rest`` is the path after ``PowerEquipment``. Raises ``RedfishFault``."""
        if not rest:
            _only(method, "GET")
            return 200, self._root(), {}
        if rest == ["RackPDUs"]:
            _only(method, "GET")
            members = [{"@odata.id": pdu.uri} for pdu in self.pdus.values()]
            return (
                200,
                {
                    "@odata.id": RACK_PDUS,
                    "@odata.type": "#PowerDistributionCollection.PowerDistributionCollection",
                    "Name": "Rack PDUs",
                    "Members@odata.count": len(members),
                    "Members": members,
                },
                {},
            )
        pdu = self.pdus.get(rest[1]) if rest[0] == "RackPDUs" and len(rest) > 1 else None
        if pdu is None:
            raise _missing(f"{ROOT}/{'/'.join(rest)}")
        below = rest[2:]
        if not below:
            _only(method, "GET")
            return 200, pdu.payload(), {}
        if below == ["Outlets"]:
            _only(method, "GET")
            return 200, pdu.outlets_payload(), {}
        outlet = pdu.outlets.get(below[1]) if below[0] == "Outlets" and len(below) > 1 else None
        if outlet is None:
            raise _missing(f"{pdu.uri}/{'/'.join(below)}")
        if len(below) == 2:
            _only(method, "GET")
            payload = pdu.outlet_payload(outlet)
            self._log(pdu.id, "outlet_get", outlet=outlet.id, power_state=payload["PowerState"], auth=auth)
            return 200, payload, {}
        if below[2:] != ["Actions", "Outlet.PowerControl"]:
            raise _missing(f"{pdu.uri}/{'/'.join(below)}")
        _only(method, "POST")
        asked = str(body.get("PowerState"))
        command = COMMAND_FOR_POWER_STATE.get(asked, "outlet_power_control")
        try:
            pdu.control(outlet, body)
        except RedfishFault as fault:
            self._log(
                pdu.id,
                command,
                outlet=outlet.id,
                power_state=asked,
                status=fault.status,
                error=fault.message_id,
                auth=auth,
            )
            raise
        self._log(pdu.id, command, outlet=outlet.id, power_state=asked, status=204, auth=auth)
        return 204, None, {}

    def _root(self) -> dict[str, Any]:
        return {
            "@odata.id": ROOT,
            "@odata.type": "#PowerEquipment.v1_2_0.PowerEquipment",
            "Id": "PowerEquipment",
            "Name": "Power Equipment",
            "Status": {"State": "Enabled", "Health": "OK"},
            "RackPDUs": {"@odata.id": RACK_PDUS},
        }


def _missing(uri: str) -> RedfishFault:
    return base_fault(404, "ResourceMissingAtURI", f"The resource at the URI {uri} was not found.")


def _only(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise base_fault(
            405, "OperationNotAllowed", f"{method} is not allowed here; use {', '.join(allowed)}."
        )


def make_pdus(
    pdus: dict[str, list[str]], *, cycle_delay: float, options: dict[str, PduOptions] | None = None
) -> dict[str, SimulatedPdu]:
    """The simulated PDUs for ``serve_redfish(pdus=...)``: PDU id -> outlet names (outlet 1 first)."""
    return {
        pdu_id: SimulatedPdu(pdu_id, names, cycle_delay=cycle_delay, options=(options or {}).get(pdu_id))
        for pdu_id, names in pdus.items()
    }
