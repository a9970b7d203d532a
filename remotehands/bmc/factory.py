"""Builds the driver for one power path of a host, from the inventory; credentials are resolved here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from remotehands import secrets
from remotehands.bmc.base import PowerDriver
from remotehands.errors import ConfigError, InvalidRequest
from remotehands.inventory.models import Credentials, Host, Inventory, Pdu, PowerProfile

if TYPE_CHECKING:
    from remotehands.bmc.redfish_pool import RedfishSessionPool

# Inventory platform names -> the PDU model table's names (remotehands.bmc.pdu_models).
PDU_MODEL = {
    "apc_rpdu": "apc-rpdu",
    "apc_rpdu2": "apc-rpdu2",
    "apc_masterswitch": "apc-masterswitch",
    "raritan_px2": "raritan-px",
    "raritan_px3": "raritan-px",
}


def power_driver_for(
    host: Host,
    profile: PowerProfile,
    inventory: Inventory,
    *,
    timeout: float = 5.0,
    redfish_sessions: RedfishSessionPool | None = None,
) -> PowerDriver:
    """Return a driver for ``profile`` (one of ``host``'s power paths).

    Raises ``SecretError`` when a credential reference cannot be resolved, ``ConfigError`` when the profile
    lacks what its type needs, and ``InvalidRequest`` for a manual path (nothing to drive).
    """
    where = f"host {host.name}: power path {profile.type}"
    if profile.type in ("ipmi", "redfish"):
        if profile.address is None or profile.credentials is None:
            raise ConfigError(
                f"{where} lacks address or credentials",
                fix="add address and credentials to it in the inventory; check with 'remotehands inventory check'",
            )
        password = _secret(profile.credentials, f"{host.name}: power.credentials.password")
        if profile.type == "ipmi":
            from remotehands.bmc.ipmi import IpmiPower

            return IpmiPower(
                profile.address, profile.port or 623, profile.credentials.username, password, timeout=timeout
            )
        from remotehands.bmc.redfish import RedfishBmc

        return RedfishBmc(
            profile.address,
            profile.port or 443,
            profile.credentials.username,
            password,
            system_id=profile.system_id,
            tls_ca=profile.tls_ca,
            tls_insecure=profile.tls_insecure,
            timeout=timeout,
            sessions=redfish_sessions,
        )
    if profile.type == "pdu-outlet":
        if profile.pdu is None or profile.outlet is None:
            raise ConfigError(f"{where} lacks pdu or outlet", fix="add pdu and outlet to it in the inventory")
        return _outlet(
            inventory.pdu(profile.pdu), profile.outlet, profile.outlet_name, timeout, redfish_sessions
        )
    raise InvalidRequest(f"{where}: nothing to drive; a technician acts", fix="the job asks on the ticket")


def _secret(credentials: Credentials, field: str) -> str:
    return secrets.resolve(credentials.password, field=field)


def _outlet(
    pdu: Pdu,
    outlet: int,
    expected_name: str | None,
    timeout: float,
    redfish_sessions: RedfishSessionPool | None,
) -> PowerDriver:
    if pdu.platform == "redfish":
        from remotehands.bmc.redfish_outlet import RedfishOutlet

        if pdu.credentials is None:
            raise ConfigError(
                f"PDU {pdu.name} has no credentials", fix="add credentials: {username, password}"
            )
        return RedfishOutlet(
            pdu.mgmt_address,
            pdu.port,
            pdu.credentials.username,
            _secret(pdu.credentials, f"{pdu.name}: credentials.password"),
            outlet=outlet,
            pdu_id=pdu.redfish_id,
            expected_name=expected_name,
            tls_ca=pdu.tls_ca,
            tls_insecure=pdu.tls_insecure,
            timeout=timeout,
            sessions=redfish_sessions,
        )
    from remotehands.bmc.pdu import SnmpOutlet

    snmp = pdu.snmp
    if snmp is None:
        raise ConfigError(f"PDU {pdu.name} has no snmp settings", fix="add snmp: {version, community} to it")

    def ref(value: str | None, field: str) -> str | None:
        return None if value is None else secrets.resolve(value, field=f"{pdu.name}: snmp.{field}")

    return SnmpOutlet(
        pdu.mgmt_address,
        pdu.port,
        outlet,
        model=None if pdu.platform == "auto" else PDU_MODEL[pdu.platform],
        version=snmp.version,
        community=ref(snmp.community, "community"),
        v3_user=snmp.user,
        v3_auth_key=ref(snmp.auth_key, "auth_key"),
        v3_priv_key=ref(snmp.priv_key, "priv_key"),
        v3_auth_protocol=snmp.auth_protocol,
        v3_priv_protocol=snmp.priv_protocol,
        expected_name=expected_name,
        timeout=min(timeout, 2.0),
    )
