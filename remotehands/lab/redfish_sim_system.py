"""One simulated Redfish computer system of the lab: power, boot override, a virtual CD, and switchable quirks.

Power is a timeline of ``PowerState`` readings, evaluated when read (no timer threads): an action replaces
the future of the timeline. A power cycle (``PowerCycle``, ``ForceRestart``, ``GracefulRestart``) reads
``Off`` at once, ``PoweringOn`` for the last quarter of ``cycle_delay``, then ``On``; ``GracefulShutdown``
reads ``PoweringOff`` for ``soft_off_delay``, then ``Off``. A boot override set ``Once`` is used up by the
next power-on or restart, as on real BMCs.

Quirks (``SystemOptions``), each one of a real BMC family, switched per system by tests:

- ``on_conflict_window``: ``On`` within that many seconds of an off answers 409 with Base
  ``ActionParameterValueConflict`` (BMCs still finishing the off);
- ``post_busy_patches``: the next N boot-override PATCHes answer 400 ``UnableToModifyDuringSystemPOST``
  (HPE iLO while the host is in POST);
- ``transitional_window``/``transitional_value``: after a cycle, ``PowerState`` reads that value (null,
  ``Unknown``, ``Reset``) for that long before ``Off``;
- ``already_off_error``: ``ForceOff``/``GracefulShutdown`` of an off host answers 409 "Server is already
  powered OFF." (Dell iDRAC, message id ``PSU501``);
- ``eject_needs_off``: ejecting the virtual CD of a host that is not off answers 409 ``ResourceInUse``
  (BMCs that hold the media while the host has it mounted).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

RESET_TYPES = (
    "On",
    "ForceOff",
    "GracefulShutdown",
    "GracefulRestart",
    "ForceRestart",
    "Nmi",
    "ForceOn",
    "PushPowerButton",
    "PowerCycle",
)
BOOT_TARGETS = ("None", "Pxe", "Cd", "Hdd", "UefiHttp", "BiosSetup", "Usb")
BOOT_MODES = ("UEFI", "Legacy")
BOOT_ENABLED = ("Disabled", "Once", "Continuous")

COMMAND_FOR_RESET = {
    "On": "power_on",
    "ForceOn": "power_on",
    "ForceOff": "power_off",
    "GracefulShutdown": "soft_off",
    "PowerCycle": "cycle",
    "ForceRestart": "force_restart",
    "GracefulRestart": "graceful_restart",
    "Nmi": "nmi",
    "PushPowerButton": "push_power_button",
}
_RESTARTS = ("PowerCycle", "ForceRestart", "GracefulRestart")
_BASE = "Base.1.16."


@dataclass(frozen=True)
class SystemOptions:
    """What one simulated system offers, and which quirks it shows (see the module docstring)."""

    reset_types: tuple[str, ...] = RESET_TYPES
    boot_modes: tuple[str, ...] | None = BOOT_MODES  # None: Boot lists no BootSourceOverrideMode
    vmedia_actions: bool = True  # False: the CD takes PATCH only (no InsertMedia/EjectMedia)
    on_conflict_window: float = 0.0
    post_busy_patches: int = 0
    transitional_window: float = 0.0
    transitional_value: str | None = None
    already_off_error: bool = False
    eject_needs_off: bool = False  # the virtual CD is ejected only with the host off (409 otherwise)


class RedfishFault(Exception):
    """An error answer: HTTP ``status`` with one Redfish message (``message_id`` in full, e.g. Base.1.16.X)."""

    def __init__(self, status: int, message_id: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message_id = message_id
        self.message = message

    def body(self) -> dict[str, Any]:
        """The Redfish error payload (DSP0266 9.6)."""
        return {
            "error": {
                "code": f"{_BASE}GeneralError",
                "message": "A general error has occurred. See ExtendedInfo for more information.",
                "@Message.ExtendedInfo": [
                    {
                        "@odata.type": "#Message.v1_1_1.Message",
                        "MessageId": self.message_id,
                        "Message": self.message,
                        "Severity": "Warning",
                    }
                ],
            }
        }


def base_fault(status: int, key: str, message: str) -> RedfishFault:
    """A fault with a message of DMTF's Base registry."""
    return RedfishFault(status, f"{_BASE}{key}", message)


class SimulatedSystem:
    """One system (and its manager, same id) of the Redfish lab. Thread-safe; times are ``time.monotonic``."""

    def __init__(
        self,
        system_id: str,
        *,
        cycle_delay: float,
        soft_off_delay: float = 0.3,
        powered_on: bool = True,
        options: SystemOptions | None = None,
    ) -> None:
        self.id = system_id
        self.cycle_delay = cycle_delay
        self.soft_off_delay = soft_off_delay
        self.options = options or SystemOptions()
        self._lock = threading.Lock()
        self._timeline: list[tuple[float, str | None]] = [(0.0, "On" if powered_on else "Off")]
        self._last_off = -1e9
        self._busy_patches = self.options.post_busy_patches
        self._boot = {"target": "None", "enabled": "Disabled", "mode": "UEFI"}
        self._image: str | None = None
        # Called as on_boot(target, image) after the system boots (power on, restart): the override target
        # (``Pxe``, ``Cd``, ...) or ``Hdd`` without one, and the virtual CD's image. Must not block.
        self.on_boot: Callable[[str, str | None], None] | None = None

    @property
    def uri(self) -> str:
        """The system's URI."""
        return f"/redfish/v1/Systems/{self.id}"

    @property
    def manager_uri(self) -> str:
        """The URI of the system's manager (its BMC), which has the same id."""
        return f"/redfish/v1/Managers/{self.id}"

    def configure(self, **changes: Any) -> None:
        """Change options (quirks) from now on, e.g. ``configure(post_busy_patches=2)``."""
        with self._lock:
            self.options = replace(self.options, **changes)
            if "post_busy_patches" in changes:
                self._busy_patches = self.options.post_busy_patches

    # -- power ---------------------------------------------------------------------------------------------

    def power_state(self) -> str | None:
        """The ``PowerState`` a GET reads now."""
        with self._lock:
            return self._reading(time.monotonic())

    def _reading(self, now: float) -> str | None:
        while len(self._timeline) > 1 and self._timeline[1][0] <= now:
            self._timeline.pop(0)
        return self._timeline[0][1]

    def _schedule(self, now: float, *steps: tuple[float, str | None]) -> None:
        self._timeline = [(now + delay, value) for delay, value in steps]

    def reset(self, reset_type: str) -> None:
        """Carry out one ``ComputerSystem.Reset``; raises ``RedfishFault`` for what the system refuses."""
        if reset_type not in self.options.reset_types:
            raise base_fault(
                400,
                "ActionParameterNotSupported",
                f"The parameter ResetType with the value {reset_type} is not supported by this system.",
            )
        with self._lock:
            now = time.monotonic()
            current = self._reading(now)
            if reset_type in ("On", "ForceOn"):
                if now - self._last_off < self.options.on_conflict_window:
                    raise base_fault(
                        409,
                        "ActionParameterValueConflict",
                        f"The value '{reset_type}' for the parameter 'ResetType' conflicts with the current "
                        "state of the resource.",
                    )
                if current != "On":
                    self._schedule(now, (0.0, "On"))
                    self._use_boot_once()
            elif reset_type in ("ForceOff", "GracefulShutdown"):
                if current == "Off" and self.options.already_off_error:
                    raise RedfishFault(409, "IDRAC.2.8.PSU501", "Server is already powered OFF.")
                self._last_off = now
                if reset_type == "ForceOff":
                    self._schedule(now, (0.0, "Off"))
                elif current != "Off":
                    self._schedule(now, (0.0, "PoweringOff"), (self.soft_off_delay, "Off"))
            elif reset_type in _RESTARTS:
                self._cycle(now)
            elif reset_type == "PushPowerButton":
                if current == "On":
                    self._last_off = now
                    self._schedule(now, (0.0, "PoweringOff"), (self.soft_off_delay, "Off"))
                else:
                    self._schedule(now, (0.0, "On"))
                    self._use_boot_once()
            # Nmi: a diagnostic interrupt, the power stays as it is.

    def _cycle(self, now: float) -> None:
        window = self.options.transitional_window
        steps: list[tuple[float, str | None]] = []
        if window > 0:
            steps.append((0.0, self.options.transitional_value))
        steps += [
            (window, "Off"),
            (window + self.cycle_delay * 0.75, "PoweringOn"),
            (window + self.cycle_delay, "On"),
        ]
        self._schedule(now, *steps)
        self._use_boot_once()

    def _use_boot_once(self) -> None:
        target = self._boot["target"] if self._boot["enabled"] != "Disabled" else "Hdd"
        if self.on_boot is not None:
            hook, image = self.on_boot, self._image
            threading.Thread(target=hook, args=(target, image), daemon=True).start()
        if self._boot["enabled"] == "Once":
            self._boot["enabled"], self._boot["target"] = "Disabled", "None"

    # -- boot override -------------------------------------------------------------------------------------

    def patch(self, body: dict[str, Any]) -> dict[str, Any]:
        """Apply a PATCH of the system (``Boot`` only); returns what was set, for the command log."""
        boot = body.get("Boot")
        unknown = sorted(set(body) - {"Boot"})
        if unknown or not isinstance(boot, dict) or not boot:
            raise base_fault(
                400, "PropertyNotWritable", f"The properties {unknown or ['Boot']} cannot be written here."
            )
        allowed = {
            "BootSourceOverrideTarget": ("target", BOOT_TARGETS),
            "BootSourceOverrideEnabled": ("enabled", BOOT_ENABLED),
            "BootSourceOverrideMode": ("mode", self.options.boot_modes),
        }
        changes: dict[str, str] = {}
        for name, value in boot.items():
            key, values = allowed.get(name, ("", None))
            if values is None:
                raise base_fault(
                    400, "PropertyUnknown", f"The property {name} is not in the list of valid properties."
                )
            if value not in values:
                raise base_fault(
                    400,
                    "PropertyValueNotInList",
                    f"The value {value} for the property {name} is not in the list.",
                )
            changes[key] = str(value)
        with self._lock:
            if self._busy_patches > 0:
                self._busy_patches -= 1
                raise RedfishFault(
                    400,
                    "iLO.2.14.UnableToModifyDuringSystemPOST",
                    "The value for the property cannot be changed while the computer system is in POST.",
                )
            self._boot.update(changes)
            if self._boot["enabled"] == "Disabled":
                self._boot["target"] = "None"
        return changes

    def boot(self) -> dict[str, str]:
        """The current override: ``target``, ``enabled`` and ``mode``."""
        with self._lock:
            return dict(self._boot)

    # -- virtual CD ----------------------------------------------------------------------------------------

    def insert(self, image: object) -> None:
        """Insert ``image`` into the virtual CD; raises ``RedfishFault`` when one is inserted already."""
        if not isinstance(image, str) or not image:
            raise base_fault(
                400, "ActionParameterMissing", "The action InsertMedia requires the parameter Image."
            )
        with self._lock:
            if self._image is not None:
                raise base_fault(409, "ResourceInUse", "The virtual CD holds an image; eject it first.")
            self._image = image

    def eject(self) -> None:
        """Empty the virtual CD (nothing happens when it is empty); raises ``RedfishFault`` when the system
        takes an eject only while off and is not."""
        with self._lock:
            if (
                self.options.eject_needs_off
                and self._image is not None
                and self._reading(time.monotonic()) != "Off"
            ):
                raise base_fault(
                    409,
                    "ResourceInUse",
                    "The virtual media cannot be ejected while the system is powered on.",
                )
            self._image = None

    def image(self) -> str | None:
        """The image in the virtual CD, or None."""
        with self._lock:
            return self._image

    # -- payloads ------------------------------------------------------------------------------------------

    def payload(self) -> dict[str, Any]:
        """The ComputerSystem resource as a GET returns it."""
        options = self.options
        boot = self.boot()
        boot_payload: dict[str, Any] = {
            "BootSourceOverrideEnabled": boot["enabled"],
            "BootSourceOverrideTarget": boot["target"],
            "BootSourceOverrideTarget@Redfish.AllowableValues": list(BOOT_TARGETS),
        }
        if options.boot_modes is not None:
            boot_payload["BootSourceOverrideMode"] = boot["mode"]
            boot_payload["BootSourceOverrideMode@Redfish.AllowableValues"] = list(options.boot_modes)
        return {
            "@odata.id": self.uri,
            "@odata.type": "#ComputerSystem.v1_20_0.ComputerSystem",
            "Id": self.id,
            "Name": self.id,
            "SystemType": "Physical",
            "PowerState": self.power_state(),
            "Status": {"State": "Enabled", "Health": "OK"},
            "Boot": boot_payload,
            "Actions": {
                "#ComputerSystem.Reset": {
                    "target": f"{self.uri}/Actions/ComputerSystem.Reset",
                    "ResetType@Redfish.AllowableValues": list(options.reset_types),
                }
            },
            "Links": {"ManagedBy": [{"@odata.id": self.manager_uri}]},
        }

    def manager_payload(self) -> dict[str, Any]:
        """The Manager resource: a BMC with a VirtualMedia collection."""
        return {
            "@odata.id": self.manager_uri,
            "@odata.type": "#Manager.v1_19_0.Manager",
            "Id": self.id,
            "Name": f"BMC of {self.id}",
            "ManagerType": "BMC",
            "VirtualMedia": {"@odata.id": f"{self.manager_uri}/VirtualMedia"},
            "Links": {"ManagerForServers": [{"@odata.id": self.uri}]},
        }

    def vmedia_collection_payload(self) -> dict[str, Any]:
        """The VirtualMedia collection: a USB stick listed before the CD, so clients must pick by type."""
        base = f"{self.manager_uri}/VirtualMedia"
        return {
            "@odata.id": base,
            "@odata.type": "#VirtualMediaCollection.VirtualMediaCollection",
            "Name": "Virtual Media",
            "Members@odata.count": 2,
            "Members": [{"@odata.id": f"{base}/USB1"}, {"@odata.id": f"{base}/CD"}],
        }

    def vmedia_payload(self, member: str) -> dict[str, Any]:
        """The VirtualMedia resource ``member`` (``CD`` or ``USB1``); the CD's actions when offered."""
        uri = f"{self.manager_uri}/VirtualMedia/{member}"
        image = self.image() if member == "CD" else None
        payload: dict[str, Any] = {
            "@odata.id": uri,
            "@odata.type": "#VirtualMedia.v1_6_0.VirtualMedia",
            "Id": member,
            "Name": "Virtual CD" if member == "CD" else "Virtual USB stick",
            "MediaTypes": ["CD", "DVD"] if member == "CD" else ["USBStick"],
            "Image": image,
            "Inserted": image is not None,
            "WriteProtected": True,
            "ConnectedVia": "URI" if image else "NotConnected",
        }
        if member == "CD" and self.options.vmedia_actions:
            payload["Actions"] = {
                "#VirtualMedia.InsertMedia": {"target": f"{uri}/Actions/VirtualMedia.InsertMedia"},
                "#VirtualMedia.EjectMedia": {"target": f"{uri}/Actions/VirtualMedia.EjectMedia"},
            }
        return payload
