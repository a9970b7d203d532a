"""The stored form of the built-in IP plan: prefixes and reserved ranges (mirrored from the inventory by
``sync_site``), assignments (active and released), and the reads ``remotehands.network.ipam`` makes."""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Boolean, ColumnElement, DateTime, ForeignKey, Integer, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from remotehands.db import Base
from remotehands.inventory.ip_plan import IpAddress, IpNetwork, PlannedPrefix

log = logging.getLogger(__name__)


class IpPrefix(Base):
    """One prefix of a site's plan; ``prefix`` is the canonical CIDR text (``198.51.100.0/24``)."""

    __tablename__ = "ip_prefixes"
    __table_args__ = (UniqueConstraint("site", "prefix"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site: Mapped[str] = mapped_column(String(64), index=True)
    prefix: Mapped[str] = mapped_column(String(64))
    gateway: Mapped[str | None] = mapped_column(String(64), nullable=True)
    description: Mapped[str] = mapped_column(String(200), default="")
    # False once the inventory no longer lists the prefix: nothing new is allocated from it, but the row
    # stays, because assignments (active ones, and released ones as history) point at it.
    in_plan: Mapped[bool] = mapped_column(Boolean, default=True)


class IpReserved(Base):
    """Addresses of a prefix that are never handed out, first to last inclusive."""

    __tablename__ = "ip_reserved"
    __table_args__ = (UniqueConstraint("prefix_id", "start", "end"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prefix_id: Mapped[int] = mapped_column(ForeignKey("ip_prefixes.id"), index=True)
    start: Mapped[str] = mapped_column(String(64))
    end: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(200), default="")


class IpAssignment(Base):
    """An address handed to a customer on a ticket; kept after release (``released_at``) as history."""

    __tablename__ = "ip_assignments"
    # ``active_address`` equals ``address`` while assigned and is NULL after release: this UNIQUE constraint
    # is what stops two allocators (threads, processes, machines) handing out one address twice, on SQLite
    # and PostgreSQL alike (NULLs never collide).
    __table_args__ = (UniqueConstraint("site", "active_address"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site: Mapped[str] = mapped_column(String(64), index=True)
    address: Mapped[str] = mapped_column(String(64), index=True)  # canonical (ipaddress's str)
    active_address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    prefix_id: Mapped[int] = mapped_column(ForeignKey("ip_prefixes.id"), index=True)
    customer: Mapped[str] = mapped_column(String(128), index=True)
    ticket_id: Mapped[str] = mapped_column(String(64), index=True)
    # The allocation it came from (``job-42``, ``cli-<uuid>``): a retried step finds its addresses by it.
    allocation_key: Mapped[str] = mapped_column(String(128), index=True)
    device: Mapped[str | None] = mapped_column(String(128), nullable=True)
    assigned_by: Mapped[str] = mapped_column(String(128), default="")
    assigned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    released_ticket: Mapped[str | None] = mapped_column(String(64), nullable=True)


@dataclass(frozen=True)
class StoredPrefix:
    """A prefix row as the plan it stores; ``in_plan`` is False once the inventory dropped it."""

    id: int
    in_plan: bool
    plan: PlannedPrefix


def sync_site(s: Session, site: str, planned: tuple[PlannedPrefix, ...]) -> None:
    """Make the prefix and reserved rows of ``site`` match ``planned`` (idempotent). A prefix the
    inventory no longer lists is kept with ``in_plan`` False, because assignments point at it."""
    rows = {r.prefix: r for r in s.execute(select(IpPrefix).where(IpPrefix.site == site)).scalars()}
    for p in planned:
        gateway = str(p.gateway) if p.gateway is not None else None
        row = rows.pop(str(p.prefix), None)
        if row is None:
            row = IpPrefix(site=site, prefix=str(p.prefix), gateway=gateway, description=p.description)
            row.in_plan = True
            s.add(row)
            s.flush()
        else:
            row.gateway, row.description, row.in_plan = gateway, p.description, True
        want = {(str(r.start), str(r.end)): r.reason for r in p.reserved}
        for have in s.execute(select(IpReserved).where(IpReserved.prefix_id == row.id)).scalars():
            if (have.start, have.end) in want:
                have.reason = want.pop((have.start, have.end))
            else:
                s.delete(have)
        for (start, end), reason in want.items():
            s.add(IpReserved(prefix_id=row.id, start=start, end=end, reason=reason))
    for row in rows.values():
        row.in_plan = False
        active = len(
            s.execute(select(IpAssignment.id).where(_active(site), IpAssignment.prefix_id == row.id)).all()
        )
        if active:
            log.warning(
                "prefix %s of site %s is no longer in the inventory but %d of its addresses are assigned; "
                "it is kept until they are released",
                row.prefix,
                site,
                active,
            )


def stored_prefixes(s: Session, site: str, order: list[str]) -> list[StoredPrefix]:
    """The prefixes of ``site``: those in ``order`` (the inventory's prefixes) first, in that order."""
    rows = s.execute(select(IpPrefix).where(IpPrefix.site == site)).scalars().all()
    reserved: dict[int, list[dict[str, str]]] = {}
    query = (
        select(IpReserved).join(IpPrefix, IpPrefix.id == IpReserved.prefix_id).where(IpPrefix.site == site)
    )
    for r in s.execute(query).scalars():
        reserved.setdefault(r.prefix_id, []).append({"start": r.start, "end": r.end, "reason": r.reason})
    rank = {text: i for i, text in enumerate(order)}
    rows = sorted(rows, key=lambda r: (not r.in_plan, rank.get(r.prefix, len(rank)), r.id))
    return [
        StoredPrefix(
            r.id,
            r.in_plan,
            PlannedPrefix.model_validate(
                {
                    "prefix": r.prefix,
                    "gateway": r.gateway,
                    "reserved": reserved.get(r.id, []),
                    "description": r.description,
                }
            ),
        )
        for r in rows
    ]


def _active(site: str) -> ColumnElement[bool]:
    return (IpAssignment.site == site) & IpAssignment.active_address.is_not(None)


def active_rows(
    s: Session,
    site: str,
    *,
    key: str | None = None,
    customer: str | None = None,
    addresses: list[str] | None = None,
    lock: bool = False,
) -> list[tuple[IpAssignment, IpNetwork]]:
    """Active assignments of ``site`` (of one key, customer or some addresses), oldest first, with their
    prefix; ``lock`` holds the rows (``FOR UPDATE`` on PostgreSQL) until the transaction ends."""
    query = (
        select(IpAssignment, IpPrefix.prefix)
        .join(IpPrefix, IpPrefix.id == IpAssignment.prefix_id)
        .where(_active(site))
        .order_by(IpAssignment.id)
    )
    if key is not None:
        query = query.where(IpAssignment.allocation_key == key)
    if customer is not None:
        query = query.where(IpAssignment.customer == customer)
    if addresses is not None:
        query = query.where(IpAssignment.active_address.in_(addresses))
    if lock:
        query = query.with_for_update(of=IpAssignment)
    return [(row, ipaddress.ip_network(prefix)) for row, prefix in s.execute(query).all()]


def used_addresses(s: Session, site: str) -> list[IpAddress]:
    """Every actively assigned address of ``site``."""
    texts = s.execute(select(IpAssignment.active_address).where(_active(site))).scalars()
    return [ipaddress.ip_address(t) for t in texts if t is not None]
