"""The data of the NetBox simulator (``remotehands.lab.netbox_sim``): sites, tenants, prefixes and
ip-address objects in memory, behind one lock, with the rules NetBox applies to them.

Copied from NetBox 4.x: an allocation finds free addresses and creates them under the one lock, as NetBox
does under its advisory lock; a duplicate address is refused (``ENFORCE_GLOBAL_UNIQUE``); an unknown custom
field in a write is a field error; a text custom field filters loosely (``cf_key=job-4`` matches
``job-42``); an unknown filter is ignored. Everything is in the global table (no VRFs, no tags).

Free addresses: pools, IPv4 /31-/32 and every IPv6 prefix are whole, other IPv4 prefixes lose their network
and broadcast address; ``mark_utilized`` leaves none. That is NetBox's utilization rule; its
``available-ips`` also skips the subnet-router anycast address (the first) of a non-pool IPv6 prefix shorter
than /127, which the simulator does not.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from starlette.datastructures import QueryParams

IP_STATUSES = ("active", "reserved", "deprecated", "dhcp", "slaac")
START = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)

T = TypeVar("T")
Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class Prefix:
    id: int
    prefix: Network
    site_id: int
    status: str
    role: str | None
    is_pool: bool
    mark_utilized: bool
    description: str


@dataclass
class IpAddressObject:
    id: int
    address: Interface
    tenant_id: int | None
    status: str
    description: str
    custom_fields: dict[str, Any]
    created: datetime = START


@dataclass
class _State:
    sites: dict[int, dict[str, Any]] = field(default_factory=dict)
    tenants: dict[int, dict[str, Any]] = field(default_factory=dict)
    prefixes: dict[int, Prefix] = field(default_factory=dict)
    ips: dict[int, IpAddressObject] = field(default_factory=dict)
    next_id: int = 0


def _loose(name: str) -> Callable[[IpAddressObject, list[str]], bool]:
    """NetBox's default ("loose") filter logic for a text custom field: case-insensitive containment."""
    return lambda ip, v: v[0].lower() in str(ip.custom_fields.get(name) or "").lower()


def _apply(found: list[T], checks: dict[str, Callable[[T, list[str]], bool]], q: QueryParams) -> list[T]:
    """Filter as django-filter does: each named filter given narrows the list, unknown ones are ignored."""
    for name, check in checks.items():
        values = q.getlist(name)
        if values:
            found = [obj for obj in found if check(obj, values)]
    return found


class NetBoxData:
    """In-memory NetBox data behind one lock (``_lock``). The public methods seed and inspect it and take
    the lock themselves; the protected ones are NetBox's rules, for the HTTP side to call with the lock
    held, so that finding free addresses and creating them is one step."""

    def __init__(self, *, ip_custom_fields: tuple[str, ...], enforce_unique: bool) -> None:
        self.ip_custom_fields = ip_custom_fields
        self.enforce_unique = enforce_unique
        self._lock = threading.Lock()
        self._s = _State()

    # -- seeding and inspecting (direct calls, no HTTP) -----------------------------------------------

    def add_site(self, slug: str, name: str | None = None) -> int:
        return self._add_named(self._s.sites, slug, name or slug.upper())

    def add_tenant(self, slug: str, name: str | None = None) -> int:
        return self._add_named(self._s.tenants, slug, name or slug.title())

    def _add_named(self, table: dict[int, dict[str, Any]], slug: str, name: str) -> int:
        with self._lock:
            obj_id = self._new_id()
            table[obj_id] = {"id": obj_id, "name": name, "slug": slug}
            return obj_id

    def add_prefix(
        self,
        prefix: str,
        *,
        site: str,
        status: str = "active",
        role: str | None = None,
        is_pool: bool = False,
        mark_utilized: bool = False,
        description: str = "",
    ) -> int:
        with self._lock:
            site_id = next(s["id"] for s in self._s.sites.values() if s["slug"] == site)
            prefix_id = self._new_id()
            network = ipaddress.ip_network(prefix)
            self._s.prefixes[prefix_id] = Prefix(
                prefix_id, network, site_id, status, role, is_pool, mark_utilized, description
            )
            return prefix_id

    def add_ip(self, address: str, *, tenant: str | None = None, description: str = "", **custom: Any) -> int:
        """An address somebody else entered (a router, a manual assignment)."""
        with self._lock:
            tenant_id = next((t["id"] for t in self._s.tenants.values() if t["slug"] == tenant), None)
            ip = IpAddressObject(
                self._new_id(), ipaddress.ip_interface(address), tenant_id, "active", description, custom
            )
            self._s.ips[ip.id] = ip
            return ip.id

    def addresses(self) -> dict[str, dict[str, Any]]:
        """Every IP address object, by host address: tenant slug, description, custom fields."""
        with self._lock:
            return {
                str(ip.address.ip): {
                    "tenant": self._s.tenants[ip.tenant_id]["slug"] if ip.tenant_id else None,
                    "description": ip.description,
                    "custom_fields": dict(ip.custom_fields),
                }
                for ip in self._s.ips.values()
            }

    # -- NetBox's rules (the caller holds the lock) ---------------------------------------------------

    def _new_id(self) -> int:
        self._s.next_id += 1
        return self._s.next_id

    def _available(self, prefix: Prefix, limit: int) -> tuple[list[Interface], int]:
        """Up to ``limit`` free addresses and how many are free, by the rule in the module docstring; every
        address in the table is taken. Lazy, so a /64 costs what the answer needs."""
        net = prefix.prefix
        edge = 0 if net.version == 6 or prefix.is_pool or net.prefixlen >= 31 else 1
        first, last = int(net.network_address) + edge, int(net.broadcast_address) - edge
        if prefix.mark_utilized or last < first:
            return [], 0
        taken = {int(ip.address.ip) for ip in self._s.ips.values() if ip.address.ip in net}
        taken = {host for host in taken if first <= host <= last}
        free: list[Interface] = []
        host, cls = first, type(net.network_address)
        while len(free) < limit and host <= last:
            if host not in taken:
                free.append(ipaddress.ip_interface(f"{cls(host)}/{net.prefixlen}"))
            host += 1
        return free, last - first + 1 - len(taken)

    def _validate_ip(
        self, data: Any, address: Interface | None
    ) -> tuple[dict[str, list[str]], IpAddressObject | None]:
        """An unsaved ``IpAddressObject`` from a request body, or NetBox's field errors."""
        errors: dict[str, list[str]] = {}
        if not isinstance(data, dict):
            return {"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}, None
        if address is None:
            try:
                address = ipaddress.ip_interface(str(data.get("address", "")))
                if "/" not in str(data["address"]):
                    errors["address"] = ["Please specify a mask."]
            except (ValueError, KeyError):
                errors["address"] = ["Enter a valid IPv4 or IPv6 address with optional mask."]
        status = data.get("status", "active")
        if status not in IP_STATUSES:
            errors["status"] = [f'"{status}" is not a valid choice.']
        tenant_id = self._related(data.get("tenant"), self._s.tenants, "tenant", errors)
        unknown = [k for k in (data.get("custom_fields") or {}) if k not in self.ip_custom_fields]
        if unknown:
            errors["custom_fields"] = [f"Unknown field name '{unknown[0]}' in custom field data."]
        if errors or address is None:
            return errors, None
        if self.enforce_unique and any(ip.address.ip == address.ip for ip in self._s.ips.values()):
            return {"address": [f"Duplicate IP address found in global table: {address}"]}, None
        cfs = dict(data.get("custom_fields") or {})
        ip = IpAddressObject(0, address, tenant_id, status, str(data.get("description", "")), cfs)
        return {}, ip

    @staticmethod
    def _related(
        value: Any, table: dict[int, dict[str, Any]], name: str, errors: dict[str, list[str]]
    ) -> int | None:
        if value is None:
            return None
        if isinstance(value, int):
            if value in table:
                return value
            errors[name] = [f"Related object not found using the provided numeric ID: {value}"]
            return None
        if isinstance(value, dict):
            for obj in table.values():
                if all(obj.get(k) == v for k, v in value.items()):
                    return int(obj["id"])
        errors[name] = [f"Related object not found using the provided attributes: {value}"]
        return None

    def _save(self, ip: IpAddressObject) -> IpAddressObject:
        ip.id = self._new_id()
        ip.created = START + timedelta(seconds=ip.id)
        self._s.ips[ip.id] = ip
        return ip

    def _filter_prefixes(self, q: QueryParams) -> list[Prefix]:
        def contains(p: Prefix, values: list[str]) -> bool:
            inner = ipaddress.ip_network(values[0], strict=False)
            return inner.version == p.prefix.version and inner.subnet_of(p.prefix)  # type: ignore[arg-type]

        checks: dict[str, Callable[[Prefix, list[str]], bool]] = {
            "site": lambda p, v: self._s.sites[p.site_id]["slug"] in v,
            "site_id": lambda p, v: str(p.site_id) in v,
            "status": lambda p, v: p.status in v,
            "role": lambda p, v: p.role in v,
            "family": lambda p, v: str(p.prefix.version) in v,
            "prefix": lambda p, v: str(p.prefix) in v,
            "contains": contains,
            "vrf_id": lambda p, v: "null" in v,  # every prefix is in the global table
        }
        found = sorted(self._s.prefixes.values(), key=lambda p: (p.prefix.version, p.prefix))
        return _apply(found, checks, q)

    def _filter_ips(self, q: QueryParams) -> list[IpAddressObject]:
        tenants = {t["id"]: t["slug"] for t in self._s.tenants.values()}
        checks: dict[str, Callable[[IpAddressObject, list[str]], bool]] = {
            "address": lambda ip, v: str(ip.address) in v or str(ip.address.ip) in v,
            "parent": lambda ip, v: ip.address.ip in ipaddress.ip_network(v[0], strict=False),
            "tenant": lambda ip, v: tenants.get(ip.tenant_id or 0) in v,
            "vrf_id": lambda ip, v: "null" in v,
        }
        checks |= {f"cf_{name}": _loose(name) for name in self.ip_custom_fields}
        found = sorted(self._s.ips.values(), key=lambda ip: (ip.address.version, ip.address))
        return _apply(found, checks, q)
