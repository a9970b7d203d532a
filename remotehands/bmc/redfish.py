"""Redfish BMCs: one host's power, boot override and virtual CD, on DMTF's ``redfish`` library.

``RedfishBmc`` implements ``PowerDriver``, ``BootControl`` and ``VirtualMedia``. Its constructor does no
I/O; the first call connects (``redfish_connection``: TLS verified, a session reused until ``close()``)
and discovers the system (``redfish_system``). A status read is one GET of the system, first call or not.

Our verbs map onto the ``ResetType`` values the BMC allows (``redfish_quirks.RESET_PLANS``): on = ``On``
(else ``ForceOn``), off = ``ForceOff``, soft_off = ``GracefulShutdown``, cycle = ``PowerCycle``, else
``ForceRestart``, else ``ForceOff`` then ``On``: that last fallback is two commands, and the host reads off
in between.

Known quirks, handled where they occur (recognised by data in ``redfish_quirks``):

- ``On`` refused with ``ActionParameterValueConflict`` right after an off: sent again after 0.5, 1, 2 and
  4 s, then a ``RetryableError``;
- a boot-override PATCH refused with ``UnableToModifyDuringSystemPOST``: likewise;
- ``PowerState`` ``Reset``, ``Unknown``, null, ``PoweringOn``, ``PoweringOff`` while the host changes state:
  ``state()`` reads UNKNOWN, and ``perform_and_confirm`` keeps reading;
- an error answer to an off of a host that is off ("already powered off"): success;
- ``InsertMedia`` refusing its optional parameters: sent again with ``Image`` alone.

For many systems behind one service, pass a shared ``RedfishSessionPool`` (``redfish_pool``).
"""

from __future__ import annotations

import logging
import threading

from remotehands.bmc import redfish_quirks as quirks
from remotehands.bmc.base import BootDevice, BootSetting, PowerAction, PowerState
from remotehands.bmc.redfish_connection import RedfishConnection
from remotehands.bmc.redfish_models import (
    Boot,
    Collection,
    Manager,
    SystemBoot,
    SystemPower,
    VirtualMediaDevice,
)
from remotehands.bmc.redfish_pool import RedfishSessionPool
from remotehands.bmc.redfish_system import RedfishSystem
from remotehands.errors import DeviceRefused, InternalError, InvalidRequest

log = logging.getLogger(__name__)

POWER_STATES = {"On": PowerState.ON, "Off": PowerState.OFF}  # anything else is on its way: UNKNOWN
BOOT_TARGETS = {
    BootDevice.PXE: "Pxe",
    BootDevice.DISK: "Hdd",
    BootDevice.CD: "Cd",
    BootDevice.HTTP: "UefiHttp",
}
BOOT_DEVICES = {target: device for device, target in BOOT_TARGETS.items()}


class RedfishBmc:
    """One host's BMC over Redfish; implements ``PowerDriver``, ``BootControl`` and ``VirtualMedia``.

    Calls on one instance are serialised. Every call raises ``DeviceUnreachable`` when the BMC does not
    answer (or answers busy), ``DeviceRefused`` when it refuses (credentials, TLS, unsupported), and
    ``RetryableError`` when a known transient refusal outlasts its retries. With ``sessions`` (a pool),
    the session is the pool's: ``close()`` leaves it open for the other drivers.
    """

    name = "redfish"

    def __init__(
        self,
        address: str,
        port: int,
        username: str,
        password: str,
        *,
        system_id: str | None = None,
        tls_ca: str | None = None,
        tls_insecure: bool = False,
        scheme: str = "https",
        timeout: float = 5.0,
        sessions: RedfishSessionPool | None = None,
    ) -> None:
        self._owns_connection = sessions is None
        make = RedfishConnection if sessions is None else sessions.connection
        connection = make(
            address,
            port,
            username,
            password,
            tls_ca=tls_ca,
            tls_insecure=tls_insecure,
            scheme=scheme,
            timeout=timeout,
        )
        self._system = RedfishSystem(connection, system_id)
        self._lock = threading.RLock()
        self._cd_uri: str | None = None

    @property
    def device(self) -> str:
        """``address:port`` of the BMC, as every message names it."""
        return self._system.device

    @property
    def system_id(self) -> str | None:
        return self._system.system_id

    def __repr__(self) -> str:
        return (
            f"RedfishBmc({self.device}, system={self.system_id!r}, user={self._system.connection.username!r})"
        )

    def __enter__(self) -> RedfishBmc:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- PowerDriver -------------------------------------------------------------------------------------

    def state(self) -> PowerState:
        """The host's power: ON, OFF, or UNKNOWN while it changes state (PoweringOn, Reset, null, ...)."""
        with self._lock:
            system = self._system
            if system.uri is None:
                power = system.discover().power_state
            else:
                power = system.read(SystemPower, system.uri, "read the power state").power_state
        return POWER_STATES.get(power or "", PowerState.UNKNOWN)

    def set_state(self, action: PowerAction) -> None:
        """Send ON, OFF or SOFT_OFF as the reset type the BMC allows; no read first, no wait."""
        if action is PowerAction.CYCLE:
            raise InternalError("RedfishBmc.set_state takes on, off or soft_off, not cycle; use cycle()")
        with self._lock:
            for reset_type in self._plan(action):
                self._reset(reset_type)

    def cycle(self) -> None:
        """Send PowerCycle, else ForceRestart; on a BMC that has neither, ForceOff then On (two commands)."""
        with self._lock:
            plan = self._plan(PowerAction.CYCLE)
            if len(plan) > 1:
                log.info(
                    "Redfish %s: no PowerCycle or ForceRestart; cycling as %s",
                    self.device,
                    " then ".join(plan),
                )
            for reset_type in plan:
                self._reset(reset_type)

    def supported(self) -> frozenset[PowerAction]:
        """The verbs the BMC's allowable ``ResetType`` values can carry out."""
        with self._lock:
            self._system.capabilities()
            return frozenset(action for action in PowerAction if self._choose(action) is not None)

    def close(self) -> None:
        """Delete the session and close the connection (best effort; not a pool's); safe to call twice."""
        with self._lock:
            if self._owns_connection:
                self._system.connection.close()

    def _choose(self, action: PowerAction) -> tuple[str, ...] | None:
        allowed = self._system.reset_types
        return next((plan for plan in quirks.RESET_PLANS[action] if all(t in allowed for t in plan)), None)

    def _plan(self, action: PowerAction) -> tuple[str, ...]:
        self._system.capabilities()
        plan = self._choose(action)
        if plan is None:
            raise self._system.not_offered(
                f"power {action.value}", self._system.reset_types, "ResetType values"
            )
        return plan

    def _reset(self, reset_type: str) -> None:
        reset = self._system.capabilities().actions.reset
        assert reset is not None  # a plan exists only when the action does
        what = f"reset {reset_type}"
        body: dict[str, object] = {"ResetType": reset_type}
        for reply in self._system.retrying(quirks.ON_RETRY_DELAYS, "POST", reset.target, what, body):
            messages = list(reply.messages)
            if reset_type in quirks.OFF_RESET_TYPES and quirks.ALREADY_OFF.matches(reply.status, messages):
                log.info(
                    "Redfish %s: %s answered %s: the host is off already", self.device, what, reply.describe()
                )
                return
            if not (
                reset_type in quirks.ON_RESET_TYPES
                and quirks.ON_RIGHT_AFTER_OFF.matches(reply.status, messages)
            ):
                self._system.check(reply, what)
                return

    # -- BootControl -------------------------------------------------------------------------------------

    def set_boot_device(self, device: BootDevice, *, once: bool = True, uefi: bool = True) -> None:
        """Set the boot override: target, once or continuous, and UEFI/Legacy when the BMC lists a mode.

        Raises ``InvalidRequest`` for UEFI HTTP boot without UEFI, ``DeviceRefused`` for a target or mode
        the BMC does not offer.
        """
        if device is BootDevice.HTTP and not uefi:
            raise InvalidRequest("UEFI HTTP boot needs UEFI", fix="ask for uefi=True")
        with self._lock:
            boot = self._system.capabilities().boot
            target = BOOT_TARGETS[device]
            if boot.targets is not None and target not in boot.targets:
                raise self._system.not_offered(f"boot override target {target}", boot.targets)
            patch: dict[str, str] = {
                "BootSourceOverrideTarget": target,
                "BootSourceOverrideEnabled": "Once" if once else "Continuous",
            }
            if boot.lists_mode:
                mode = "UEFI" if uefi else "Legacy"
                if boot.modes is not None and mode not in boot.modes:
                    raise self._system.not_offered(f"boot mode {mode}", boot.modes)
                patch["BootSourceOverrideMode"] = mode
            what = "set the boot override"
            uri = self._system.system_uri()
            for reply in self._system.retrying(quirks.POST_RETRY_DELAYS, "PATCH", uri, what, {"Boot": patch}):
                if not quirks.BOOT_OVERRIDE_DURING_POST.matches(reply.status, list(reply.messages)):
                    self._system.check(reply, what)
                    return

    def get_boot_device(self) -> BootSetting:
        """The boot override as the BMC reads now (device None: no override, the BIOS order applies)."""
        with self._lock:
            boot = self._system.read(SystemBoot, self._system.system_uri(), "read the boot override").boot
        return _boot_setting(boot, self.device)

    # -- VirtualMedia ------------------------------------------------------------------------------------

    def insert(self, url: str) -> None:
        """Insert the image at ``url`` into the virtual CD, ejecting another image first; nothing if it is in."""
        with self._lock:
            uri, cd = self._cd()
            if cd.inserted and cd.image == url:
                return
            if cd.inserted:
                self._eject(uri, cd)
            what = "insert virtual media"
            if cd.actions.insert is None:
                self._system.check(
                    self._system.request("PATCH", uri, what, {"Image": url, "Inserted": True}), what
                )
                return
            target = cd.actions.insert.target
            reply = self._system.request(
                "POST", target, what, {"Image": url, "Inserted": True, "WriteProtected": True}
            )
            if quirks.INSERT_PARAMETERS_REFUSED.matches(reply.status, list(reply.messages)):
                reply = self._system.request("POST", target, what, {"Image": url})
            self._system.check(reply, what)

    def eject(self) -> None:
        """Eject the virtual CD; nothing happens when it is empty."""
        with self._lock:
            uri, cd = self._cd()
            if cd.inserted:
                self._eject(uri, cd)

    def inserted(self) -> str | None:
        """The image URL in the virtual CD, or None when it is empty."""
        with self._lock:
            _, cd = self._cd()
        return cd.image if cd.inserted and cd.image else None

    def _eject(self, uri: str, cd: VirtualMediaDevice) -> None:
        what = "eject virtual media"
        if cd.actions.eject is not None:
            reply = self._system.request("POST", cd.actions.eject.target, what, {})
        else:
            reply = self._system.request("PATCH", uri, what, {"Image": None, "Inserted": False})
        self._system.check(reply, what)

    def _cd(self) -> tuple[str, VirtualMediaDevice]:
        """The virtual CD's URI and state now: found in the System's VirtualMedia, else its managers'."""
        system = self._system
        if self._cd_uri is not None:
            return self._cd_uri, system.read(VirtualMediaDevice, self._cd_uri, "read virtual media")
        found = system.capabilities()
        collections = [found.virtual_media.uri] if found.virtual_media else []
        for link in found.links.managed_by:
            manager = system.read(Manager, link.uri, "find virtual media")
            if manager.virtual_media is not None:
                collections.append(manager.virtual_media.uri)
        for collection in collections:
            for member in system.read(Collection, collection, "find virtual media").members:
                device = system.read(VirtualMediaDevice, member.uri, "find virtual media")
                if device.takes_cd:
                    self._cd_uri = member.uri
                    return member.uri, device
        raise DeviceRefused(
            f"Redfish BMC {self.device} has no virtual media device that takes a CD or DVD",
            fix="this BMC (or its license) offers no virtual CD; attach the image another way",
        )


def _boot_setting(boot: Boot, device: str) -> BootSetting:
    uefi = {"UEFI": True, "Legacy": False}.get(boot.mode or "")
    if boot.enabled in (None, "Disabled") or boot.target in (None, "None"):
        return BootSetting(device=None, once=False, uefi=uefi)
    found = BOOT_DEVICES.get(boot.target)
    if found is None:
        log.warning(
            "Redfish %s: boot override target %s has no remotehands name; reading none", device, boot.target
        )
    return BootSetting(device=found, once=boot.enabled == "Once", uefi=uefi)
