"""The System Event Log of a simulated BMC (IPMI 2.0 section 31): records, reservations, and the requests
Get SEL Info, Reserve SEL, Get SEL Entry and Get SEL Time. Records follow ``remotehands.bmc.ipmi_protocol``.
"""

from __future__ import annotations

import struct
import threading
import time

from remotehands.bmc.ipmi_protocol import SEL_FIRST, SEL_LAST, SelRecord
from remotehands.lab.bmc_sim_boot import Reply

SEL_CAPACITY = 0xFFFE
CC_OK = 0x00
CC_BAD_RESERVATION = 0xC5
CC_BAD_LENGTH = 0xC7
CC_OUT_OF_RANGE = 0xC9
CC_NOT_PRESENT = 0xCB


class SimulatedSel:
    """One BMC's SEL, record ids counting up from 1. Thread-safe; full at ``SEL_CAPACITY`` records."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[SelRecord] = []
        self._reservation = 0
        self._last_add = 0
        self._last_erase = int(time.time())

    def records(self) -> list[SelRecord]:
        """A copy of the records, oldest first."""
        with self._lock:
            return list(self._records)

    def add(self, template: SelRecord) -> None:
        """Append ``template`` with the next record id and the time now (its own id and time are ignored)."""
        with self._lock:
            if len(self._records) >= SEL_CAPACITY:
                return
            now = int(time.time())
            record_id = self._records[-1].record_id + 1 if self._records else 1
            self._records.append(
                SelRecord(
                    record_id,
                    template.record_type,
                    now,
                    sensor_type=template.sensor_type,
                    data1=template.data1,
                    data2=template.data2,
                    data3=template.data3,
                )
            )
            self._last_add = now

    def info(self, data: bytes) -> Reply:
        """Get SEL Info: version 0x51, count, free bytes, last add and erase times, operations supported."""
        with self._lock:
            count = len(self._records)
            free = min((SEL_CAPACITY - count) * 16, 0xFFFF)
            info = struct.pack("<BHHIIB", 0x51, count, free, self._last_add, self._last_erase, 0x02)
        return "sel_info", CC_OK, info

    def reserve(self, data: bytes) -> Reply:
        """Reserve SEL: a new reservation id (1-0xFFFF), which cancels the previous one."""
        with self._lock:
            self._reservation = self._reservation % 0xFFFF + 1
            reservation = self._reservation
        return "sel_reserve", CC_OK, struct.pack("<H", reservation)

    def entry(self, data: bytes) -> Reply:
        """Get SEL Entry: the next record id and the (part of the) record asked for."""
        code, reply = self._entry(data)
        return "sel_entry", code, reply

    def _entry(self, data: bytes) -> tuple[int, bytes]:
        if len(data) < 6:
            return CC_BAD_LENGTH, b""
        reservation, record_id, offset, count = struct.unpack_from("<HHBB", data)
        with self._lock:
            records = list(self._records)
            current_reservation = self._reservation
        if not records:
            return CC_NOT_PRESENT, b""
        if record_id == SEL_FIRST:
            index = 0
        elif record_id == SEL_LAST:
            index = len(records) - 1
        else:
            found = [i for i, r in enumerate(records) if r.record_id == record_id]
            if not found:
                return CC_NOT_PRESENT, b""
            index = found[0]
        if (offset != 0 or count != 0xFF) and reservation != current_reservation:
            return CC_BAD_RESERVATION, b""
        if offset >= 16:
            return CC_OUT_OF_RANGE, b""
        next_id = records[index + 1].record_id if index + 1 < len(records) else SEL_LAST
        body = records[index].pack()[offset : 16 if count == 0xFF else offset + count]
        return CC_OK, struct.pack("<H", next_id) + body

    def time(self, data: bytes) -> Reply:
        """Get SEL Time: the BMC's clock."""
        return "sel_time", CC_OK, struct.pack("<I", int(time.time()))
