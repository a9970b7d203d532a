"""Additional customer IP addresses on a firewall, in each platform's syntax, and how to find them in its
running config. Two modes (``MODES``):

- ``route`` (every platform): each address routed as a /32 to the customer's host (``next_hop``) through the
  zone's interface;
- ``nat`` (ASA): each address a static NAT of the customer's host (``next_hop``, its real address on the
  ``zone`` side) to the public address on the ``public_zone`` side, one network object per address.

The addresses come from the site's IP plan (``remotehands.network.ipam``); the ticket says for which customer,
how many (or which ones) and where. IPv4 only so far; secondary addresses (IOS) are not built yet.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Literal

from remotehands.errors import InvalidRequest
from remotehands.inventory.models import NetworkDevice
from remotehands.network.rules import TICKET_ID
from remotehands.network.templates import Change, config_lines, fortios_blocks

IP_FIELDS = ("customer", "count", "addresses", "next_hop", "zone", "public_zone", "prefix", "mode")
MODES = ("route", "nat")
MODE_PLATFORMS = {"route": ("cisco_asa", "cisco_ios", "juniper_junos", "fortinet"), "nat": ("cisco_asa",)}
MAX_COUNT = 16


@dataclass(frozen=True)
class IpRequest:
    """What a ticket asks: ``count`` new addresses (or the named ``addresses``) for ``customer``."""

    op: Literal["add", "remove"]
    customer: str
    count: int
    addresses: tuple[IPv4Address, ...]
    next_hop: IPv4Address | None
    zone: str
    prefix: IPv4Network | None
    mode: str = "route"
    public_zone: str = "outside"


def parse_ip_request(
    params: dict[str, Any], device: NetworkDevice, op: Literal["add", "remove"]
) -> IpRequest:
    """The request in ``params``; raises ``InvalidRequest`` naming the field (``request.params.next_hop``)."""
    unknown = sorted(set(params) - set(IP_FIELDS))
    if unknown:
        raise InvalidRequest(
            f"request.params: unknown field(s) {', '.join(unknown)} for customer IPs",
            fix="fields are " + ", ".join(IP_FIELDS),
        )
    customer = str(params.get("customer") or "").strip()
    if not customer:
        raise InvalidRequest(
            "request.params.customer is missing", fix="name the customer the addresses are for"
        )
    mode = str(params.get("mode", "route"))
    if mode not in MODES or device.platform not in MODE_PLATFORMS[mode]:
        fitting = [m for m in MODES if device.platform in MODE_PLATFORMS[m]]
        raise InvalidRequest(
            f"request.params.mode {mode!r} is not supported on {device.platform}",
            fix="one of: " + ", ".join(fitting),
        )
    addresses = tuple(
        _address(value, "request.params.addresses") for value in _listed(params.get("addresses"))
    )
    if op == "remove" and not addresses:
        raise InvalidRequest("request.params.addresses is missing", fix="list the addresses to release")
    count = _count(params.get("count"), len(addresses))
    next_hop = None
    if op == "add":
        if params.get("next_hop") is None:
            raise InvalidRequest(
                "request.params.next_hop is missing", fix="the customer host's address behind the firewall"
            )
        next_hop = _address(params["next_hop"], "request.params.next_hop")
    zone = _zone(params, "zone", "inside", device)
    public_zone = _zone(params, "public_zone", "outside", device)
    prefix = None
    if params.get("prefix") is not None:
        try:
            prefix = IPv4Network(str(params["prefix"]))
        except ValueError as exc:
            raise InvalidRequest(
                f"request.params.prefix {params['prefix']!r} is not an IPv4 CIDR prefix ({exc})",
                fix="write it like 203.0.113.128/25, or leave it out",
            ) from None
    return IpRequest(op, customer, count, addresses, next_hop, zone, prefix, mode, public_zone)


def _zone(params: dict[str, Any], key: str, default: str, device: NetworkDevice) -> str:
    zone = str(params.get(key, default))
    if zone not in device.zones:
        known = ", ".join(sorted(device.zones)) or "none"
        raise InvalidRequest(
            f"request.params.{key}: {device.name} has no zone {zone!r}",
            fix=f"zones of {device.name}: {known}",
        )
    return zone


def _listed(value: object) -> list[object]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return list(value)
    return [part for part in str(value).replace(",", " ").split() if part]


def _address(value: object, field: str) -> IPv4Address:
    try:
        address = ipaddress.ip_address(str(value).strip())
    except ValueError:
        raise InvalidRequest(
            f"{field}: {value!r} is not an IP address", fix="write it like 203.0.113.140"
        ) from None
    if not isinstance(address, IPv4Address):
        raise InvalidRequest(f"{field}: {address} is IPv6", fix="only IPv4 addresses are routed so far")
    return address


def _count(value: object, named: int) -> int:
    if value is None:
        return named or 1
    try:
        count = int(str(value))
    except ValueError:
        raise InvalidRequest(f"request.params.count {value!r} is not a number", fix="1 to 16") from None
    if not 1 <= count <= MAX_COUNT:
        raise InvalidRequest(
            f"request.params.count {count} is outside 1..{MAX_COUNT}", fix=f"1 to {MAX_COUNT}"
        )
    if named and count != named:
        raise InvalidRequest(
            f"request.params: count {count} but {named} addresses named",
            fix="give one of count and addresses",
        )
    return count


@dataclass(frozen=True)
class RouteChange:
    """Route each of ``addresses`` (/32) to ``next_hop`` through ``zone`` (add), or remove their routes."""

    op: Literal["add", "remove"]
    addresses: tuple[IPv4Address, ...]
    next_hop: IPv4Address | None
    zone: str
    ticket_id: str
    mode: str = "route"
    public_zone: str = "outside"

    @property
    def name(self) -> str:
        """``rh-ip-<8 hex>`` of the addresses."""
        text = ",".join(str(a) for a in self.addresses)
        return "rh-ip-" + hashlib.sha256(text.encode()).hexdigest()[:8]

    def describe(self) -> str:
        """One line for the ticket."""
        listed = ", ".join(str(a) for a in self.addresses)
        if self.mode == "nat":
            return (
                f"static NAT of {self.next_hop} to {listed}" if self.next_hop else f"static NAT of {listed}"
            )
        return f"route {listed} via {self.next_hop} ({self.zone})" if self.next_hop else f"routes of {listed}"

    def render(self, device: NetworkDevice, config: str) -> Change:
        """The config lines that add (or remove) the routes on ``device``."""
        if not TICKET_ID.fullmatch(self.ticket_id):
            raise InvalidRequest(
                f"ticket id {self.ticket_id!r} cannot be written into a device's configuration"
            )
        lines: list[str] = []
        inverse: list[str | None] = []
        interface = device.zones[self.zone].interface
        platform = device.platform
        if self.mode == "nat":
            return self._nat(device, config)
        if self.op == "add":
            if platform == "fortinet":
                lines.append("config router static")
                for a in self.addresses:
                    lines += ["edit 0", f"set dst {a} 255.255.255.255", f"set gateway {self.next_hop}"]
                    lines += [
                        f'set device "{interface}"',
                        f'set comment "{self.ticket_id} {self.name}"',
                        "next",
                    ]
                lines.append("end")
                return Change(tuple(lines), tuple(None for _ in lines))
            for a in self.addresses:
                line = self._route(platform, interface, a)
                lines.append(line)
                inverse.append(None if platform == "juniper_junos" else f"no {line}")
            return Change(tuple(lines), tuple(inverse))
        return self._removal(device, config)

    def _nat(self, device: NetworkDevice, config: str) -> Change:
        """ASA object NAT: one network object per public address; ``no object network`` removes both parts."""
        real = device.zones[self.zone].interface
        public = device.zones[self.public_zone].interface
        lines: list[str] = []
        inverse: list[str | None] = []
        present = set(config_lines(config))
        for a in self.addresses:
            header = f"object network {nat_object(a)}"
            if self.op == "add":
                lines += [header, f"host {self.next_hop}", f"nat ({real},{public}) static {a}", "exit"]
                inverse += [f"no {header}", None, None, None]
            elif header in present:
                lines.append(f"no {header}")
                inverse.append(None)  # the object's host and NAT are not in the line: not restorable by it
        return Change(tuple(lines), tuple(inverse))

    def _route(self, platform: str, interface: str, address: IPv4Address) -> str:
        if platform == "cisco_asa":
            return f"route {interface} {address} 255.255.255.255 {self.next_hop}"
        if platform == "cisco_ios":
            return f"ip route {address} 255.255.255.255 {self.next_hop}"
        return f"set routing-options static route {address}/32 next-hop {self.next_hop}"

    def _removal(self, device: NetworkDevice, config: str) -> Change:
        present = config_lines(config)
        lines: list[str] = []
        if device.platform == "fortinet":
            ids = [
                key for key, sets in fortios_blocks(config, "router static").items() if self._routes_any(sets)
            ]
            if ids:
                lines = ["config router static", *(f"delete {key}" for key in ids), "end"]
            return Change(tuple(lines), tuple(None for _ in lines))
        for a in self.addresses:
            if device.platform == "juniper_junos":
                path = f"routing-options static route {a}/32"
                if any(line.startswith(f"set {path} ") for line in present):
                    lines.append(f"delete {path}")
                continue
            pattern = _ROUTE_LINE[device.platform].format(address=re.escape(str(a)))
            lines += [f"no {line}" for line in present if re.match(pattern, line)]
        inverse = [None if device.platform == "juniper_junos" else line[3:] for line in lines]
        return Change(tuple(lines), tuple(inverse))

    def _routes_any(self, sets: list[str]) -> bool:
        return any(f"set dst {a} 255.255.255.255" in sets for a in self.addresses)

    def is_done(self, device: NetworkDevice, config: str) -> bool:
        """Every route (or NAT) there (add), or none of them left (remove)."""
        if self.mode == "nat":
            objects = set(config_lines(config))
            real, public = device.zones[self.zone].interface, device.zones[self.public_zone].interface
            there = [
                f"object network {nat_object(a)}" in objects
                and f"nat ({real},{public}) static {a}" in objects
                for a in self.addresses
            ]
            return (
                all(there)
                if self.op == "add"
                else not any(f"object network {nat_object(a)}" in objects for a in self.addresses)
            )
        if self.op == "remove":
            return not self._removal(device, config).lines
        if device.platform == "fortinet":
            blocks = fortios_blocks(config, "router static").values()
            return all(
                any(
                    f"set dst {a} 255.255.255.255" in b and f"set gateway {self.next_hop}" in b
                    for b in blocks
                )
                for a in self.addresses
            )
        present = config_lines(config)
        interface = device.zones[self.zone].interface
        return all(
            any(
                line == (r := self._route(device.platform, interface, a)) or line.startswith(r + " ")
                for line in present
            )
            for a in self.addresses
        )

    def probes(self, device: NetworkDevice) -> list[tuple[str, str]]:
        """(show command, regex its output must match) proving each route is in the routing table."""
        if self.op != "add":
            return []
        if self.mode == "nat":
            # Proven by the running config only: the lab's packet-tracer does not model NAT phases, and a
            # check that cannot fail in the lab would prove nothing.
            return []
        if device.platform == "juniper_junos":
            return [
                (f"show route {a}/32 exact", rf"{re.escape(str(a))}/32\s+\*\[Static/") for a in self.addresses
            ]
        if device.platform == "fortinet":
            return [
                (
                    "get router info routing-table static",
                    rf"^S\s+{re.escape(str(a))}/32 .*via {re.escape(str(self.next_hop))}",
                )
                for a in self.addresses
            ]
        return []


# How each ACL-style platform prints one /32 route of ``address`` in its running config.
_ROUTE_LINE = {
    "cisco_asa": r"^route \S+ {address} 255\.255\.255\.255 \S+",
    "cisco_ios": r"^ip route {address} 255\.255\.255\.255 \S+",
}


def nat_object(address: IPv4Address) -> str:
    """The ASA network object that carries one public address's static NAT: ``rh-ip-203-0-113-136``."""
    return "rh-ip-" + str(address).replace(".", "-")
