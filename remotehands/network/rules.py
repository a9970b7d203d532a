"""A firewall rule as a ticket asks for it, checked with ``ipaddress`` before anything touches a device.

A rule's identity (``FirewallRule.name``, ``rh-<8 hex>``) is derived from what it matches and allows, not
from the ticket that asked for it: the same rule asked twice is found as already present, and a later ticket
that removes it finds it by the same name. The ticket id travels as the rule's comment.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Literal

from remotehands.errors import InvalidRequest
from remotehands.inventory.ip_plan import IpAddress, IpNetwork
from remotehands.inventory.models import NetworkDevice

PROTOCOLS = ("tcp", "udp", "icmp", "ip")
TICKET_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
RULE_FIELDS = ("op", "action", "source", "destination", "protocol", "ports", "from_zone", "to_zone")


@dataclass(frozen=True)
class PortRange:
    """Destination ports ``first``..``last`` (one port when equal)."""

    first: int
    last: int

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


@dataclass(frozen=True)
class FirewallRule:
    """One rule: ``source``/``destination`` ``None`` mean any address; ``ports`` ``None`` means any port."""

    op: Literal["add", "remove"]
    action: Literal["permit", "deny"]
    source: IpNetwork | None
    destination: IpNetwork | None
    protocol: Literal["tcp", "udp", "icmp", "ip"]
    ports: PortRange | None
    from_zone: str
    to_zone: str
    ticket_id: str

    @property
    def name(self) -> str:
        """``rh-<8 hex>`` from the fields that make the rule (not the ticket, not add/remove)."""
        canonical = "|".join(
            str(v)
            for v in (
                self.action,
                self.source,
                self.destination,
                self.protocol,
                self.ports,
                self.from_zone,
                self.to_zone,
            )
        )
        return "rh-" + hashlib.sha256(canonical.encode()).hexdigest()[:8]

    @property
    def version(self) -> int:
        """4 or 6: the IP version of the addresses (4 when both are any)."""
        for net in (self.source, self.destination):
            if net is not None:
                return net.version
        return 4

    def describe(self) -> str:
        """One line for the ticket: ``permit tcp 203.0.113.0/24 -> 198.51.100.20/32 port 443 (outside->inside)``."""
        ports = f" port {self.ports}" if self.ports else ""
        return (
            f"{self.action} {self.protocol} {self.source or 'any'} -> {self.destination or 'any'}{ports} "
            f"({self.from_zone}->{self.to_zone})"
        )

    def probe(self) -> tuple[IpAddress, IpAddress, int]:
        """A source, destination and port that this rule matches, for a platform's packet tracer."""
        return (
            _sample(self.source, "203.0.113.1"),
            _sample(self.destination, "198.51.100.1"),
            self.probe_port,
        )

    @property
    def probe_port(self) -> int:
        return self.ports.first if self.ports else 443


def _sample(net: IpNetwork | None, fallback: str) -> IpAddress:
    if net is None:
        return ipaddress.ip_address(fallback)
    if net.num_addresses == 1:
        return net.network_address
    return ipaddress.ip_address(int(net.network_address) + 1)


def parse_rule(params: dict[str, Any], device: NetworkDevice, ticket_id: str) -> FirewallRule:
    """The rule ``params`` (a ticket's ``request.params``) describes, for ``device``.

    Raises ``InvalidRequest`` naming the field (``request.params.ports``) and the fix: an unknown field, an
    invalid address or CIDR, a port outside 1..65535, ports for icmp/ip, a zone the device does not have,
    or IPv4 mixed with IPv6."""
    if not TICKET_ID.fullmatch(ticket_id):
        # The ticket id goes into remarks, descriptions and commit comments on the device's CLI.
        raise InvalidRequest(
            f"ticket id {ticket_id!r} cannot be written into a device's configuration",
            fix="ticket ids for network changes are letters, digits, '.', '_' and '-'",
        )
    unknown = sorted(set(params) - set(RULE_FIELDS))
    if unknown:
        raise InvalidRequest(
            f"request.params: unknown field(s) {', '.join(unknown)} for a firewall rule",
            fix="fields are " + ", ".join(RULE_FIELDS),
        )
    op = _choice(params, "op", ("add", "remove"), "add")
    action = _choice(params, "action", ("permit", "deny"), "permit")
    protocol = _choice(params, "protocol", PROTOCOLS, None)
    source = _endpoint(params, "source")
    destination = _endpoint(params, "destination")
    if source is not None and destination is not None and source.version != destination.version:
        raise InvalidRequest(
            f"request.params: source {source} is IPv{source.version} and destination {destination} is "
            f"IPv{destination.version}",
            fix="a rule's addresses are all IPv4 or all IPv6; ask for two rules",
        )
    ports = _ports(params.get("ports"), protocol)
    zones = {name: _zone(params, name, device) for name in ("from_zone", "to_zone")}
    if zones["from_zone"] == zones["to_zone"]:
        raise InvalidRequest(
            f"request.params: from_zone and to_zone are both {zones['from_zone']!r}",
            fix="a rule crosses two zones of the firewall",
        )
    return FirewallRule(
        op=op,  # type: ignore[arg-type]
        action=action,  # type: ignore[arg-type]
        source=source,
        destination=destination,
        protocol=protocol,  # type: ignore[arg-type]
        ports=ports,
        from_zone=zones["from_zone"],
        to_zone=zones["to_zone"],
        ticket_id=ticket_id,
    )


def _choice(params: dict[str, Any], key: str, allowed: tuple[str, ...], default: str | None) -> str:
    value = params.get(key, default)
    if value is None:
        raise InvalidRequest(f"request.params.{key} is missing", fix="one of: " + ", ".join(allowed))
    text = str(value).strip().lower()
    if text not in allowed:
        raise InvalidRequest(
            f"request.params.{key} {value!r} is not valid", fix="one of: " + ", ".join(allowed)
        )
    return text


def _endpoint(params: dict[str, Any], key: str) -> IpNetwork | None:
    value = params.get(key)
    if value is None:
        raise InvalidRequest(
            f"request.params.{key} is missing",
            fix="an address (198.51.100.20), a CIDR prefix (203.0.113.0/24) or 'any'",
        )
    text = str(value).strip()
    if text.lower() == "any":
        return None
    try:
        return ipaddress.ip_network(text)
    except ValueError as exc:
        hint = ""
        with contextlib.suppress(ValueError):
            hint = f"; the prefix is {ipaddress.ip_network(text, strict=False)}"
        raise InvalidRequest(
            f"request.params.{key} {text!r} is not a valid address or CIDR prefix ({exc}){hint}",
            fix="write an address (198.51.100.20), a CIDR prefix (203.0.113.0/24) or 'any'",
        ) from None


def _ports(value: object, protocol: str) -> PortRange | None:
    if value is None or str(value).strip() in ("", "any"):
        return None
    if protocol not in ("tcp", "udp"):
        raise InvalidRequest(
            f"request.params.ports {value!r} given for protocol {protocol}",
            fix="ports apply to tcp and udp only; leave ports out",
        )
    text = str(value).strip()
    first, sep, last = text.partition("-")
    try:
        low, high = int(first), int(last if sep else first)
    except ValueError:
        raise InvalidRequest(
            f"request.params.ports {text!r} is not a port or a range",
            fix="write one port (443) or a range (8000-8010)",
        ) from None
    for port in (low, high):
        if not 1 <= port <= 65535:
            raise InvalidRequest(
                f"request.params.ports: port {port} is outside 1..65535", fix="ports are 1 to 65535"
            )
    if high < low:
        raise InvalidRequest(
            f"request.params.ports {text!r} ends before it starts", fix="write the range low-high"
        )
    return PortRange(low, high)


def _zone(params: dict[str, Any], key: str, device: NetworkDevice) -> str:
    value = params.get(key)
    known = ", ".join(sorted(device.zones)) or "none (add zones to the device in the inventory)"
    if value is None:
        raise InvalidRequest(f"request.params.{key} is missing", fix=f"zones of {device.name}: {known}")
    name = str(value).strip()
    if name not in device.zones:
        raise InvalidRequest(
            f"request.params.{key}: {device.name} has no zone {name!r}",
            fix=f"zones of {device.name}: {known}",
        )
    return name
