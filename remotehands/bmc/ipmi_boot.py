"""IPMI boot flags on the wire: System Boot Options parameter 5, shared by the driver and the lab's BMC.

Set System Boot Options (chassis netfn, command 0x08) takes the parameter selector and the parameter's
data; Get System Boot Options (command 0x09) takes selector, set selector and block selector and answers
the parameter version, the selector byte and the data (IPMI 2.0 section 28.12, table 28-14). Bit 7 of the
selector byte marks the parameter invalid (locked).

The boot flags (parameter 5) are five bytes; only the first two matter to us:

    data 1  bit 7  boot flags valid
            bit 6  0 = apply to the next boot only, 1 = persistent
            bit 5  BIOS boot type: 0 = PC compatible (legacy), 1 = EFI
    data 2  bits 5:2  boot device selector (``BootSelector``)

There is no selector for UEFI HTTP boot: IPMI cannot ask for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from remotehands.bmc.base import BootDevice, BootSetting

PARAM_SET_IN_PROGRESS = 0x00
PARAM_VALID_BIT_CLEARING = 0x03
PARAM_BOOT_INFO_ACK = 0x04
PARAM_BOOT_FLAGS = 0x05
PARAM_INVALID = 0x80  # bit 7 of the selector byte: the parameter is marked invalid / locked
PARAM_VERSION = 0x01
BOOT_FLAGS_LENGTH = 5

FLAG_VALID = 0x80
FLAG_PERSISTENT = 0x40
FLAG_EFI = 0x20
_SELECTOR_SHIFT = 2
_SELECTOR_MASK = 0x0F


class BootSelector(IntEnum):
    """Boot device selector values of boot flags data 2, bits 5:2 (IPMI 2.0 table 28-14)."""

    NONE = 0x0
    PXE = 0x1
    DISK = 0x2
    DISK_SAFE_MODE = 0x3
    DIAGNOSTIC_PARTITION = 0x4
    CD = 0x5
    BIOS_SETUP = 0x6
    REMOTE_FLOPPY = 0x7
    REMOTE_CD = 0x8
    REMOTE_MEDIA = 0x9
    REMOTE_DISK = 0xB
    FLOPPY = 0xF


SELECTOR_FOR_DEVICE = {
    BootDevice.PXE: BootSelector.PXE,
    BootDevice.DISK: BootSelector.DISK,
    BootDevice.CD: BootSelector.CD,
}
_DEVICE_FOR_SELECTOR: dict[int, BootDevice] = {
    BootSelector.PXE: BootDevice.PXE,
    BootSelector.DISK: BootDevice.DISK,
    BootSelector.DISK_SAFE_MODE: BootDevice.DISK,
    BootSelector.REMOTE_DISK: BootDevice.DISK,
    BootSelector.CD: BootDevice.CD,
    BootSelector.REMOTE_CD: BootDevice.CD,
}


@dataclass(frozen=True)
class BootFlags:
    """The five bytes of boot flags, with the bits we use named. ``other`` keeps data 2's other bits and
    data 3-5 as they came (lock-outs, verbosity, console redirection, device instance)."""

    valid: bool
    persistent: bool
    efi: bool
    selector: int
    other: bytes = bytes(4)

    @classmethod
    def for_device(cls, device: BootDevice, *, once: bool, uefi: bool) -> BootFlags:
        """The flags asking for ``device``; raises ``KeyError`` for a device IPMI has no selector for (HTTP)."""
        return cls(valid=True, persistent=not once, efi=uefi, selector=SELECTOR_FOR_DEVICE[device])

    @classmethod
    def unpack(cls, data: bytes) -> BootFlags:
        """Parse the five data bytes; raises ``ValueError`` when there are fewer."""
        if len(data) < BOOT_FLAGS_LENGTH:
            raise ValueError(f"boot flags have {BOOT_FLAGS_LENGTH} bytes, got {len(data)}")
        first, second = data[0], data[1]
        return cls(
            valid=bool(first & FLAG_VALID),
            persistent=bool(first & FLAG_PERSISTENT),
            efi=bool(first & FLAG_EFI),
            selector=(second >> _SELECTOR_SHIFT) & _SELECTOR_MASK,
            other=bytes([second & ~(_SELECTOR_MASK << _SELECTOR_SHIFT) & 0xFF]) + bytes(data[2:5]),
        )

    def pack(self) -> bytes:
        """The five wire bytes."""
        first = (
            (FLAG_VALID if self.valid else 0)
            | (FLAG_PERSISTENT if self.persistent else 0)
            | (FLAG_EFI if self.efi else 0)
        )
        second = self.other[0] | ((self.selector & _SELECTOR_MASK) << _SELECTOR_SHIFT)
        return bytes([first, second]) + bytes(self.other[1:4])

    @property
    def selector_name(self) -> str:
        """The selector's name in lower case (``pxe``, ``bios_setup``), or ``0x..`` for a reserved value."""
        try:
            return BootSelector(self.selector).name.lower()
        except ValueError:
            return f"0x{self.selector:X}"

    def setting(self) -> BootSetting:
        """What the flags ask for, in our terms. No override (device None) when the flags are not valid or
        select no device; a selector we have no name for (BIOS setup, floppy, ...) also reads as None."""
        if not self.valid or self.selector == BootSelector.NONE:
            return BootSetting(device=None, once=False, uefi=self.efi)
        device = _DEVICE_FOR_SELECTOR.get(self.selector)
        return BootSetting(device=device, once=not self.persistent, uefi=self.efi)


def set_request(flags: BootFlags) -> bytes:
    """The data of a Set System Boot Options request that writes ``flags`` (parameter marked valid)."""
    return bytes([PARAM_BOOT_FLAGS]) + flags.pack()


def get_request() -> bytes:
    """The data of a Get System Boot Options request for the boot flags (set and block selector 0)."""
    return bytes([PARAM_BOOT_FLAGS, 0x00, 0x00])


def parse_get_response(data: bytes) -> BootFlags | None:
    """The boot flags of a Get System Boot Options answer; None when the parameter is marked invalid.

    Raises ``ValueError`` when the answer is too short or is about another parameter.
    """
    if len(data) < 2 + BOOT_FLAGS_LENGTH:
        raise ValueError(f"the answer has {len(data)} bytes, expected {2 + BOOT_FLAGS_LENGTH}")
    if data[1] & ~PARAM_INVALID != PARAM_BOOT_FLAGS:
        raise ValueError(f"the answer is about parameter {data[1] & ~PARAM_INVALID}, not {PARAM_BOOT_FLAGS}")
    if data[1] & PARAM_INVALID:
        return None
    return BootFlags.unpack(bytes(data[2 : 2 + BOOT_FLAGS_LENGTH]))
