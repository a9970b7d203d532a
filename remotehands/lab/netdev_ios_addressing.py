"""Static routes and secondary interface addresses of the simulated IOS-XE router (``netdev_ios``): what the
device keeps, how each configuration line is parsed and checked, and how the running configuration shows it.

A line is checked in full before anything changes. The methods answer an ``Outcome``: a ``str`` is IOS's
error text (printed, nothing changes), ``None`` a line that changes nothing, a callable the change for the
session to apply and count for the faults. A syntax error raises ``CliError`` (the caret).

Shown as IOS-XE shows them: `` ip address A MASK secondary`` under the interface after its primary address,
in the order added (the primary address itself is fixed in this simulator); ``ip route NETWORK MASK
GATEWAY`` lines (the distance only when it is not 1) sorted by network, mask and gateway, then ``ipv6 route
PREFIX GATEWAY`` lines (in capitals) sorted by prefix, in one block after the interfaces and before the
access-lists.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from remotehands.lab.netdev_acl import CliError, Word, invalid, parse_address, parse_ipv4, prefix_length

Change = Callable[[], object]
Outcome = Change | str | None

NO_ROUTE = "%No matching route to delete"
INCONSISTENT = "%Inconsistent address and mask"
OWN_NEXT_HOP = "%Invalid next hop address (it's this router)"
_INTERFACE = re.compile(r"([A-Za-z-]+)([0-9][0-9/.:]*)")


@dataclass(frozen=True)
class IosRoute:
    """``ip route NETWORK MASK GATEWAY [DISTANCE]``."""

    network: ipaddress.IPv4Address
    mask: ipaddress.IPv4Address
    gateway: ipaddress.IPv4Address
    distance: int = 1

    def key(self) -> tuple[int, int, int]:
        """What identifies the route (and orders the running configuration)."""
        return int(self.network), int(self.mask), int(self.gateway)

    def text(self) -> str:
        """As ``show running-config`` prints it."""
        distance = f" {self.distance}" if self.distance != 1 else ""
        return f"ip route {self.network} {self.mask} {self.gateway}{distance}"


@dataclass(frozen=True)
class Ipv6Route:
    """``ipv6 route PREFIX GATEWAY [DISTANCE]``."""

    prefix: ipaddress.IPv6Network
    gateway: ipaddress.IPv6Address
    distance: int = 1

    def key(self) -> tuple[int, int, int]:
        """What identifies the route (and orders the running configuration)."""
        return int(self.prefix.network_address), self.prefix.prefixlen, int(self.gateway)

    def text(self) -> str:
        """As ``show running-config`` prints it (IOS prints IPv6 in capitals)."""
        distance = f" {self.distance}" if self.distance != 1 else ""
        return f"ipv6 route {str(self.prefix).upper()} {str(self.gateway).upper()}{distance}"


class IosAddressing:
    """The interface addresses and static routes of one IOS router; ``primaries`` maps each interface to
    its primary address."""

    def __init__(self, primaries: dict[str, ipaddress.IPv4Interface]) -> None:
        self.primaries = primaries
        self.secondaries: dict[str, list[ipaddress.IPv4Interface]] = {name: [] for name in primaries}
        self.routes: list[IosRoute] = []
        self.routes6: list[Ipv6Route] = []

    def copy(self) -> IosAddressing:
        """An independent copy (the rollback point of a revert timer)."""
        other = IosAddressing(dict(self.primaries))
        other.secondaries = {name: list(found) for name, found in self.secondaries.items()}
        other.routes, other.routes6 = list(self.routes), list(self.routes6)
        return other

    # --- what the running configuration shows ------------------------------------------------------------

    def interface_lines(self, name: str) -> list[str]:
        """The ``ip address`` lines of interface ``name``: the primary, then the secondaries."""
        primary = self.primaries[name]
        lines = [f" ip address {primary.ip} {primary.netmask}"]
        return lines + [f" ip address {a.ip} {a.netmask} secondary" for a in self.secondaries[name]]

    def route_lines(self) -> list[str]:
        """The ``ip route`` then ``ipv6 route`` lines, each sorted."""
        routes = [route.text() for route in sorted(self.routes, key=IosRoute.key)]
        return routes + [route.text() for route in sorted(self.routes6, key=Ipv6Route.key)]

    # --- configuration lines -----------------------------------------------------------------------------

    def interface_name(self, words: list[Word], end: int) -> str:
        """The interface ``interface NAME`` names (``words`` after ``interface``): ``GigabitEthernet0/1``,
        ``Gi0/1`` or ``GigabitEthernet 0/1``. Raises ``CliError`` for one the router does not have."""
        if not words:
            raise CliError("incomplete", end)
        typed = "".join(word.text for word in words)
        wanted = _INTERFACE.fullmatch(typed)
        for name in self.primaries:
            known = _INTERFACE.fullmatch(name)
            if name.lower() == typed.lower() or (
                wanted and known and known[1].lower().startswith(wanted[1].lower()) and known[2] == wanted[2]
            ):
                return name
        raise invalid(words[-1])

    def route(self, words: list[Word], end: int, *, remove: bool) -> Outcome:
        """``[no] ip route NETWORK MASK GATEWAY [DISTANCE]`` (``words`` after ``route``); ``no ip route
        NETWORK MASK`` removes every route to that network. Raises ``CliError``."""
        if remove and len(words) == 2:
            network, mask = parse_ipv4(words[0]), parse_ipv4(words[1])
            gone = [old for old in self.routes if (old.network, old.mask) == (network, mask)]
            return NO_ROUTE if not gone else (lambda: _drop(self.routes, gone))
        if len(words) < 3:
            raise CliError("incomplete", end)
        network, mask, gateway = parse_ipv4(words[0]), parse_ipv4(words[1]), parse_ipv4(words[2])
        route = IosRoute(network, mask, gateway, _distance(words[3:]))
        if prefix_length(int(mask)) is None or int(network) & ~int(mask) & 0xFFFFFFFF:
            return INCONSISTENT
        if any(gateway == address.ip for address in self._addresses()):
            return OWN_NEXT_HOP
        existing = next((old for old in self.routes if old.key() == route.key()), None)
        if remove:
            return NO_ROUTE if existing is None else (lambda: self.routes.remove(existing))
        return _replace(self.routes, existing, route)

    def route6(self, words: list[Word], end: int, *, remove: bool) -> Outcome:
        """``[no] ipv6 route PREFIX GATEWAY [DISTANCE]`` (``words`` after ``route``); ``no ipv6 route
        PREFIX`` removes every route to that prefix. Raises ``CliError``."""
        if not words or (len(words) < 2 and not remove):
            raise CliError("incomplete", end)
        try:
            prefix = ipaddress.ip_network(words[0].text, strict=False)
        except ValueError:
            raise invalid(words[0]) from None
        if not isinstance(prefix, ipaddress.IPv6Network) or "/" not in words[0].text:
            raise invalid(words[0])
        if remove and len(words) == 1:
            gone = [old for old in self.routes6 if old.prefix == prefix]
            return NO_ROUTE if not gone else (lambda: _drop(self.routes6, gone))
        gateway = parse_address(words[1])
        if not isinstance(gateway, ipaddress.IPv6Address):
            raise invalid(words[1])
        route = Ipv6Route(prefix, gateway, _distance(words[2:]))
        existing = next((old for old in self.routes6 if old.key() == route.key()), None)
        if remove:
            return NO_ROUTE if existing is None else (lambda: self.routes6.remove(existing))
        return _replace(self.routes6, existing, route)

    def secondary(self, name: str, words: list[Word], end: int, *, remove: bool) -> Outcome:
        """``[no] ip address A MASK secondary`` on interface ``name`` (``words`` after ``address``).
        Removing an address the interface does not have changes nothing. Raises ``CliError``."""
        if len(words) < 3:
            raise CliError("incomplete", end)
        address, mask = parse_ipv4(words[0]), parse_ipv4(words[1])
        if not "secondary".startswith(words[2].text.lower()):
            raise invalid(words[2])
        if len(words) > 3:
            raise invalid(words[3])
        length = prefix_length(int(mask))
        if length is None:
            return f"Bad mask 0x{int(mask):08X} for address {address}"
        added = ipaddress.IPv4Interface((int(address), length))
        if length < 31 and address in (added.network.network_address, added.network.broadcast_address):
            return f"Bad mask /{length} for address {address}"
        found = self.secondaries[name]
        if remove:
            return None if added not in found else (lambda: found.remove(added))
        if added in found:
            return None
        for other, addresses in self.secondaries.items():
            clash = other != name and any(
                a.network.overlaps(added.network) for a in [self.primaries[other], *addresses]
            )
            if clash:
                network = added.network.network_address
                return f"% {network} overlaps with {other}\n{name}: incorrect IP address assignment"
        return lambda: found.append(added)

    def _addresses(self) -> list[ipaddress.IPv4Interface]:
        return [*self.primaries.values(), *(a for found in self.secondaries.values() for a in found)]


_Route = TypeVar("_Route", IosRoute, Ipv6Route)


def _distance(words: list[Word]) -> int:
    """The optional administrative distance after the gateway (1 when absent)."""
    if not words:
        return 1
    if not words[0].text.isdigit() or not 1 <= int(words[0].text) <= 255:
        raise invalid(words[0])
    if len(words) > 1:
        raise invalid(words[1])
    return int(words[0].text)


def _drop(routes: list[_Route], gone: list[_Route]) -> None:
    """Remove the routes ``gone`` from ``routes``, in place."""
    routes[:] = [route for route in routes if route not in gone]


def _replace(routes: list[_Route], existing: _Route | None, route: _Route) -> Outcome:
    """Add ``route``, or give ``existing`` (the same route) its new distance; None if nothing changes."""
    if existing == route:
        return None
    if existing is None:
        return lambda: routes.append(route)
    index = routes.index(existing)
    return lambda: routes.__setitem__(index, route)
