"""The System Boot Options a simulated BMC keeps for its host (IPMI 2.0 section 28.12).

Parameters 0 (set in progress), 3 (boot flag valid bit clearing), 4 (boot info acknowledge) and 5 (the
boot flags) can be written and read back; others are answered 0x80 "parameter not supported". Like a real
BMC, the simulator keeps the boot flags as written (all five bytes) and clears the valid bit when the host
boots, unless the flags are persistent. It does not clear them 60 s after they were set, as the
specification asks of BMCs whose host is not restarted in time: the lab's clocks are seconds.
"""

from __future__ import annotations

import threading

from remotehands.bmc.ipmi_boot import (
    BOOT_FLAGS_LENGTH,
    FLAG_PERSISTENT,
    FLAG_VALID,
    PARAM_BOOT_FLAGS,
    PARAM_BOOT_INFO_ACK,
    PARAM_INVALID,
    PARAM_SET_IN_PROGRESS,
    PARAM_VALID_BIT_CLEARING,
    PARAM_VERSION,
    BootFlags,
)

Reply = tuple[str, int, bytes]  # (command name for the log, completion code, response data)
LogFields = dict[str, object]

CC_OK = 0x00
CC_PARAMETER_NOT_SUPPORTED = 0x80
CC_BAD_LENGTH = 0xC7
_LENGTHS = {PARAM_SET_IN_PROGRESS: 1, PARAM_VALID_BIT_CLEARING: 1, PARAM_BOOT_INFO_ACK: 2}


class SimulatedBootOptions:
    """One BMC's boot options. Thread-safe. ``set``/``get`` answer the IPMI requests; ``booted`` is called
    when the host boots (power on, cycle, reset)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flags = bytes(BOOT_FLAGS_LENGTH)
        self._flags_locked = False
        self._params = {PARAM_SET_IN_PROGRESS: b"\x00", PARAM_VALID_BIT_CLEARING: b"\x00"}
        self._ack = 0x00

    @property
    def flags(self) -> BootFlags:
        """The boot flags as they are now."""
        with self._lock:
            return BootFlags.unpack(self._flags)

    def booted(self) -> None:
        """The host boots: flags for the next boot only are used up (their valid bit cleared)."""
        with self._lock:
            if self._flags[0] & FLAG_VALID and not self._flags[0] & FLAG_PERSISTENT:
                self._flags = bytes([self._flags[0] & ~FLAG_VALID & 0xFF]) + self._flags[1:]

    def set(self, data: bytes) -> tuple[Reply, LogFields]:
        """Answer Set System Boot Options; returns the reply and the fields of its log line."""
        if not data:
            return ("set_boot_option", CC_BAD_LENGTH, b""), {}
        param, body = data[0] & ~PARAM_INVALID & 0xFF, bytes(data[1:])
        if param == PARAM_BOOT_FLAGS:
            if len(body) != BOOT_FLAGS_LENGTH:
                return ("boot_override", CC_BAD_LENGTH, b""), {"length": len(body)}
            flags = BootFlags.unpack(body)
            with self._lock:
                self._flags, self._flags_locked = body, bool(data[0] & PARAM_INVALID)
            fields: LogFields = {
                "device": flags.selector_name,
                "valid": flags.valid,
                "persistent": flags.persistent,
                "efi": flags.efi,
            }
            return ("boot_override", CC_OK, b""), fields
        expected = _LENGTHS.get(param)
        if expected is None:
            return ("set_boot_option", CC_PARAMETER_NOT_SUPPORTED, b""), {"param": param}
        if len(body) != expected:
            return ("set_boot_option", CC_BAD_LENGTH, b""), {"param": param}
        with self._lock:
            if param == PARAM_BOOT_INFO_ACK:  # byte 1: which bits to write; byte 2: their values
                self._ack = (self._ack & ~body[0] | body[1] & body[0]) & 0xFF
            else:
                self._params[param] = body
        return ("set_boot_option", CC_OK, b""), {"param": param}

    def get(self, data: bytes) -> tuple[Reply, LogFields]:
        """Answer Get System Boot Options (version, selector byte, parameter data)."""
        if not data:
            return ("get_boot_option", CC_BAD_LENGTH, b""), {}
        param = data[0] & 0x7F
        with self._lock:
            if param == PARAM_BOOT_FLAGS:
                selector = param | (PARAM_INVALID if self._flags_locked else 0)
                body = self._flags
            elif param == PARAM_BOOT_INFO_ACK:
                selector, body = param, bytes([0x00, self._ack])
            elif param in self._params:
                selector, body = param, self._params[param]
            else:
                return ("get_boot_option", CC_PARAMETER_NOT_SUPPORTED, b""), {"param": param}
        return ("get_boot_option", CC_OK, bytes([PARAM_VERSION, selector]) + body), {"param": param}
