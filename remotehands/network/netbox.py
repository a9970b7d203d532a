"""The IP plan kept in NetBox: an ``AddressPlan`` over NetBox's REST API, through pynetbox.

- A site is a NetBox site (slug); its prefixes are those under it (the ``site`` filter works for 4.0-4.1's
  ``site`` and 4.2+'s ``scope``). Allocation uses prefixes of status ``active``, and of ``prefix_role`` when
  given (a role is NetBox's word for what a prefix is for: customers, not management or transit).
- A customer is a NetBox tenant (slug). An address handed out is an ip-address object: that tenant, status
  ``active``, description ``ticket <id>[ on <device>]``.
- The allocation key (``job-42``) is the Text custom field ``remotehands_key`` of the ip-address. Not a tag:
  a tag must exist before an object can carry it, so each job would create one and tags would pile up; one
  custom field is created once and filters with ``cf_remotehands_key=``. That filter is "loose" (substring)
  by default, so keys are also compared exactly here. An address without the field is not ours: never
  released by us, and counted in ``usage`` but not listed in ``assignments``.

Allocation POSTs ``count`` objects, key included, to the prefix's ``available-ips``: NetBox picks and creates
them in one transaction under its advisory lock, so concurrent allocators never share an address, a failure
leaves nothing, and a step retried after a crash finds what it was given. Setup in NetBox: that custom field
on IPAM > IP address; a token that may view sites, tenants, prefixes and add/view/delete ip-addresses.

Talking to NetBox and mapping its failures into the error tree where they enter is
``remotehands.network.netbox_wire``: no answer or an outage is the retryable ``DeviceUnreachable``, a
refusal ``DeviceRefused``, a full prefix ``PrefixExhausted``, a duplicate address ``AddressInUse``.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from datetime import UTC, datetime
from functools import partial
from typing import Any

from remotehands import secrets
from remotehands.errors import AddressInUse, ConfigError, InvalidRequest, PrefixExhausted, SecretError
from remotehands.inventory.ip_plan import IpAddress, IpNetwork
from remotehands.network.netbox_wire import NetBoxConnection
from remotehands.network.plan import Assignment, PrefixUsage

log = logging.getLogger(__name__)
KEY_FIELD = "remotehands_key"
_DESCRIPTION = re.compile(r"^ticket (?P<ticket>\S+)(?: on (?P<device>\S+))?")


class _Prefix:
    """One NetBox prefix of a site, with the pynetbox record to allocate from."""

    def __init__(self, record: Any) -> None:
        data = dict(record)
        self.record = record
        self.network: IpNetwork = ipaddress.ip_network(data["prefix"])
        self.vrf_id: int | None = (data.get("vrf") or {}).get("id")
        self.is_pool = bool(data.get("is_pool"))
        self.mark_utilized = bool(data.get("mark_utilized"))
        self.description = str(data.get("description") or "")

    @property
    def whole(self) -> bool:
        """NetBox's utilization rule: IPv6, pools and IPv4 /31-/32 are fully usable; other IPv4 prefixes
        lose their first (network) and last (broadcast) address. (Its ``available-ips`` also skips the
        first address of a non-pool IPv6 prefix shorter than /127.)"""
        return self.network.version == 6 or self.is_pool or self.network.prefixlen >= 31

    @property
    def size(self) -> int:
        return self.network.num_addresses - (0 if self.whole else 2)

    def vrf_filter(self) -> str:
        return str(self.vrf_id) if self.vrf_id is not None else "null"


class NetBoxPlan:
    """The IP plan of every site that NetBox at ``url`` holds (see the module docstring for the mapping).

    ``token_ref`` is a credential reference (``env:``, ``file:``, ``vault:``), resolved at the first call,
    not here: constructing a plan does no I/O. TLS is verified against the system bundle, or ``ca_file``;
    ``tls_insecure`` turns verification off and is meant only for an inventory that pins it.
    """

    def __init__(
        self,
        url: str,
        token_ref: str,
        *,
        ca_file: str | None = None,
        tls_insecure: bool = False,
        timeout: float = 10.0,
        prefix_role: str | None = None,
        key_field: str = KEY_FIELD,
    ) -> None:
        if not url.startswith(("https://", "http://")):
            raise ConfigError(f"NetBox url {url!r} is not an http(s) URL", fix="write https://netbox.example")
        if not secrets.is_reference(token_ref):
            raise SecretError("NetBox token is not a credential reference", fix=secrets.HOW_TO_REFERENCE)
        self.url = url.rstrip("/")
        verify: bool | str = False if tls_insecure else (ca_file or True)
        self._wire = NetBoxConnection(
            self.url, token_ref, verify=verify, timeout=timeout, key_field=key_field
        )
        self._role = prefix_role
        self._key_field = key_field

    # -- AddressPlan ---------------------------------------------------------------------------------

    def allocate(
        self,
        site: str,
        count: int,
        *,
        customer: str,
        ticket_id: str,
        key: str,
        device: str | None = None,
        prefix: IpNetwork | None = None,
        version: int = 4,
    ) -> list[Assignment]:
        """``count`` addresses of one prefix of ``site``, allocated by NetBox in one locked transaction; the
        addresses ``key`` already holds if it holds any. Raises ``InvalidRequest`` (unknown site, customer
        or prefix, bad count or version), ``PrefixExhausted`` (no candidate prefix has ``count`` free
        addresses; nothing assigned), ``DeviceUnreachable`` and ``DeviceRefused``."""
        if count < 1 or version not in (4, 6) or not key:
            raise InvalidRequest(
                f"allocate needs count >= 1, version 4 or 6 and a key (got {count}, {version})"
            )
        prefixes = self._prefixes(site)
        held = self._held_by(site, key, prefixes)
        if held:
            log.info("netbox: key %s already holds %s at %s", key, _addresses(held), site)
            return held
        tenant_id = self._tenant_id(customer)
        if prefix is not None:
            candidates = [p for p in prefixes if p.network == prefix]
            if not candidates:
                raise InvalidRequest(f"{prefix} is not a prefix of site {site} in NetBox at {self.url}")
        else:
            candidates = self._prefixes(site, status="active", role=self._role, family=version)
            if not candidates:
                role = f" with role {self._role}" if self._role else ""
                raise InvalidRequest(f"site {site} has no active IPv{version} prefix{role} in NetBox")
        body = [self._ip_body(tenant_id, ticket_id, key, device) for _ in range(count)]
        refusals: list[str] = []
        for candidate in candidates:
            if candidate.network.version != version:
                raise InvalidRequest(f"{candidate.network} is not an IPv{version} prefix")
            try:
                created = self._wire.call(
                    f"allocating {count} in {candidate.network}",
                    partial(candidate.record.available_ips.create, body),
                )
            except PrefixExhausted as exc:
                refusals.append(exc.message)
                continue
            result = [self._assignment(site, candidate, dict(r)) for r in created]
            log.info("netbox: allocated %s at %s to %s for %s", _addresses(result), site, customer, key)
            return result
        raise PrefixExhausted(
            f"no {'' if prefix else 'active '}IPv{version} prefix of site {site} has {count} free "
            f"address(es): " + "; ".join(refusals),
            fix="release addresses, or add a prefix to the site in NetBox",
        )

    def assign(
        self,
        site: str,
        address: IpAddress,
        *,
        customer: str,
        ticket_id: str,
        key: str,
        device: str | None = None,
    ) -> Assignment:
        """Create the ip-address object for ``address``; the existing one if ``key`` already holds it.
        Raises ``AddressInUse`` (NetBox has the address under another key, or none), ``InvalidRequest``
        (outside the site's prefixes, a network/broadcast address, unknown site or customer)."""
        tenant_id = self._tenant_id(customer)
        containing = [p for p in self._prefixes(site) if address in p.network]
        if not containing:
            raise InvalidRequest(f"{address} is outside every prefix of site {site} in NetBox")
        home = max(containing, key=lambda p: p.network.prefixlen)
        if not home.whole and address in (home.network.network_address, home.network.broadcast_address):
            raise InvalidRequest(f"{address} is the network or broadcast address of {home.network}")
        for record in self._records_at(site, [address], [home]):
            if _custom(record, self._key_field) == key:
                return self._assignment(site, home, record)
            holder = _custom(record, self._key_field) or "no remotehands key"
            raise AddressInUse(
                f"{address} at site {site} is already in NetBox (ip-address {record['id']}, {holder})",
                fix="pick another address, or release it first",
            )
        data = self._ip_body(tenant_id, ticket_id, key, device)
        data |= {"address": f"{address}/{home.network.prefixlen}", "vrf": home.vrf_id}
        created = self._wire.call(
            f"creating {address}", lambda: self._wire.api().ipam.ip_addresses.create(data)
        )
        log.info("netbox: assigned %s at %s to %s for %s", address, site, customer, key)
        return self._assignment(site, home, dict(created))

    def release(self, site: str, addresses: list[IpAddress], *, ticket_id: str) -> list[Assignment]:
        """Delete the ip-address objects of ``addresses`` in one bulk delete (one transaction in NetBox),
        after checking that every one is assigned by remotehands at ``site``. Raises ``InvalidRequest``
        naming those that are not; then nothing is deleted."""
        wanted = list(dict.fromkeys(addresses))
        prefixes = self._prefixes(site)
        found: dict[IpAddress, tuple[_Prefix, dict[str, Any]]] = {}
        for record in self._records_at(site, wanted, prefixes):
            host = ipaddress.ip_interface(record["address"]).ip
            home = _home(prefixes, host)
            if home is not None and _custom(record, self._key_field):
                found[host] = (home, record)
        missing = [str(a) for a in wanted if a not in found]
        if missing:
            raise InvalidRequest(
                f"not assigned by remotehands at site {site}: {', '.join(missing)}; nothing was released"
            )
        ids = [int(record["id"]) for _, record in found.values()]
        self._wire.call(
            f"deleting {len(ids)} address(es)", lambda: self._wire.api().ipam.ip_addresses.delete(ids)
        )
        now = datetime.now(UTC)
        released = [self._assignment(site, p, r, released_at=now) for p, r in found.values()]
        log.info("netbox: released %s at %s on ticket %s", _addresses(released), site, ticket_id)
        return released

    def assignments(
        self, site: str, *, customer: str | None = None, key: str | None = None
    ) -> list[Assignment]:
        """Every ip-address object with a remotehands key in the prefixes of ``site``, optionally of one
        customer (tenant slug) or one key. Raises ``InvalidRequest`` for an unknown site or customer."""
        if customer is not None:
            self._tenant_id(customer)
        return self._listed(site, self._prefixes(site), customer=customer, key=key)

    def usage(self, site: str) -> list[PrefixUsage]:
        """Every prefix of ``site``: its usable size by NetBox's rule and how many of its addresses NetBox
        has entered (any entry takes an address, ours or not). NetBox has no gateway field: ``gateway`` is
        None, and a gateway entered as an ip-address counts as assigned."""
        result = []
        for p in self._prefixes(site):
            filters = {"parent": str(p.network), "vrf_id": p.vrf_filter()}
            entered = self._wire.call(
                f"counting {p.network}", partial(self._wire.api().ipam.ip_addresses.count, **filters)
            )
            assigned = p.size if p.mark_utilized else min(int(entered), p.size)
            result.append(PrefixUsage(site, p.network, None, p.description, p.size, assigned))
        return result

    def check(self) -> str:
        """The NetBox version, from ``/api/status/``: proves the URL, TLS and token. Raises
        ``DeviceUnreachable`` or ``DeviceRefused``."""
        status = self._wire.call("reading /api/status/", lambda: self._wire.api().status())
        return str(status.get("netbox-version", ""))

    # -- NetBox objects ------------------------------------------------------------------------------

    def _prefixes(self, site: str, **filters: Any) -> list[_Prefix]:
        """The prefixes under ``site``, in NetBox's order; ``InvalidRequest`` for an unknown site."""
        found = self._wire.call(
            f"looking up site {site}", lambda: list(self._wire.api().dcim.sites.filter(slug=site))
        )
        if not found:
            raise InvalidRequest(f"NetBox at {self.url} has no site with slug {site!r}")
        params = {k: v for k, v in filters.items() if v is not None}
        records = self._wire.call(
            f"listing prefixes of {site}",
            lambda: list(self._wire.api().ipam.prefixes.filter(site=site, **params)),
        )
        return [_Prefix(r) for r in records]

    def _tenant_id(self, customer: str) -> int:
        found = self._wire.call(
            f"looking up tenant {customer}",
            lambda: list(self._wire.api().tenancy.tenants.filter(slug=customer)),
        )
        if not found:
            raise InvalidRequest(
                f"NetBox at {self.url} has no tenant with slug {customer!r}",
                fix="create the customer as a tenant in NetBox (Tenancy > Tenants) with that slug",
            )
        return int(found[0].id)

    def _ip_records(self, what: str, **filters: Any) -> list[dict[str, Any]]:
        records = self._wire.call(what, lambda: list(self._wire.api().ipam.ip_addresses.filter(**filters)))
        return [dict(r) for r in records]

    def _held_by(self, site: str, key: str, prefixes: list[_Prefix]) -> list[Assignment]:
        """What ``key`` holds; ``InvalidRequest`` if it holds addresses outside ``site``."""
        records = self._ip_records(f"looking up key {key}", **{f"cf_{self._key_field}": key})
        held = []
        for record in records:
            if _custom(record, self._key_field) != key:  # the filter matches substrings
                continue
            host = ipaddress.ip_interface(record["address"]).ip
            home = _home(prefixes, host)
            if home is None:
                raise InvalidRequest(f"allocation key {key} holds {host}, which is not at site {site}")
            held.append(self._assignment(site, home, record))
        return held

    def _records_at(
        self, site: str, addresses: list[IpAddress], prefixes: list[_Prefix]
    ) -> list[dict[str, Any]]:
        """The ip-address objects at ``addresses`` in the VRF of their prefix of ``site``."""
        if not addresses:
            return []
        records = self._ip_records(
            f"looking up {len(addresses)} address(es)", address=[str(a) for a in addresses]
        )
        kept = []
        for record in records:
            home = _home(prefixes, ipaddress.ip_interface(record["address"]).ip)
            if home is not None and (record.get("vrf") or {}).get("id") == home.vrf_id:
                kept.append(record)
        return kept

    def _listed(
        self, site: str, prefixes: list[_Prefix], *, customer: str | None, key: str | None
    ) -> list[Assignment]:
        filters: dict[str, Any] = {"tenant": customer} if customer else {}
        if key:
            filters[f"cf_{self._key_field}"] = key
        seen: dict[int, dict[str, Any]] = {}
        for p in prefixes:
            for record in self._ip_records(
                f"listing addresses of {p.network}", parent=str(p.network), vrf_id=p.vrf_filter(), **filters
            ):
                theirs = _custom(record, self._key_field)
                tenant = (record.get("tenant") or {}).get("slug")
                if theirs and (key is None or theirs == key) and (customer is None or tenant == customer):
                    seen[int(record["id"])] = record
        result = []
        for record in seen.values():
            home = _home(prefixes, ipaddress.ip_interface(record["address"]).ip)
            if home is not None:
                result.append(self._assignment(site, home, record))
        return sorted(result, key=lambda a: (a.address.version, a.address))

    def _ip_body(self, tenant_id: int, ticket_id: str, key: str, device: str | None) -> dict[str, Any]:
        description = f"ticket {ticket_id}" + (f" on {device}" if device else "")
        return {
            "status": "active",
            "tenant": tenant_id,
            "description": description,
            "custom_fields": {self._key_field: key},
        }

    def _assignment(
        self, site: str, prefix: _Prefix, record: dict[str, Any], *, released_at: datetime | None = None
    ) -> Assignment:
        match = _DESCRIPTION.match(str(record.get("description") or ""))
        created = record.get("created")
        return Assignment(
            site=site,
            address=ipaddress.ip_interface(record["address"]).ip,
            prefix=prefix.network,
            customer=str((record.get("tenant") or {}).get("slug") or ""),
            # An operator may have rewritten the description in NetBox: then ticket and device are unknown.
            ticket_id=match["ticket"] if match else "",
            key=_custom(record, self._key_field) or "",
            device=match["device"] if match else None,
            assigned_at=datetime.fromisoformat(created) if created else None,
            released_at=released_at,
        )


def _custom(record: dict[str, Any], name: str) -> str | None:
    value = (record.get("custom_fields") or {}).get(name)
    return str(value) if value else None


def _home(prefixes: list[_Prefix], host: IpAddress) -> _Prefix | None:
    """The most specific of ``prefixes`` holding ``host``."""
    holding = [p for p in prefixes if host in p.network]
    return max(holding, key=lambda p: p.network.prefixlen) if holding else None


def _addresses(assignments: list[Assignment]) -> str:
    return ", ".join(str(a.address) for a in assignments)
