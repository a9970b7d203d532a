"""The built-in IP plan: ``AddressPlan`` on our own database, seeded from the inventory's ``ip_plan``.

The inventory says which prefixes a site has (with gateway and reserved ranges); the database says who holds
which address. Two allocators never hand out one address twice because an active assignment's address is
UNIQUE per site (``ip_assignments.active_address``): each candidate is inserted in its own savepoint, and one
that a concurrent allocator took first fails its insert and is skipped for the next one. Candidates are tried
in ascending order in every transaction, so two allocators never wait on each other in a cycle. On SQLite
writers are serialised anyway (``BEGIN IMMEDIATE``); on PostgreSQL the conflict really happens.

Allocation walks a prefix from its start and jumps over the blocked ranges (network, broadcast, gateway,
reserved) and the assigned addresses, so a /64 costs what its assignments cost, not what its size does.
"""

from __future__ import annotations

import ipaddress
import threading
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from remotehands import audit
from remotehands.db import Database
from remotehands.errors import AddressInUse, InvalidRequest, PrefixExhausted, RetryableError
from remotehands.inventory.ip_plan import IpAddress, IpNetwork
from remotehands.inventory.models import PROVIDER, Inventory, Site
from remotehands.network.ipam_tables import (
    IpAssignment,
    StoredPrefix,
    active_rows,
    stored_prefixes,
    sync_site,
    used_addresses,
)
from remotehands.network.plan import Assignment, PrefixUsage

MAX_COUNT = 256
# Candidates lost to concurrent allocators before giving up on one call: far above what 8 racing jobs cause.
_MAX_CONFLICTS = 512


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands datetimes back naive; they were written in UTC.
    return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)


class BuiltinPlan:
    """The IP plan of every site of ``inventory``, kept in ``db``. Thread-safe; ``actor`` goes into the
    audit log and ``assigned_by``. No I/O until the first call, which seeds that site's prefixes."""

    def __init__(self, db: Database, inventory: Inventory, *, actor: str = "remotehands") -> None:
        self.db = db
        self.inventory = inventory
        self.actor = actor
        self._seeded: set[str] = set()
        self._seed_lock = threading.Lock()

    # --- AddressPlan ----------------------------------------------------------------------------------

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
        """``count`` (1..256) lowest free addresses of one prefix, assigned in one transaction; the same
        ``key`` again returns what it holds. Raises ``InvalidRequest`` (bad field, naming it),
        ``PrefixExhausted`` (with asked and free numbers); nothing is assigned when it raises."""
        if isinstance(count, bool) or not 1 <= count <= MAX_COUNT:
            raise InvalidRequest(f"count {count} is out of range", fix=f"ask for 1 to {MAX_COUNT} addresses")
        if version not in (4, 6):
            raise InvalidRequest(f"version {version} is not an IP version", fix="use 4 or 6")
        self._check_request(site, customer, ticket_id, key)
        with self.db.session() as s:
            held = active_rows(s, site, key=key)
            if held:
                self._same_customer(held, customer, key)
                return [self._assignment(row, net) for row, net in held]
            prefixes = [p for p in self._prefixes(s, site) if p.in_plan]
            used = used_addresses(s, site)
            chosen = self._choose(site, prefixes, used, count, prefix, version)
            rows = self._insert_lowest(s, site, chosen, used, count, customer, ticket_id, key, device)
            audit.append(
                s,
                self.actor,
                "ipam.allocate",
                site,
                {
                    "addresses": [r.address for r in rows],
                    "prefix": str(chosen.plan.prefix),
                    "customer": customer,
                    "ticket": ticket_id,
                    "key": key,
                },
            )
            return [self._assignment(row, chosen.plan.prefix) for row in rows]

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
        """Assign ``address`` (idempotent for the key that holds it). Raises ``AddressInUse`` naming the
        customer and ticket holding it, ``InvalidRequest`` when it is outside the plan, blocked or a field
        is wrong."""
        self._check_request(site, customer, ticket_id, key)
        with self.db.session() as s:
            for row, net in active_rows(s, site, addresses=[str(address)]):
                if row.allocation_key != key:
                    raise self._in_use(site, row)
                self._same_customer([(row, net)], customer, key)
                return self._assignment(row, net)
            prefixes = [p for p in self._prefixes(s, site) if p.in_plan]
            home = next((p for p in prefixes if address in p.plan.prefix), None)
            if home is None:
                listed = ", ".join(str(p.plan.prefix) for p in prefixes) or "none"
                raise InvalidRequest(
                    f"{address} is not in the IP plan of site {site}; its prefixes are {listed}",
                    fix=f"choose an address of those prefixes or add one to sites.{site}.ip_plan",
                )
            why = home.plan.blocked_why(address)
            if why is not None:
                raise InvalidRequest(
                    f"{address} is {why} of {home.plan.prefix} at site {site} and is never assigned",
                    fix="choose another address, or let allocate pick one",
                )
            row = self._new_row(site, address, home, customer, ticket_id, key, device)
            try:
                with s.begin_nested():
                    s.add(row)
            except IntegrityError:
                # A concurrent caller committed it between our read and our insert.
                taken = active_rows(s, site, addresses=[str(address)])
                if not taken:
                    raise
                raise self._in_use(site, taken[0][0]) from None
            audit.append(
                s,
                self.actor,
                "ipam.assign",
                site,
                {"addresses": [row.address], "customer": customer, "ticket": ticket_id, "key": key},
            )
            return self._assignment(row, home.plan.prefix)

    def release(self, site: str, addresses: list[IpAddress], *, ticket_id: str) -> list[Assignment]:
        """Release every one of ``addresses`` or none: ``InvalidRequest`` names those not assigned at
        ``site``. The rows stay as history with ``released_at`` and ``released_ticket``."""
        if not addresses:
            raise InvalidRequest("no address to release", fix="name at least one assigned address")
        if not ticket_id.strip():
            raise InvalidRequest("ticket_id is empty", fix="name the ticket the release is done under")
        texts = list(dict.fromkeys(str(a) for a in addresses))
        with self.db.session() as s:
            found = active_rows(s, site, addresses=texts, lock=True)
            by_address = {row.address: (row, net) for row, net in found}
            missing = [t for t in texts if t not in by_address]
            if missing:
                raise InvalidRequest(
                    f"not assigned at site {site}: {', '.join(missing)}; nothing was released",
                    fix=f"remotehands ipam show {site} lists the assigned addresses",
                )
            stamp = _now()
            released = []
            for text in texts:
                row, net = by_address[text]
                row.active_address, row.released_at, row.released_ticket = None, stamp, ticket_id
                released.append(self._assignment(row, net))
            audit.append(
                s,
                self.actor,
                "ipam.release",
                site,
                {
                    "addresses": texts,
                    "ticket": ticket_id,
                    "held_by": {a: f"{r.customer} {r.ticket_id}" for a, (r, _) in by_address.items()},
                },
            )
            return released

    def assignments(
        self, site: str, *, customer: str | None = None, key: str | None = None
    ) -> list[Assignment]:
        """The active assignments of ``site`` in address order; raises ``InvalidRequest`` for an unknown
        site."""
        self._site(site)
        with self.db.session() as s:
            rows = active_rows(s, site, key=key, customer=customer)
        ordered = sorted(rows, key=lambda rn: (rn[1].version, int(ipaddress.ip_address(rn[0].address))))
        return [self._assignment(row, net) for row, net in ordered]

    def usage(self, site: str) -> list[PrefixUsage]:
        """Every prefix of the plan of ``site`` in inventory order, then any prefix removed from the
        inventory that still has assigned addresses (said in its description). Raises ``InvalidRequest``
        for an unknown site."""
        self._seed(site)
        with self.db.session() as s:
            prefixes, used = self._prefixes(s, site), used_addresses(s, site)
        report = []
        for p in prefixes:
            assigned = sum(1 for a in used if a.version == p.plan.prefix.version and a in p.plan.prefix)
            description = p.plan.description
            if not p.in_plan:
                if not assigned:
                    continue
                description = f"{description} (removed from the inventory; release its addresses)".lstrip()
            report.append(
                PrefixUsage(site, p.plan.prefix, p.plan.gateway, description, p.plan.free(), assigned)
            )
        return report

    # --- checks ---------------------------------------------------------------------------------------

    def _site(self, site: str) -> Site:
        found = self.inventory.sites.get(site)
        if found is None:
            raise InvalidRequest(
                f"site {site!r} is not in inventory {self.inventory.source}",
                fix=f"use one of: {', '.join(sorted(self.inventory.sites)) or 'none declared'}",
            )
        return found

    def _check_request(self, site: str, customer: str, ticket_id: str, key: str) -> None:
        self._site(site)
        customers = {sub.customer for sub in self.inventory.subscriptions.values()} | {PROVIDER}
        if customer not in customers:
            raise InvalidRequest(
                f"customer {customer!r} has no subscription in inventory {self.inventory.source}",
                fix=f"use one of: {', '.join(sorted(customers))}",
            )
        for field, value in (("ticket_id", ticket_id), ("key", key)):
            if not value.strip():
                raise InvalidRequest(f"{field} is empty", fix=f"give the {field} the addresses are for")
        self._seed(site)

    @staticmethod
    def _same_customer(held: list[tuple[IpAssignment, IpNetwork]], customer: str, key: str) -> None:
        owner = held[0][0].customer
        if owner != customer:
            raise InvalidRequest(
                f"key {key} already holds addresses of customer {owner}, not {customer}",
                fix="use a new key for another customer's allocation",
            )

    @staticmethod
    def _in_use(site: str, row: IpAssignment) -> AddressInUse:
        return AddressInUse(
            f"{row.address} at site {site} is assigned to customer {row.customer} on ticket {row.ticket_id} "
            f"(key {row.allocation_key})",
            fix=f"release it first (remotehands ipam release {site} {row.address} --ticket ...) "
            "or choose another address",
        )

    def _choose(
        self,
        site: str,
        prefixes: list[StoredPrefix],
        used: list[IpAddress],
        count: int,
        wanted: IpNetwork | None,
        version: int,
    ) -> StoredPrefix:
        if wanted is not None:
            match = next((p for p in prefixes if p.plan.prefix == wanted), None)
            if match is None:
                listed = ", ".join(str(p.plan.prefix) for p in prefixes) or "none"
                raise InvalidRequest(
                    f"prefix {wanted} is not in the IP plan of site {site}",
                    fix=f"use one of its prefixes ({listed}) or add it to sites.{site}.ip_plan",
                )
            if match.plan.prefix.version != version:
                raise InvalidRequest(
                    f"prefix {wanted} is IPv{match.plan.prefix.version} but IPv{version} was asked",
                    fix=f"ask for version {match.plan.prefix.version} or name an IPv{version} prefix",
                )
            candidates = [match]
        else:
            candidates = [p for p in prefixes if p.plan.prefix.version == version]
            if not candidates:
                raise InvalidRequest(
                    f"site {site} has no IPv{version} prefix in its IP plan",
                    fix=f"add one to sites.{site}.ip_plan in group_vars/all.yml",
                )
        free = {p.id: p.plan.free(used) for p in candidates}
        roomy = next((p for p in candidates if free[p.id] >= count), None)
        if roomy is None:
            detail = ", ".join(f"free {free[p.id]} in {p.plan.prefix}" for p in candidates)
            raise PrefixExhausted(
                f"asked {count} addresses at site {site}, {detail}; nothing was assigned",
                fix=f"ask for fewer, release some (remotehands ipam show {site}) or add a prefix",
            )
        return roomy

    # --- rows -----------------------------------------------------------------------------------------

    def _insert_lowest(
        self,
        s: Session,
        site: str,
        prefix: StoredPrefix,
        used: list[IpAddress],
        count: int,
        customer: str,
        ticket_id: str,
        key: str,
        device: str | None,
    ) -> list[IpAssignment]:
        rows: list[IpAssignment] = []
        conflicts = 0
        for address in prefix.plan.free_addresses(used):
            if len(rows) == count:
                break
            row = self._new_row(site, address, prefix, customer, ticket_id, key, device)
            try:
                with s.begin_nested():
                    s.add(row)
            except IntegrityError:
                # Taken by a concurrent allocator since we read: try the next one up.
                conflicts += 1
                if conflicts > _MAX_CONFLICTS:
                    raise RetryableError(
                        f"{conflicts} addresses of {prefix.plan.prefix} were taken by concurrent allocations "
                        "while this one ran",
                        fix="retry the allocation",
                    ) from None
                continue
            rows.append(row)
        if len(rows) < count:
            raise PrefixExhausted(
                f"asked {count} addresses at site {site}, free {len(rows)} in {prefix.plan.prefix} after "
                "concurrent allocations; nothing was assigned",
                fix=f"ask for fewer, release some (remotehands ipam show {site}) or add a prefix",
            )
        return rows

    def _new_row(
        self,
        site: str,
        address: IpAddress,
        prefix: StoredPrefix,
        customer: str,
        ticket_id: str,
        key: str,
        device: str | None,
    ) -> IpAssignment:
        return IpAssignment(
            site=site,
            address=str(address),
            active_address=str(address),
            prefix_id=prefix.id,
            customer=customer,
            ticket_id=ticket_id,
            allocation_key=key,
            device=device,
            assigned_by=self.actor,
            assigned_at=_now(),
        )

    @staticmethod
    def _assignment(row: IpAssignment, network: IpNetwork) -> Assignment:
        return Assignment(
            site=row.site,
            address=ipaddress.ip_address(row.address),
            prefix=network,
            customer=row.customer,
            ticket_id=row.ticket_id,
            key=row.allocation_key,
            device=row.device,
            assigned_at=_aware(row.assigned_at),
            released_at=_aware(row.released_at),
        )

    def _prefixes(self, s: Session, site: str) -> list[StoredPrefix]:
        plan = self.inventory.sites[site].ip_plan if site in self.inventory.sites else None
        return stored_prefixes(s, site, [str(p.prefix) for p in plan.prefixes] if plan else [])

    def _seed(self, site: str) -> None:
        """Make the site's prefix and reserved rows match the inventory, once per site and instance."""
        with self._seed_lock:
            if site in self._seeded:
                return
        plan = self._site(site).ip_plan
        for attempt in (1, 2):
            try:
                with self.db.session() as s:
                    sync_site(s, site, plan.prefixes if plan else ())
                break
            except IntegrityError:
                # Another process seeded the same rows at the same moment; the second pass sees them.
                if attempt == 2:
                    raise
        with self._seed_lock:
            self._seeded.add(site)
