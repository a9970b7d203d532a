"""A site's IP plan as the inventory declares it (``sites.<site>.ip_plan`` in ``group_vars/all.yml``):

    ip_plan:
      prefixes:
        - prefix: 198.51.100.0/24
          gateway: 198.51.100.1
          reserved: [198.51.100.1-198.51.100.15, 198.51.100.200]
          description: customer public

Validated with ``ipaddress`` when the inventory loads: an invalid CIDR, a prefix with host bits set, a
gateway or reserved range outside its prefix and two overlapping prefixes of one site are inventory problems
with the field path. ``remotehands.network.ipam`` seeds its tables from this; assignments live in the DB.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator

IpAddress = IPv4Address | IPv6Address
IpNetwork = IPv4Network | IPv6Network
Span = tuple[int, int]  # first and last address as integers, inclusive


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def parse_network(value: object) -> IpNetwork:
    """``value`` as a network prefix (``198.51.100.0/24``); raises ``ValueError`` saying what to write."""
    if isinstance(value, IPv4Network | IPv6Network):
        return value
    text = str(value).strip()
    if "/" not in text:
        raise ValueError(f"{text!r} is not a CIDR prefix; write it with its length, e.g. 198.51.100.0/24")
    try:
        return ipaddress.ip_network(text)
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(f"{text!r} is not a valid CIDR prefix ({exc})") from None
        raise ValueError(f"{text!r} has host bits set; the prefix is {loose}") from None


def parse_address(value: object) -> IpAddress:
    """``value`` as one IPv4/IPv6 address; raises ``ValueError`` naming the value."""
    if isinstance(value, IPv4Address | IPv6Address):
        return value
    try:
        return ipaddress.ip_address(str(value).strip())
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None


class ReservedRange(_Model):
    """Addresses of a prefix that are never handed out (routers, VRRP, the provider's own), inclusive."""

    start: IpAddress
    end: IpAddress
    reason: str = ""

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        # "a-b" or "a" as written in YAML; a mapping {start, end, reason} as well.
        if isinstance(value, str):
            start, _, end = value.partition("-")
            return {"start": parse_address(start), "end": parse_address(end or start)}
        if isinstance(value, Mapping):
            body = dict(value)
            for key in ("start", "end"):
                if key in body:
                    body[key] = parse_address(body[key])
            return body
        raise ValueError("a reserved range is written 'first-last' or a single address")

    @model_validator(mode="after")
    def _ordered(self) -> ReservedRange:
        if self.start.version != self.end.version:
            raise ValueError(f"{self.start}-{self.end} mixes IPv4 and IPv6")
        if int(self.end) < int(self.start):
            raise ValueError(f"{self.start}-{self.end} ends before it starts; write first-last")
        return self

    def __str__(self) -> str:
        return str(self.start) if self.start == self.end else f"{self.start}-{self.end}"


class PlannedPrefix(_Model):
    """One prefix of a site: where customers' addresses come from."""

    prefix: IpNetwork
    gateway: IpAddress | None = None
    reserved: tuple[ReservedRange, ...] = ()
    description: str = ""

    @field_validator("prefix", mode="before")
    @classmethod
    def _network(cls, value: object) -> IpNetwork:
        return parse_network(value)

    @field_validator("gateway", mode="before")
    @classmethod
    def _gateway(cls, value: object, info: ValidationInfo) -> IpAddress | None:
        if value is None:
            return None
        address = parse_address(value)
        prefix = info.data.get("prefix")
        if prefix is not None and address not in prefix:
            raise ValueError(f"gateway {address} is outside its prefix {prefix}")
        return address

    @field_validator("reserved")
    @classmethod
    def _inside(cls, ranges: tuple[ReservedRange, ...], info: ValidationInfo) -> tuple[ReservedRange, ...]:
        prefix = info.data.get("prefix")
        for i, r in enumerate(ranges):
            if prefix is not None and (r.start not in prefix or r.end not in prefix):
                raise ValueError(f"reserved range {i} ({r}) is outside its prefix {prefix}")
        return ranges

    def blocked(self) -> list[tuple[int, int, str]]:
        """Spans never handed out, with why: the network's edges, the gateway and the reserved ranges."""
        net = self.prefix
        first, last = int(net.network_address), int(net.broadcast_address)
        spans: list[tuple[int, int, str]] = []
        # Not hosts' addresses by RFC: IPv4 network and broadcast (except /31 and /32, RFC 3021), IPv6's
        # subnet-router anycast address (RFC 4291 2.6.1; NetBox skips it too).
        if net.version == 4 and net.prefixlen < 31:
            spans += [(first, first, "the network address"), (last, last, "the broadcast address")]
        elif net.version == 6 and net.prefixlen < 127:
            spans.append((first, first, "the subnet-router anycast address"))
        if self.gateway is not None:
            spans.append((int(self.gateway), int(self.gateway), "the gateway"))
        for r in self.reserved:
            spans.append((int(r.start), int(r.end), f"reserved ({r.reason})" if r.reason else "reserved"))
        return spans

    def blocked_why(self, address: IpAddress) -> str | None:
        """Why ``address`` is never handed out, or None when it may be."""
        value = int(address)
        return next((why for first, last, why in self.blocked() if first <= value <= last), None)

    def taken(self, used: Iterable[IpAddress]) -> list[Span]:
        """Blocked and ``used`` addresses of this prefix as sorted, merged spans."""
        net = self.prefix
        inside = [(int(a), int(a)) for a in used if a.version == net.version and a in net]
        return merge_spans([*((first, last) for first, last, _ in self.blocked()), *inside])

    def free(self, used: Iterable[IpAddress] = ()) -> int:
        """How many addresses can still be handed out when ``used`` are assigned (all of them if none)."""
        return self.prefix.num_addresses - sum(last - first + 1 for first, last in self.taken(used))

    def free_addresses(self, used: Iterable[IpAddress]) -> Iterator[IpAddress]:
        """Free addresses in ascending order; jumps over taken spans, so a /64 costs what its
        assignments cost, not what its size does."""
        current, end = int(self.prefix.network_address), int(self.prefix.broadcast_address)
        for first, last in [*self.taken(used), (end + 1, end + 1)]:
            while current < first and current <= end:
                yield ipaddress.ip_address(current)
                current += 1
            current = max(current, last + 1)
            if current > end:
                return


def merge_spans(spans: Iterable[Span]) -> list[Span]:
    """``spans`` sorted, with overlapping and adjacent ones joined."""
    merged: list[Span] = []
    for first, last in sorted(spans):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


class SiteIpPlan(_Model):
    """Every prefix of one site; prefixes of a site never overlap."""

    prefixes: tuple[PlannedPrefix, ...] = ()

    @field_validator("prefixes")
    @classmethod
    def _disjoint(cls, prefixes: tuple[PlannedPrefix, ...]) -> tuple[PlannedPrefix, ...]:
        for i, a in enumerate(prefixes):
            for j, b in enumerate(prefixes[:i]):
                if a.prefix.version == b.prefix.version and a.prefix.overlaps(b.prefix):
                    raise ValueError(
                        f"prefix {i} ({a.prefix}) overlaps prefix {j} ({b.prefix}); a site's prefixes are "
                        "disjoint, remove or split one"
                    )
        return prefixes
