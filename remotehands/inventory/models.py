"""Typed inventory: sites, racks, customer subscriptions, hosts with their power profile, network devices
and storage arrays. Built by ``remotehands.inventory.loader`` from an Ansible YAML inventory directory.

Credentials are kept as *references* (``env:``, ``file:``, ``vault:``); ``remotehands.secrets.resolve``
turns one into a value at the moment of use.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from remotehands.errors import UnknownTarget
from remotehands.inventory.ip_plan import SiteIpPlan

HostKind = Literal["mac-mini", "mac-studio", "mac-pro", "esxi", "linux"]
HOST_KINDS: tuple[str, ...] = ("mac-mini", "mac-studio", "mac-pro", "esxi", "linux")
PowerType = Literal["ipmi", "redfish", "pdu-outlet", "manual"]
NetworkKind = Literal["firewall", "switch", "router"]
NetworkPlatform = Literal["cisco_asa", "juniper_junos", "fortinet", "cisco_ios"]
ArrayPlatform = Literal["ontap", "pure", "powerstore"]
# "auto": the PDU's model is read from its sysObjectID; "redfish": a Redfish PDU (Outlet.PowerControl).
PduPlatform = Literal[
    "auto", "apc_rpdu", "apc_rpdu2", "apc_masterswitch", "raritan_px2", "raritan_px3", "redfish"
]
PDU_PLATFORMS: tuple[str, ...] = (
    "auto",
    "apc_rpdu",
    "apc_rpdu2",
    "apc_masterswitch",
    "raritan_px2",
    "raritan_px3",
    "redfish",
)

# Shared infrastructure (firewalls, arrays, PDUs) belongs to the provider, not to a customer.
PROVIDER = "provider"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Subscription(_Model):
    """A customer's contract; every customer host belongs to exactly one."""

    id: str
    customer: str


class Site(_Model):
    name: str
    description: str = ""
    timezone: str = "UTC"  # IANA name; the site's working day (SLA clocks) is in this zone
    racks: tuple[str, ...] = ()
    ip_plan: SiteIpPlan | None = None  # prefixes, gateways, reserved ranges (remotehands.network.ipam)


class Credentials(_Model):
    username: str
    password: str  # a reference: env:NAME, file:/path or vault:path#key


class PowerProfile(_Model):
    """How a host's power is switched: its BMC (ipmi/redfish), a switched PDU outlet, or a technician."""

    type: PowerType
    address: str | None = None  # BMC or PDU management address
    port: int | None = None
    credentials: Credentials | None = None
    pdu: str | None = None  # pdu-outlet: the PDU's inventory name
    outlet: int | None = None  # pdu-outlet: outlet number on that PDU
    outlet_name: str | None = None  # pdu-outlet: the name the PDU must report for that outlet
    system_id: str | None = None  # redfish: the member of /redfish/v1/Systems, when there are several
    tls_ca: str | None = None  # redfish: pinned CA bundle path
    tls_insecure: bool = False  # redfish: explicit, per-device exception to TLS verification
    # ipmi: the BMC records every power action in its event log (SEL). Only then does a job send one native
    # cycle and prove from the log, after a crash, whether it arrived; otherwise (the default, and e.g.
    # OpenIPMI's ipmi_sim, whose SEL records nothing for chassis control) it cycles as off, dwell, on.
    event_log: bool = False


class Host(_Model):
    """A server: a Mac, an ESXi or a Linux host."""

    name: str
    kind: HostKind
    site: str
    rack: str
    serial_number: str
    mgmt_address: str  # ansible_host
    ssh_port: int = 22  # ansible_port
    subscription: str  # a Subscription.id, or PROVIDER
    power: PowerProfile  # the first power path
    power_fallback: tuple[PowerProfile, ...] = ()  # tried in order when the one before fails
    reimage_method: str | None = None
    ssh: Credentials | None = None  # the OS login (password a reference)
    ssh_host_key: str | None = None  # OpenSSH public key line; pinned until a reimage replaces it
    model: Literal["apple-silicon", "t2", "intel-legacy"] | None = None  # Macs: decides reimage methods
    dfu_controller: str | None = None  # Macs: the controller Mac paired over USB-C for DFU restore
    mdm_udid: str | None = None  # Macs: the device id at the MDM server
    boot_mac: str | None = None  # the NIC that PXE-boots (aa:bb:cc:dd:ee:ff): names its boot config file

    @property
    def power_paths(self) -> tuple[PowerProfile, ...]:
        """Every power path, in the order to try them."""
        return (self.power, *self.power_fallback)


class Zone(_Model):
    """A security zone of a firewall as the rules name it: the device's interface (or Junos zone) and, on
    platforms that filter with an ACL bound to the ingress interface (ASA, IOS), that ACL's name."""

    interface: str
    acl: str | None = None


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class ChangeWindow(_Model):
    """When changes may be made to a device, in its site's time zone; ``end`` before ``start`` spans
    midnight (``start`` on a listed day)."""

    days: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    end: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")


class NetworkDevice(_Model):
    name: str
    kind: NetworkKind
    platform: NetworkPlatform
    site: str
    rack: str | None = None
    mgmt_address: str
    port: int = 22
    credentials: Credentials
    subscription: str = PROVIDER
    serial_number: str | None = None
    ssh_host_key: str | None = None  # OpenSSH public key line the device must present
    zones: dict[str, Zone] = Field(default_factory=dict)  # rule zones: name -> interface (and ACL)
    change_window: ChangeWindow | None = None  # None: changes at any time
    confirm_minutes: int = Field(default=5, ge=1, le=60)  # commit-confirmed / revert timer


class LunUse(_Model):
    """Which hosts see one LUN of an array, and what they keep on it (grown after the LUN is).

    ESXi hosts share a VMFS ``datastore`` on the LUN: it is grown from one of them, the others rescan and
    see it. Linux hosts (one, or an active/passive pair) have a filesystem mounted at ``mount``, directly on
    the multipath device or on the logical volume ``lv`` (``VG/LV``) whose physical volume is the LUN; it is
    grown on the host where it is mounted, the others rescan."""

    hosts: tuple[str, ...] = Field(min_length=1)
    datastore: str | None = None
    mount: str | None = Field(default=None, pattern=r"^/")
    lv: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.+-]+/[A-Za-z0-9_.+-]+$")


class StorageArray(_Model):
    name: str
    platform: ArrayPlatform
    site: str
    rack: str | None = None
    mgmt_address: str
    port: int = 443
    credentials: Credentials  # Pure: password is the API token reference (username unused)
    subscription: str = PROVIDER
    serial_number: str | None = None
    tls_ca: str | None = None  # pinned CA bundle path
    tls_insecure: bool = False  # explicit, per-array exception to TLS verification
    luns: dict[str, LunUse] = Field(default_factory=dict)  # LUN name on the array -> who uses it


class SnmpSettings(_Model):
    """How to talk SNMP to a PDU. Secrets (community, keys) are references."""

    version: Literal["v2c", "v3"] = "v2c"
    community: str | None = None
    user: str | None = None
    auth_key: str | None = None
    priv_key: str | None = None
    auth_protocol: Literal["SHA", "SHA256", "MD5"] = "SHA"
    priv_protocol: Literal["AES", "AES256", "DES"] = "AES"


class Pdu(_Model):
    """A switched PDU: its outlets power the hosts whose power path names it (Macs have no BMC)."""

    name: str
    platform: PduPlatform
    site: str
    rack: str | None = None
    mgmt_address: str
    port: int = 161
    serial_number: str | None = None
    snmp: SnmpSettings | None = None  # SNMP PDUs
    credentials: Credentials | None = None  # Redfish PDUs
    redfish_id: str | None = None  # Redfish PDUs: the member of /redfish/v1/PowerEquipment/RackPDUs
    tls_ca: str | None = None  # Redfish PDUs: pinned CA bundle path
    tls_insecure: bool = False  # Redfish PDUs: explicit exception to TLS verification
    stagger_seconds: float = 2.0  # between outlets switched on one strip, against inrush current
    subscription: str = PROVIDER


class Inventory(_Model):
    """Everything the inventory directory describes, looked up by name."""

    source: str
    sites: dict[str, Site] = Field(default_factory=dict)
    subscriptions: dict[str, Subscription] = Field(default_factory=dict)
    hosts: dict[str, Host] = Field(default_factory=dict)
    network_devices: dict[str, NetworkDevice] = Field(default_factory=dict)
    arrays: dict[str, StorageArray] = Field(default_factory=dict)
    pdus: dict[str, Pdu] = Field(default_factory=dict)

    def host(self, name: str) -> Host:
        """Return the host called ``name``; raises ``UnknownTarget`` naming close matches."""
        try:
            return self.hosts[name]
        except KeyError:
            raise UnknownTarget(
                f"unknown host {name!r} in inventory {self.source}",
                fix=_suggest(name, list(self.hosts)) or "run 'remotehands inventory list' to see the hosts",
            ) from None

    def network_device(self, name: str) -> NetworkDevice:
        """The firewall, switch or router called ``name``; raises ``UnknownTarget``."""
        try:
            return self.network_devices[name]
        except KeyError:
            raise UnknownTarget(
                f"unknown network device {name!r} in inventory {self.source}",
                fix=_suggest(name, list(self.network_devices))
                or "add it to hosts.yml with kind: firewall and its platform",
            ) from None

    def array(self, name: str) -> StorageArray:
        """The storage array called ``name``; raises ``UnknownTarget``."""
        try:
            return self.arrays[name]
        except KeyError:
            raise UnknownTarget(
                f"unknown storage array {name!r} in inventory {self.source}",
                fix=_suggest(name, list(self.arrays))
                or "add it to hosts.yml with kind: array and its platform",
            ) from None

    def pdu(self, name: str) -> Pdu:
        """The PDU called ``name``; raises ``UnknownTarget``."""
        try:
            return self.pdus[name]
        except KeyError:
            raise UnknownTarget(
                f"unknown PDU {name!r} in inventory {self.source}",
                fix=_suggest(name, list(self.pdus)) or "add it to hosts.yml with kind: pdu",
            ) from None

    def hosts_in(self, *, site: str | None = None, rack: str | None = None) -> list[Host]:
        """Hosts of a site and/or rack, sorted by name; raises ``UnknownTarget`` for an unknown site."""
        if site is not None and site not in self.sites:
            raise UnknownTarget(f"unknown site {site!r}", fix="sites: " + ", ".join(sorted(self.sites)))
        found = [
            h
            for h in self.hosts.values()
            if (site is None or h.site == site) and (rack is None or h.rack == rack)
        ]
        if not found:
            where = " ".join(x for x in (f"site {site}" if site else "", f"rack {rack}" if rack else "") if x)
            raise UnknownTarget(
                f"no hosts in {where}", fix="check the name with 'remotehands inventory list'"
            )
        return sorted(found, key=lambda h: h.name)

    def customer_of(self, subscription_id: str) -> str:
        if subscription_id == PROVIDER:
            return PROVIDER
        sub = self.subscriptions.get(subscription_id)
        return sub.customer if sub else subscription_id


def _suggest(name: str, names: list[str]) -> str | None:
    import difflib

    close = difflib.get_close_matches(name, names, n=3)
    if not close:
        return None
    return "did you mean " + ", ".join(close) + "?"
