"""Static routes and network-object (auto) NAT of the simulated ASA (``netdev_asa``): what the device keeps,
how each configuration line is parsed and checked, and how the running configuration shows it.

A line is checked in full before anything changes. The methods answer an ``Outcome``: a ``str`` is the
ASA's error line (printed, nothing changes), ``None`` a line that changes nothing (already so), a callable
the change for the session to apply and count for the faults. A syntax error raises ``CliError`` (the caret).

Shown as ASA 9.x shows them: object definitions (``object network NAME`` / `` host A``) after
``ftp mode passive``; each object's NAT in a second ``object network NAME`` block (`` nat (inside,outside)
static 198.51.100.20``) after the ``mtu`` lines; routes after the ``access-group`` lines, in the order they
were added, with their metric (``route inside 198.51.100.20 255.255.255.255 10.10.0.20 1``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

from remotehands.lab.netdev_acl import (
    CliError,
    IpAddress,
    Word,
    invalid,
    parse_address,
    parse_ipv4,
    prefix_length,
)

Change = Callable[[], object]
Outcome = Change | str | None

ROUTE_CONFLICT = "ERROR: Cannot add route entry, possible conflict with existing routes."
NO_ROUTE = "ERROR: Route entry does not exist"
NAT_WITHOUT_ADDRESS = "ERROR: NAT is not supported for an object without an IP address"
NO_NAT = "ERROR: NAT rule does not exist for this object"
EQUAL_COST_ROUTES = 3  # equal-cost routes to one network an ASA load-shares over (one interface only)
_OBJECT_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_INTERFACE_PAIR = re.compile(r"\(([^,()]+),([^,()]+)\)")
_LOOKS_NUMERIC = re.compile(r"[0-9.]+|[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*")


@dataclass(frozen=True)
class AsaRoute:
    """One static route: ``route NAMEIF NETWORK MASK GATEWAY METRIC``."""

    nameif: str
    network: ipaddress.IPv4Address
    mask: ipaddress.IPv4Address
    gateway: ipaddress.IPv4Address
    metric: int = 1

    def text(self) -> str:
        """As ``show running-config`` prints it (the metric always shown)."""
        return f"route {self.nameif} {self.network} {self.mask} {self.gateway} {self.metric}"

    def same(self, other: AsaRoute) -> bool:
        """The same route whatever its metric (what a ``no route`` line matches)."""
        return (self.nameif, self.network, self.mask, self.gateway) == (
            other.nameif,
            other.network,
            other.mask,
            other.gateway,
        )


@dataclass(frozen=True)
class ObjectNat:
    """An object's static NAT: ``nat (REAL_IF,MAPPED_IF) static MAPPED``."""

    real_if: str
    mapped_if: str
    mapped: str  # an address or another network object's name, as printed

    def text(self) -> str:
        """As printed inside the object's NAT block (without the leading space)."""
        return f"nat ({self.real_if},{self.mapped_if}) static {self.mapped}"


@dataclass
class NetworkObject:
    """``object network NAME``: its address (``host A``) and its NAT, if any."""

    name: str
    host: IpAddress | None = None
    nat: ObjectNat | None = None


class AsaAddressing:
    """The routes and network objects of one ASA whose interfaces are named ``nameifs``."""

    def __init__(self, nameifs: list[str]) -> None:
        self.nameifs = nameifs
        self.routes: list[AsaRoute] = []
        self.objects: dict[str, NetworkObject] = {}

    # --- what the running configuration shows ------------------------------------------------------------

    def object_lines(self, name: str | None = None) -> list[str]:
        """The object definitions (``show running-config object network [NAME]``)."""
        lines: list[str] = []
        for obj in self.objects.values():
            if name is None or obj.name == name:
                lines.append(f"object network {obj.name}")
                lines += [f" host {obj.host}"] if obj.host is not None else []
        return lines

    def nat_lines(self) -> list[str]:
        """The objects' NAT blocks (``show running-config nat``)."""
        return [
            line
            for obj in self.objects.values()
            if obj.nat is not None
            for line in (f"object network {obj.name}", f" {obj.nat.text()}")
        ]

    def route_lines(self) -> list[str]:
        """The static routes (``show running-config route``)."""
        return [route.text() for route in self.routes]

    # --- configuration lines -----------------------------------------------------------------------------

    def route(self, words: list[Word], end: int, *, remove: bool) -> Outcome:
        """``[no] route IF NETWORK MASK GATEWAY [METRIC]`` (``words`` after ``route``; ``end`` the line's
        length). ``no`` matches whatever the metric. Raises ``CliError``."""
        route = self._parse_route(words, end)
        existing = next((old for old in self.routes if old.same(route)), None)
        if remove:
            if existing is None:
                return NO_ROUTE
            return lambda: self.routes.remove(existing)
        if existing == route:
            return None
        if existing is not None:  # a new metric for the same route
            index = self.routes.index(existing)
            return lambda: self.routes.__setitem__(index, route)
        peers = [
            old
            for old in self.routes
            if (old.network, old.mask, old.metric) == (route.network, route.mask, route.metric)
        ]
        if any(old.nameif != route.nameif for old in peers) or len(peers) >= EQUAL_COST_ROUTES:
            return ROUTE_CONFLICT
        return lambda: self.routes.append(route)

    def object_name(self, words: list[Word], end: int) -> str:
        """The NAME of ``object network NAME`` (``words`` after ``network``). Raises ``CliError``."""
        if not words:
            raise CliError("incomplete", end)
        if not _OBJECT_NAME.fullmatch(words[0].text):
            raise invalid(words[0])
        if len(words) > 1:
            raise invalid(words[1])
        return words[0].text

    def remove_object(self, words: list[Word], end: int) -> Outcome:
        """``no object network NAME``: the object, its definition and its NAT. Raises ``CliError``."""
        name = self.object_name(words, end)
        if name not in self.objects:
            return f"ERROR: Object ({name}) does not exist."
        if any(obj.nat is not None and obj.nat.mapped == name for obj in self.objects.values()):
            return f"ERROR: Object ({name}) is in use by a NAT rule and cannot be removed."
        return lambda: self.objects.pop(name)

    def host(self, name: str, words: list[Word], end: int) -> Outcome:
        """``host A`` in object ``name`` (``words`` after ``host``); replaces its address. Raises
        ``CliError``."""
        if not words:
            raise CliError("incomplete", end)
        address = parse_address(words[0])
        if len(words) > 1:
            raise invalid(words[1])
        obj = self.objects[name]
        if obj.host == address:
            return None
        return lambda: setattr(obj, "host", address)

    def nat(self, name: str, words: list[Word], end: int, *, remove: bool) -> Outcome:
        """``[no] nat (REAL_IF,MAPPED_IF) static MAPPED`` in object ``name`` (``words`` after ``nat``);
        MAPPED is an address or another network object. An object has one NAT: a new one replaces it.
        Raises ``CliError``."""
        if len(words) < 3:
            raise CliError("incomplete", end)
        pair = _INTERFACE_PAIR.fullmatch(words[0].text)
        if pair is None:
            raise invalid(words[0])
        for group in (1, 2):
            if pair[group] != "any" and pair[group] not in self.nameifs:
                raise CliError("invalid", words[0].column + pair.start(group))
        if not "static".startswith(words[1].text.lower()):
            raise invalid(words[1])
        mapped = self._mapped(words[2], name)
        if len(words) > 3:
            raise invalid(words[3])
        nat = ObjectNat(pair[1], pair[2], mapped)
        obj = self.objects[name]
        if remove:
            return NO_NAT if obj.nat != nat else (lambda: setattr(obj, "nat", None))
        if obj.host is None:
            return NAT_WITHOUT_ADDRESS
        if obj.nat == nat:
            return None
        return lambda: setattr(obj, "nat", nat)

    def _parse_route(self, words: list[Word], end: int) -> AsaRoute:
        if len(words) < 4:
            raise CliError("incomplete", end)
        if words[0].text not in self.nameifs:
            raise invalid(words[0])
        network, mask, gateway = parse_ipv4(words[1]), parse_ipv4(words[2]), parse_ipv4(words[3])
        metric = 1
        if len(words) > 4:
            if not words[4].text.isdigit() or not 1 <= int(words[4].text) <= 255:
                raise invalid(words[4])
            metric = int(words[4].text)
        if len(words) > 5:
            raise invalid(words[5])
        # The parser checks the syntax of the whole line first; the pairing is checked after.
        if prefix_length(int(mask)) is None or int(network) & ~int(mask) & 0xFFFFFFFF:
            raise CliError("message", message=f"ERROR: IP address,mask <{network},{mask}> doesn't pair")
        return AsaRoute(words[0].text, network, mask, gateway, metric)

    def _mapped(self, word: Word, name: str) -> str:
        try:
            return str(ipaddress.ip_address(word.text))
        except ValueError:
            pass
        if _LOOKS_NUMERIC.fullmatch(word.text) or word.text == name or word.text not in self.objects:
            raise invalid(word)  # 300.1.1.1, the object itself, or no such object
        return word.text
