"""Switched-PDU models as data: which OIDs switch, read and name an outlet, and what the values mean.

A new PDU model is one ``PduModel`` entry in ``MODELS``; ``remotehands.bmc.pdu`` (the driver) and
``remotehands.lab.pdu_sim`` (the simulator) read nothing else. OID strings are templates filled with
``{outlet}`` (the outlet number), ``{unit}`` (the PDU in a daisy chain or ``pduId``; 1 for a standalone
PDU) and ``{row}`` (a table row found by looking the outlet up, see ``RowLookup``).

Where each entry was checked (MIB text read, not recalled):

- APC rPDU (PowerNet-MIB v4.2.6 text, librenms ``mibs/apc/PowerNet-MIB``): ``rPDU`` = hardware 12 =
  .318.1.1.12; ``rPDUOutletControlOutletCommand`` = rPDUOutletControlEntry 4 under rPDUOutletControl 1,
  {immediateOn(1), immediateOff(2), immediateReboot(3), ...}; ``rPDUOutletStatusOutletName`` /
  ``rPDUOutletStatusOutletState`` = rPDUOutletStatusEntry 2 / 4, state {outletStatusOn(1),
  outletStatusOff(2)}; ``rPDUOutletDevNumCntrlOutlets`` = rPDUOutletDevice 3;
  ``rPDUOutletConfigRebootDuration`` = rPDUOutletConfigEntry 6 (5..60 s). Tables are indexed by the
  outlet number. sysObjectID ``masterSwitchrPDU`` = system(3).masterSwitch(4).5.
- APC rPDU2 (same MIB text): ``rPDU2`` = hardware 26; rPDU2Outlet 9, rPDU2OutletSwitched 2;
  ``rPDU2OutletSwitchedStatusState`` = status entry 5, {off(1), on(2)} -- the reversed enum is the
  *state*; ``rPDU2OutletSwitchedControlCommand`` = control entry 5, {immediateOn(1), immediateOff(2),
  immediateReboot(3), ...} -- the same order as rPDU, NOT reversed (the issue text has it backwards);
  status entry 3 = name, 2 = module (the PDU in a daisy chain), 4 = outlet number;
  ``rPDU2OutletSwitchedConfigRebootDuration`` = config entry 7; ``rPDU2OutletSwitchedTableSize`` =
  rPDU2Outlet 1. These tables have ONE index, a row number over every PDU of a daisy chain, so the
  row of (module, outlet) is looked up, never assumed. sysObjectID ``masterSwitchrPDU2`` = .4.6.
- APC MasterSwitch: ``sPDUOutletCtl`` .318.1.1.4.4.2.1.3 {outletOn(1), outletOff(2), outletReboot(3),
  outletUnknown(4), ...}, reading it returns the state -- checked against the MIB's object page
  (observium PowerNet-MIB); ``sPDUOutletCtlName`` (.4.4.2.1.4), ``sPDUOutletControlTableSize``
  (.4.4.1.0) and ``sPDUOutletRebootDuration`` (.4.5.2.1.5) were checked against an snmpwalk of a real
  AP7900 with the MIB loaded (NUT ``drivers/apc-pdu-mib.c``), not against the MIB text itself.
  sysObjectIDs ``masterSwitchV1``/``V2``/``sPDU`` = .4.1 / .4.2 / .4.7 (MIB text).
- Raritan PX2/PX3 (PDU2-MIB text, librenms ``mibs/raritan/PDU2-MIB``): pdu2 = .13742.6;
  ``switchingOperation`` = outletSwitchControlEntry 2 under control(4).outletControl(1) table 2,
  OutletSwitchingOperationsEnumeration {off(0), on(1), cycle(2)}; ``outletSwitchingState`` = entry 3,
  SensorStateEnumeration {on(7), off(8)}; ``outletName`` = outletConfigurationEntry 3 under
  configuration(3).outlets(5) table 3; ``outletCount`` = unitConfigurationEntry 4 under unit(2) table 2;
  power-off period of a cycle: ``outletPowerCyclingPowerOffPeriod`` (outlet entry 12) or
  ``globalOutletPowerCyclingPowerOffPeriod`` (unit entry 37), whichever applies, 1..3600 s. Tables are
  indexed by pduId.outletId (pduId is 1 on PX2/PX3). sysObjectID prefix .13742.6 (librenms'
  raritan-pdu detection; PX1 with the older PDU-MIB uses .13742.4 and is not covered).

Not in the table on purpose: APC ``masterSwitchrPDUB`` (.4.8, AP7xxxB): which outlet table it serves was
not verified. A PDU reporting it gets the "unknown sysObjectID" error and its fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from remotehands.bmc.base import PowerAction, PowerState
from remotehands.errors import DeviceRefused

SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"
SYS_DESCR = "1.3.6.1.2.1.1.1.0"
SYS_NAME = "1.3.6.1.2.1.1.5.0"

_APC = "1.3.6.1.4.1.318"
_RARITAN = "1.3.6.1.4.1.13742.6"


@dataclass(frozen=True)
class RowLookup:
    """How to find the table row of an outlet when rows are not numbered by outlet (APC rPDU2).

    The driver reads ``module_oid`` and ``number_oid`` at row ``{outlet}`` first (a standalone PDU numbers
    its rows by outlet), and walks both columns when they do not name (unit, outlet).
    """

    module_column: str
    number_column: str


@dataclass(frozen=True)
class PduModel:
    """One PDU model's outlet control, as data. See the module docstring for where each OID comes from."""

    name: str
    vendor: str
    sys_object_ids: tuple[str, ...]  # prefixes; the longest match wins
    sys_descr: str  # what the lab's simulator answers for sysDescr
    command_oid: str  # template of the writable command column
    state_oid: str  # template of the readable state column (may equal command_oid)
    name_oid: str  # template of the outlet's user-defined name
    count_oid: str  # template of the number of switched outlets
    command_values: Mapping[PowerAction, int]  # ON, OFF and, with a native reboot, CYCLE
    state_values: Mapping[int, PowerState]  # what state_oid reads; anything else is UNKNOWN
    cycle_delay_oids: tuple[str, ...] = ()  # off-period of a native cycle, seconds; the smallest applies
    row_lookup: RowLookup | None = None

    @property
    def native_cycle(self) -> bool:
        """True when the model switches an outlet off and on again with one command."""
        return PowerAction.CYCLE in self.command_values

    def state_value(self, state: PowerState) -> int:
        """The raw value ``state_oid`` reads for ``state`` (used by the lab's simulator)."""
        for raw, meaning in self.state_values.items():
            if meaning is state:
                return raw
        raise KeyError(state)


def _frozen(values: Mapping[PowerAction, int]) -> Mapping[PowerAction, int]:
    return MappingProxyType(dict(values))


def _states(values: Mapping[int, PowerState]) -> Mapping[int, PowerState]:
    return MappingProxyType(dict(values))


_RPDU2 = f"{_APC}.1.1.26.9.2"

MODELS: Mapping[str, PduModel] = MappingProxyType(
    {
        model.name: model
        for model in (
            PduModel(
                name="apc-rpdu",
                vendor="APC",
                sys_object_ids=(f"{_APC}.1.3.4.5",),
                sys_descr="APC Web/SNMP Management Card (MB:v3.9.2 PF:v3.7.3 AOS:v3.7.3 APP:v3.7.3)",
                command_oid=f"{_APC}.1.1.12.3.3.1.1.4.{{outlet}}",
                state_oid=f"{_APC}.1.1.12.3.5.1.1.4.{{outlet}}",
                name_oid=f"{_APC}.1.1.12.3.5.1.1.2.{{outlet}}",
                count_oid=f"{_APC}.1.1.12.3.1.3.0",
                command_values=_frozen({PowerAction.ON: 1, PowerAction.OFF: 2, PowerAction.CYCLE: 3}),
                state_values=_states({1: PowerState.ON, 2: PowerState.OFF}),
                cycle_delay_oids=(f"{_APC}.1.1.12.3.4.1.1.6.{{outlet}}",),
            ),
            PduModel(
                name="apc-rpdu2",
                vendor="APC",
                sys_object_ids=(f"{_APC}.1.3.4.6",),
                sys_descr="APC Web/SNMP Management Card (MB:v4.1.0 PF:v6.5.6 PN:apc_hw05_aos_656.bin)",
                command_oid=f"{_RPDU2}.4.1.5.{{row}}",
                state_oid=f"{_RPDU2}.3.1.5.{{row}}",
                name_oid=f"{_RPDU2}.3.1.3.{{row}}",
                count_oid=f"{_APC}.1.1.26.9.1.0",
                command_values=_frozen({PowerAction.ON: 1, PowerAction.OFF: 2, PowerAction.CYCLE: 3}),
                state_values=_states({1: PowerState.OFF, 2: PowerState.ON}),
                cycle_delay_oids=(f"{_RPDU2}.1.1.7.{{row}}",),
                row_lookup=RowLookup(module_column=f"{_RPDU2}.3.1.2", number_column=f"{_RPDU2}.3.1.4"),
            ),
            PduModel(
                name="apc-masterswitch",
                vendor="APC",
                sys_object_ids=(f"{_APC}.1.3.4.1", f"{_APC}.1.3.4.2", f"{_APC}.1.3.4.7"),
                sys_descr="APC MasterSwitch PDU (MB:v2.2 PF:v2.2.0 AOS:v2.2.0)",
                command_oid=f"{_APC}.1.1.4.4.2.1.3.{{outlet}}",
                state_oid=f"{_APC}.1.1.4.4.2.1.3.{{outlet}}",
                name_oid=f"{_APC}.1.1.4.4.2.1.4.{{outlet}}",
                count_oid=f"{_APC}.1.1.4.4.1.0",
                command_values=_frozen({PowerAction.ON: 1, PowerAction.OFF: 2, PowerAction.CYCLE: 3}),
                state_values=_states({1: PowerState.ON, 2: PowerState.OFF}),
                cycle_delay_oids=(f"{_APC}.1.1.4.5.2.1.5.{{outlet}}",),
            ),
            PduModel(
                name="raritan-px",
                vendor="Raritan",
                sys_object_ids=(_RARITAN,),
                sys_descr="Raritan PX3 PDU (PX3-5190R, firmware 3.6.10)",
                command_oid=f"{_RARITAN}.4.1.2.1.2.{{unit}}.{{outlet}}",
                state_oid=f"{_RARITAN}.4.1.2.1.3.{{unit}}.{{outlet}}",
                name_oid=f"{_RARITAN}.3.5.3.1.3.{{unit}}.{{outlet}}",
                count_oid=f"{_RARITAN}.3.2.2.1.4.{{unit}}",
                command_values=_frozen({PowerAction.OFF: 0, PowerAction.ON: 1, PowerAction.CYCLE: 2}),
                state_values=_states({7: PowerState.ON, 8: PowerState.OFF}),
                cycle_delay_oids=(
                    f"{_RARITAN}.3.5.3.1.12.{{unit}}.{{outlet}}",
                    f"{_RARITAN}.3.2.2.1.37.{{unit}}",
                ),
            ),
        )
    }
)

HOW_TO_ADD_A_MODEL = (
    "add a PduModel entry to MODELS in remotehands/bmc/pdu_models.py with the model's sysObjectID prefix, "
    "outlet command/state/name OIDs and value maps (from the vendor's MIB), or name an existing model "
    "in the inventory's power profile"
)


def model_named(name: str) -> PduModel:
    """The model called ``name``; raises ``DeviceRefused`` listing the known names when there is none."""
    try:
        return MODELS[name]
    except KeyError:
        raise DeviceRefused(
            f"unknown PDU model {name!r} (known: {', '.join(sorted(MODELS))})",
            fix=HOW_TO_ADD_A_MODEL,
        ) from None


def model_for_sys_object_id(sys_object_id: str, *, where: str) -> PduModel:
    """The model whose sysObjectID prefix matches, longest prefix first.

    ``where`` names the PDU in the error. Raises ``DeviceRefused`` naming the sysObjectID when no model
    matches.
    """
    oid = sys_object_id.strip().lstrip(".")
    best: tuple[int, PduModel] | None = None
    for model in MODELS.values():
        for prefix in model.sys_object_ids:
            if (oid == prefix or oid.startswith(prefix + ".")) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), model)
    if best is None:
        raise DeviceRefused(
            f"PDU {where} reports sysObjectID {oid}, which matches no known PDU model "
            f"(known: {', '.join(sorted(MODELS))})",
            fix=HOW_TO_ADD_A_MODEL,
        )
    return best[1]


def fill(template: str, *, outlet: int, unit: int = 1, row: int | None = None) -> str:
    """Fill an OID template; ``row`` defaults to the outlet number."""
    return template.format(outlet=outlet, unit=unit, row=outlet if row is None else row)
