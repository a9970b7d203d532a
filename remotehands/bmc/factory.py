"""Builds the driver for one power path of a host, from the inventory; credentials are resolved here."""

from __future__ import annotations

from remotehands import secrets
from remotehands.bmc.base import PowerDriver
from remotehands.errors import ConfigError, InvalidRequest
from remotehands.inventory.models import Host, Inventory, PowerProfile


def power_driver_for(
    host: Host, profile: PowerProfile, inventory: Inventory, *, timeout: float = 5.0
) -> PowerDriver:
    """Return a driver for ``profile`` (one of ``host``'s power paths).

    Raises ``SecretError`` when a credential reference cannot be resolved, ``DeviceRefused`` when the
    profile lacks what its type needs, and ``InvalidRequest`` for a manual path (nothing to drive).
    """
    if profile.type == "ipmi":
        from remotehands.bmc.ipmi import IpmiPower

        if profile.address is None or profile.credentials is None:
            raise ConfigError(
                f"host {host.name}: power path ipmi lacks address or credentials",
                fix="add power.address and power.credentials in the inventory; 'remotehands inventory check'",
            )
        password = secrets.resolve(
            profile.credentials.password, field=f"{host.name}: power.credentials.password"
        )
        return IpmiPower(
            profile.address, profile.port or 623, profile.credentials.username, password, timeout=timeout
        )
    raise InvalidRequest(
        f"host {host.name}: power type {profile.type} is not driven by this version",
        fix="use an ipmi power path",
    )
