"""Builds the power driver a host's inventory profile names."""

from __future__ import annotations

from remotehands import secrets
from remotehands.bmc.base import PowerDriver
from remotehands.errors import DeviceRefused, InvalidRequest
from remotehands.inventory.models import Host


def power_driver_for(host: Host, *, timeout: float = 5.0) -> PowerDriver:
    """Return a driver for ``host``'s power profile; credentials are resolved here, at the moment of use.

    Raises ``SecretError`` when the credential reference cannot be resolved and ``InvalidRequest`` for a
    power type this build does not drive yet.
    """
    profile = host.power
    if profile.type == "ipmi":
        from remotehands.bmc.ipmi import IpmiPower

        if profile.address is None or profile.credentials is None:
            raise DeviceRefused(f"host {host.name}: power profile ipmi lacks address or credentials")
        password = secrets.resolve(
            profile.credentials.password, field=f"{host.name}: power.credentials.password"
        )
        return IpmiPower(
            profile.address, profile.port or 623, profile.credentials.username, password, timeout=timeout
        )
    raise InvalidRequest(
        f"host {host.name}: power type {profile.type} is not driven by this version",
        fix="IPMI is supported now; Redfish, PDU outlets and manual power arrive with the power issue (#3)",
    )
