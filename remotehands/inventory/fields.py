"""The remotehands fields of one inventory host, checked and turned into a ``Host``, ``NetworkDevice`` or
``StorageArray``: which fields each kind has and needs, and what each power type needs.

Pydantic is the last gate: anything it still refuses is translated into problems, so no pydantic error
leaves this module.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from remotehands.errors import InventoryProblem
from remotehands.inventory.ansible_dir import Sourced, VarMap
from remotehands.inventory.checks import (
    Spot,
    address,
    choice,
    credentials,
    number,
    port,
    problems_from_validation_error,
    secret_reference,
    text,
    type_name,
    unknown_keys,
)
from remotehands.inventory.models import (
    HOST_KINDS,
    PDU_PLATFORMS,
    PROVIDER,
    Host,
    NetworkDevice,
    Pdu,
    StorageArray,
)

Equipment = Host | NetworkDevice | StorageArray | Pdu

NETWORK_KINDS = ("firewall", "switch", "router")
ARRAY_KIND = "array"
PDU_KIND = "pdu"
KINDS = (*HOST_KINDS, *NETWORK_KINDS, ARRAY_KIND, PDU_KIND)
NETWORK_PLATFORMS = ("cisco_asa", "juniper_junos", "fortinet", "cisco_ios")
ARRAY_PLATFORMS = ("ontap", "pure", "powerstore")
POWER_TYPES = ("ipmi", "redfish", "pdu-outlet", "manual")

SERVER_FIELDS = (
    "ansible_host",
    "kind",
    "site",
    "rack",
    "serial_number",
    "subscription",
    "power",
    "reimage_method",
    "ssh",
    "ssh_host_key",
    "model",
    "dfu_controller",
    "mdm_udid",
    "boot_mac",
)
_MAC_ADDRESS = re.compile(r"[0-9A-Fa-f]{2}([:-])(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}")
REIMAGE_METHODS = ("erase-install", "mdm-erase", "dfu-restore", "netboot", "pxe", "virtual-media")
MAC_MODELS = ("apple-silicon", "t2", "intel-legacy")
DEVICE_FIELDS = (
    "ansible_host",
    "kind",
    "platform",
    "site",
    "rack",
    "serial_number",
    "subscription",
    "port",
    "credentials",
)
NETWORK_FIELDS = (*DEVICE_FIELDS, "ssh_host_key", "zones", "change_window", "confirm_minutes")
ARRAY_FIELDS = (*DEVICE_FIELDS, "tls_ca", "tls_insecure", "luns")
PDU_FIELDS = (*DEVICE_FIELDS, "snmp", "stagger_seconds", "redfish_id", "tls_ca", "tls_insecure")
HOST_FIELDS = tuple(sorted(set(SERVER_FIELDS) | set(PDU_FIELDS) | set(NETWORK_FIELDS) | set(ARRAY_FIELDS)))
POWER_FIELDS: dict[str, tuple[str, ...]] = {
    "ipmi": ("type", "address", "port", "credentials", "event_log"),
    "redfish": ("type", "address", "port", "credentials", "system_id", "tls_ca", "tls_insecure"),
    "pdu-outlet": ("type", "pdu", "outlet", "outlet_name"),
    "manual": ("type",),
}
SNMP_FIELDS = ("version", "community", "user", "auth_key", "priv_key", "auth_protocol", "priv_protocol")
_SERIAL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Catalogue:
    """What host fields are checked against: the hosts file and the declared sites and subscriptions."""

    hosts_file: str
    sites: frozenset[str]
    subscriptions: frozenset[str]


def power_paths(spot: Spot, value: object) -> list[dict[str, object]] | None:
    """One power profile, or a list of them tried in order (e.g. redfish, then ipmi); None after reporting."""
    if isinstance(value, list):
        if not value:
            spot.report("power is an empty list; give at least one power path")
            return None
        paths = [power(spot.child(str(i)), item) for i, item in enumerate(value)]
        keys = [
            tuple(str(p.get(k)) for k in ("type", "address", "port", "pdu", "outlet"))
            for p in paths
            if p is not None
        ]
        if len(set(keys)) != len(keys):
            spot.report("power lists the same path twice; each path is tried once, in order")
            return None
        return None if any(p is None for p in paths) else [p for p in paths if p is not None]
    one = power(spot, value)
    return None if one is None else [one]


def power(spot: Spot, value: object) -> dict[str, object] | None:
    """The power profile: what each type needs is present and well-formed, nothing foreign to the type."""
    if value is None:
        spot.report("missing power; say how this host is powered: type ipmi, redfish, pdu-outlet or manual")
        return None
    if not isinstance(value, Mapping):
        spot.report(
            "power must be a mapping with a type (ipmi, redfish, pdu-outlet, manual), or a list of them, "
            f"not {type_name(value)}"
        )
        return None
    kind = choice(spot.child("type"), value.get("type"), POWER_TYPES, "missing power type")
    if kind is None:
        return None
    before = len(spot.problems)
    unknown_keys(spot, value, POWER_FIELDS[kind], f" for power type {kind}")
    profile: dict[str, object] = {"type": kind}
    if "port" in value:
        profile["port"] = port(spot.child("port"), value["port"])
    bmc = kind in ("ipmi", "redfish")
    need = f"power type {kind} needs"
    if bmc or "address" in value:
        profile["address"] = address(spot.child("address"), value.get("address"), f"{need} the BMC's address")
    if bmc or "credentials" in value:
        profile["credentials"] = credentials(
            spot.child("credentials"), value.get("credentials"), f"{need} credentials: {{username, password}}"
        )
    if kind == "ipmi" and "event_log" in value:
        if not isinstance(value["event_log"], bool):
            spot.child("event_log").report("event_log must be true or false")
        profile["event_log"] = value["event_log"]
    if kind == "redfish":
        if "system_id" in value:
            profile["system_id"] = text(spot.child("system_id"), value["system_id"], None)
        if "tls_ca" in value:
            ca = text(spot.child("tls_ca"), value["tls_ca"], None)
            if ca is not None and not ca.startswith("/"):
                spot.child("tls_ca").report(
                    "tls_ca must be an absolute path to a CA bundle, e.g. /etc/remotehands/bmc-ca.pem"
                )
            profile["tls_ca"] = ca
        if "tls_insecure" in value:
            if not isinstance(value["tls_insecure"], bool):
                spot.child("tls_insecure").report("tls_insecure must be true or false")
            profile["tls_insecure"] = value["tls_insecure"]
    if kind == "pdu-outlet":
        profile["pdu"] = text(spot.child("pdu"), value.get("pdu"), f"{need} pdu: the PDU's inventory name")
        outlet = value.get("outlet")
        if outlet is None:
            spot.child("outlet").report(f"{need} outlet: the outlet number on that PDU")
        profile["outlet"] = number(spot.child("outlet"), outlet, 1, None, "an outlet number")
        if "outlet_name" in value:
            profile["outlet_name"] = text(spot.child("outlet_name"), value["outlet_name"], None)
    return profile if len(spot.problems) == before else None


class _HostVars:
    """One host's resolved variables, with the spot each is reported at (the hosts file when unset)."""

    def __init__(
        self, name: str, resolved: VarMap, hosts_file: str, problems: list[InventoryProblem]
    ) -> None:
        self.name = name
        self.resolved = resolved
        self.hosts_file = hosts_file
        self.problems = problems

    def spot(self, key: str) -> Spot:
        """Where a problem about ``key`` is reported: the file that set it, else the hosts file."""
        source = self.resolved.get(key)
        return Spot(source.file if source else self.hosts_file, self.name, key, self.problems)

    def value(self, key: str) -> object:
        """The resolved value of ``key``; None when no file sets it."""
        source: Sourced | None = self.resolved.get(key)
        return None if source is None else source.value

    def text(self, key: str, needs: str | None) -> str | None:
        """The text of ``key``; when ``needs`` is given the key is required and ``needs`` says why."""
        return text(self.spot(key), self.value(key), f"missing {key}; {needs}" if needs else None)


def build_equipment(
    name: str,
    resolved: VarMap,
    host_written: set[str],
    catalogue: Catalogue,
    problems: list[InventoryProblem],
) -> Equipment | None:
    """Check host ``name``'s resolved variables and build its model; None after reporting its problems.

    ``host_written`` names the variables written for this host itself (hosts.yml or host_vars): a field
    that does not apply to the host's kind is a problem there, but is ignored when inherited from a group,
    where it is a default for the group's other members. Raises nothing.
    """
    before = len(problems)
    host = _HostVars(name, resolved, catalogue.hosts_file, problems)
    kind = choice(host.spot("kind"), host.value("kind"), KINDS, "missing kind")
    server = kind in HOST_KINDS
    applicable = (
        SERVER_FIELDS
        if server
        else PDU_FIELDS
        if kind == PDU_KIND
        else NETWORK_FIELDS
        if kind in NETWORK_KINDS
        else ARRAY_FIELDS
        if kind == ARRAY_KIND
        else DEVICE_FIELDS
    )
    for key in sorted(host_written & set(HOST_FIELDS) - set(applicable)) if kind else ():
        host.spot(key).report(
            f"field {key} does not apply to a {kind}; fields for a {kind} are {', '.join(applicable)}"
        )
    fields = _common_fields(host, catalogue, required=server)
    if server:
        if host.value("ansible_port") is not None:
            fields["ssh_port"] = port(host.spot("ansible_port"), host.value("ansible_port"))
        paths = power_paths(host.spot("power"), host.value("power"))
        if paths:
            fields["power"], fields["power_fallback"] = paths[0], paths[1:]
        else:
            fields["power"] = None
        if host.value("reimage_method") is not None:
            fields["reimage_method"] = choice(
                host.spot("reimage_method"), host.value("reimage_method"), REIMAGE_METHODS, "empty"
            )
        _access_fields(host, fields, kind)
    elif kind == PDU_KIND:
        _pdu_fields(host, fields)
    elif kind is not None:
        platforms = ARRAY_PLATFORMS if kind == ARRAY_KIND else NETWORK_PLATFORMS
        fields["platform"] = choice(
            host.spot("platform"), host.value("platform"), platforms, f"missing platform for the {kind}"
        )
        fields["credentials"] = credentials(
            host.spot("credentials"), host.value("credentials"), "missing credentials: {username, password}"
        )
        fields["port"] = port(host.spot("port"), host.value("port"))
        if kind in NETWORK_KINDS:
            _network_fields(host, fields)
        else:
            _array_fields(host, fields)
    if kind is None or len(problems) > before:
        return None
    data = {k: v for k, v in fields.items() if v is not None}
    try:
        if server:
            return Host.model_validate({**data, "kind": kind})
        if kind == ARRAY_KIND:
            return StorageArray.model_validate(data)
        if kind == PDU_KIND:
            return Pdu.model_validate(data)
        return NetworkDevice.model_validate({**data, "kind": kind})
    except ValidationError as exc:
        problems.extend(problems_from_validation_error(exc, name, lambda key: host.spot(key).file))
        return None


def _network_fields(host: _HostVars, fields: dict[str, object]) -> None:
    """A network device's pinned SSH host key, its zones, change window and confirm timer; their shapes
    are checked by the model (``NetworkDevice``), which reports the field path."""
    key = host.text("ssh_host_key", None)
    if key is not None:
        if len(key.split()) < 2:
            host.spot("ssh_host_key").report(
                "ssh_host_key must be an OpenSSH public key line like 'ssh-ed25519 AAAA...'; "
                "read it from the device (e.g. 'show crypto key mypubkey' or its known_hosts line)"
            )
        fields["ssh_host_key"] = key
    for key in ("zones", "change_window", "confirm_minutes"):
        if host.value(key) is not None:
            fields[key] = host.value(key)


def _tls_fields(host: _HostVars, fields: dict[str, object]) -> None:
    """An HTTPS device's pinned CA bundle (an absolute path) and its explicit TLS exception (a boolean)."""
    if host.value("tls_ca") is not None:
        ca = host.text("tls_ca", None)
        if ca is not None and not ca.startswith("/"):
            host.spot("tls_ca").report("tls_ca must be an absolute path to a CA bundle")
        fields["tls_ca"] = ca
    if host.value("tls_insecure") is not None:
        if not isinstance(host.value("tls_insecure"), bool):
            host.spot("tls_insecure").report("tls_insecure must be true or false")
        fields["tls_insecure"] = host.value("tls_insecure")


def _array_fields(host: _HostVars, fields: dict[str, object]) -> None:
    """An array's pinned CA or TLS exception, and which hosts use which of its LUNs (``luns``: the model
    checks the shape and reports the field path; the loader checks the hosts exist)."""
    _tls_fields(host, fields)
    if host.value("luns") is not None:
        fields["luns"] = host.value("luns")


def _access_fields(host: _HostVars, fields: dict[str, object], kind: str | None) -> None:
    """How remotehands reaches a server's OS (SSH login and pinned host key) and, for Macs, the model,
    the DFU controller Mac paired over USB-C and the MDM device id."""
    if host.value("ssh") is not None:
        fields["ssh"] = credentials(host.spot("ssh"), host.value("ssh"), None)
    key = host.text("ssh_host_key", None)
    if key is not None:
        parts = key.split()
        if len(parts) < 2 or not parts[0].startswith(("ssh-", "ecdsa-")):
            host.spot("ssh_host_key").report(
                "ssh_host_key must be an OpenSSH public key line like 'ssh-ed25519 AAAA...'; "
                "copy it from /etc/ssh/ssh_host_ed25519_key.pub"
            )
        fields["ssh_host_key"] = key
    boot_mac = host.text("boot_mac", None)
    if boot_mac is not None:
        if _MAC_ADDRESS.fullmatch(boot_mac.strip()):
            fields["boot_mac"] = boot_mac.strip().lower().replace("-", ":")
        else:
            host.spot("boot_mac").report(
                f"boot_mac {boot_mac!r} is not a MAC address; write the boot NIC's address as aa:bb:cc:dd:ee:ff"
            )
    mac = kind is not None and kind.startswith("mac-")
    for name in ("model", "dfu_controller", "mdm_udid"):
        if host.value(name) is not None and not mac:
            host.spot(name).report(f"{name} applies to Macs only, not to this {kind} host")
    if mac and host.value("model") is not None:
        fields["model"] = choice(host.spot("model"), host.value("model"), MAC_MODELS, "empty model")
    if mac:
        fields["dfu_controller"] = host.text("dfu_controller", None)
        fields["mdm_udid"] = host.text("mdm_udid", None)


def _pdu_fields(host: _HostVars, fields: dict[str, object]) -> None:
    """A PDU: its platform, SNMP settings (or Redfish credentials), port and outlet stagger."""
    platform = choice(
        host.spot("platform"), host.value("platform"), PDU_PLATFORMS, "missing platform for the pdu"
    )
    fields["platform"] = platform
    if host.value("port") is not None:
        fields["port"] = port(host.spot("port"), host.value("port"))
    elif platform == "redfish":
        fields["port"] = 443
    if platform == "redfish":
        fields["credentials"] = credentials(
            host.spot("credentials"), host.value("credentials"), "a Redfish PDU needs credentials"
        )
        fields["redfish_id"] = host.text("redfish_id", None)
        _tls_fields(host, fields)
    elif platform is not None:
        fields["snmp"] = snmp(host.spot("snmp"), host.value("snmp"))
    stagger = host.value("stagger_seconds")
    if stagger is not None:
        if isinstance(stagger, bool) or not isinstance(stagger, int | float) or not 0 <= stagger <= 600:
            host.spot("stagger_seconds").report("stagger_seconds must be a number of seconds from 0 to 600")
        else:
            fields["stagger_seconds"] = float(stagger)


def snmp(spot: Spot, value: object) -> dict[str, object] | None:
    """SNMP settings of a PDU: v2c needs a community reference; v3 a user and auth/priv key references."""
    if value is None:
        spot.report("an SNMP PDU needs snmp: {version: v2c, community: env:NAME} or a v3 user and keys")
        return None
    if not isinstance(value, Mapping):
        spot.report(f"snmp must be a mapping, not {type_name(value)}")
        return None
    unknown_keys(spot, value, SNMP_FIELDS)
    version = choice(spot.child("version"), value.get("version", "v2c"), ("v2c", "v3"), "missing version")
    settings: dict[str, object] = {"version": version}
    needed = {"v2c": ("community",), "v3": ("auth_key", "priv_key")}.get(version or "", ())
    for key in needed:
        if value.get(key) is None:
            spot.child(key).report(f"SNMP {version} needs {key}: a reference such as env:PDU_{key.upper()}")
            settings[key] = None
        else:
            settings[key] = secret_reference(spot.child(key), value[key])
    if version == "v3":
        settings["user"] = text(spot.child("user"), value.get("user"), "SNMPv3 needs user")
        for key, options in (
            ("auth_protocol", ("SHA", "SHA256", "MD5")),
            ("priv_protocol", ("AES", "AES256", "DES")),
        ):
            if key in value:
                settings[key] = choice(spot.child(key), value[key], options, f"missing {key}")
    return None if any(v is None for v in settings.values()) else settings


def _common_fields(host: _HostVars, catalogue: Catalogue, *, required: bool) -> dict[str, object]:
    """Fields every kind has; rack, serial_number and subscription are demanded only when ``required``.

    With an unknown kind they are not demanded, so a typo in kind does not bury the host in problems.
    """
    fields: dict[str, object] = {"name": host.name}
    fields["mgmt_address"] = address(
        host.spot("ansible_host"),
        host.value("ansible_host"),
        "missing ansible_host; write the management IP address or host name to connect to",
    )
    site = host.text("site", "every host needs a site (usually set as a var of its site group)")
    if site is not None and site not in catalogue.sites:
        declared = ", ".join(sorted(catalogue.sites)) or "none"
        host.spot("site").report(
            f"site {site!r} is not declared in sites (group_vars/all.yml); declared: {declared}"
        )
    fields["site"] = site
    fields["rack"] = host.text(
        "rack", "every server needs a rack (usually set as a var of its rack group)" if required else None
    )
    serial = host.text(
        "serial_number", "every server needs the serial number on its chassis" if required else None
    )
    if serial is not None and not _SERIAL.match(serial):
        host.spot("serial_number").report(
            f"serial number {serial!r} may hold only letters, digits, '.', '_' and '-'"
        )
    fields["serial_number"] = serial
    subscription = host.text(
        "subscription",
        f"every server belongs to a customer subscription (or {PROVIDER})" if required else None,
    )
    known = [*sorted(catalogue.subscriptions), PROVIDER]
    if subscription is not None and subscription not in known:
        host.spot("subscription").report(
            f"unknown subscription {subscription!r}; known subscriptions: {', '.join(known)}"
        )
    fields["subscription"] = subscription
    return fields
