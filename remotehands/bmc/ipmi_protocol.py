"""IPMI on the wire: the network functions, commands and completion codes we use, and the SEL record.

Shared by the driver (``remotehands.bmc.ipmi``) and the lab's simulated BMC, so both speak one format.
The power-event convention of SEL records is described in ``remotehands.bmc.ipmi``'s docstring.
"""

from __future__ import annotations

import struct
from dataclasses import astuple, dataclass

from remotehands.bmc.base import PowerAction

# IPMI network functions and commands (IPMI 2.0 tables 28-*, 31-*).
NETFN_CHASSIS = 0x00
CMD_GET_CHASSIS_STATUS = 0x01
CMD_CHASSIS_CONTROL = 0x02
CMD_CHASSIS_IDENTIFY = 0x04
CMD_SET_SYSTEM_BOOT_OPTIONS = 0x08  # parameters: remotehands.bmc.ipmi_boot
CMD_GET_SYSTEM_BOOT_OPTIONS = 0x09
NETFN_STORAGE = 0x0A
CMD_GET_SEL_INFO = 0x40
CMD_RESERVE_SEL = 0x42
CMD_GET_SEL_ENTRY = 0x43
CMD_GET_SEL_TIME = 0x48

CONTROL_OFF = 0x00
CONTROL_ON = 0x01
CONTROL_CYCLE = 0x02
CONTROL_SOFT_OFF = 0x05

SEL_FIRST = 0x0000
SEL_LAST = 0xFFFF
CC_NOT_PRESENT = 0xCB  # "requested sensor, data, or record not present": an empty SEL
CC_NOT_IN_PRESENT_STATE = 0xD5  # e.g. a power cycle of a host that is off (IPMI 2.0 section 28.3)
# Completion codes that say "busy, try again" rather than "no".
TRANSIENT_CODES = frozenset({0xC0, 0xC3, 0xCE, 0xD2})

RECORD_SYSTEM_EVENT = 0x02
SENSOR_POWER_UNIT = 0x09
SENSOR_SYSTEM_BOOT = 0x1D
EVENT_TYPE_SENSOR_SPECIFIC = 0x6F
OFFSET_POWER_OFF = 0x00
OFFSET_POWER_CYCLE = 0x01
OFFSET_BOOT_POWER_UP = 0x00
SOFT_OFF_DATA2 = 0x01
DATA1_OEM_DATA2 = 0b10 << 6

_RECORD_FORMAT = "<HBIHBBBBBBB"
_RECORD_FOR_ACTION = {  # action: (sensor type, event data 1, event data 2)
    PowerAction.ON: (SENSOR_SYSTEM_BOOT, OFFSET_BOOT_POWER_UP, 0xFF),
    PowerAction.OFF: (SENSOR_POWER_UNIT, OFFSET_POWER_OFF, 0xFF),
    PowerAction.CYCLE: (SENSOR_POWER_UNIT, OFFSET_POWER_CYCLE, 0xFF),
    PowerAction.SOFT_OFF: (SENSOR_POWER_UNIT, DATA1_OEM_DATA2 | OFFSET_POWER_OFF, SOFT_OFF_DATA2),
}


@dataclass(frozen=True)
class SelRecord:
    """One 16-byte SEL record (IPMI 2.0 table 32-1). Fields past ``timestamp`` mean something only for
    system event records (type 0x02); OEM records keep their bytes there."""

    record_id: int
    record_type: int
    timestamp: int
    generator_id: int = 0x0020  # the BMC
    evm_revision: int = 0x04
    sensor_type: int = 0
    sensor_number: int = 0
    event_dir_type: int = EVENT_TYPE_SENSOR_SPECIFIC  # bit 7: 1 = deassertion; bits 6:0 event type
    data1: int = 0
    data2: int = 0xFF
    data3: int = 0xFF

    @classmethod
    def for_action(cls, record_id: int, action: PowerAction, timestamp: int) -> SelRecord:
        """The system event record that stands for ``action`` in the convention of this module."""
        sensor_type, data1, data2 = _RECORD_FOR_ACTION[action]
        return cls(
            record_id, RECORD_SYSTEM_EVENT, timestamp, sensor_type=sensor_type, data1=data1, data2=data2
        )

    @classmethod
    def unpack(cls, raw: bytes) -> SelRecord:
        """Parse the 16 bytes of a SEL record; raises ``ValueError`` when there are fewer."""
        if len(raw) < 16:
            raise ValueError(f"a SEL record has 16 bytes, got {len(raw)}")
        return cls(*struct.unpack_from(_RECORD_FORMAT, raw))

    def pack(self) -> bytes:
        """The 16 wire bytes of this record."""
        return struct.pack(_RECORD_FORMAT, *astuple(self))

    @property
    def action(self) -> PowerAction | None:
        """The power action this record stands for, or None when it is some other event."""
        if self.record_type != RECORD_SYSTEM_EVENT or self.event_dir_type != EVENT_TYPE_SENSOR_SPECIFIC:
            return None
        offset = self.data1 & 0x0F
        if self.sensor_type == SENSOR_SYSTEM_BOOT and offset == OFFSET_BOOT_POWER_UP:
            return PowerAction.ON
        if self.sensor_type != SENSOR_POWER_UNIT:
            return None
        if offset == OFFSET_POWER_CYCLE:
            return PowerAction.CYCLE
        if offset == OFFSET_POWER_OFF:
            oem_data2 = self.data1 & 0xC0 == DATA1_OEM_DATA2
            return PowerAction.SOFT_OFF if oem_data2 and self.data2 == SOFT_OFF_DATA2 else PowerAction.OFF
        return None

    def as_dict(self) -> dict[str, object]:
        """A JSON-friendly view for job logs."""
        return {
            "record_id": self.record_id,
            "type": f"0x{self.record_type:02X}",
            "timestamp": self.timestamp,
            "sensor_type": f"0x{self.sensor_type:02X}",
            "event": f"0x{self.data1 & 0x0F:02X}",
            "data": f"{self.data1:02X}{self.data2:02X}{self.data3:02X}",
            "action": self.action.value if self.action else None,
        }
