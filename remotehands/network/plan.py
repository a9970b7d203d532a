"""What an IP plan does for remotehands, wherever it lives: the built-in one in our database
(``remotehands.network.ipam``) or NetBox (``remotehands.network.netbox``).

Every call names the site; an allocation is keyed (``key``, e.g. ``job-42``) so that a step retried after a
crash gets the addresses it was given the first time instead of new ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from remotehands.inventory.ip_plan import IpAddress, IpNetwork

if TYPE_CHECKING:
    from remotehands.runtime import Runtime


@dataclass(frozen=True)
class Assignment:
    """One address handed to a customer under a ticket."""

    site: str
    address: IpAddress
    prefix: IpNetwork
    customer: str
    ticket_id: str
    key: str  # the allocation it came from (``job-42``, ``cli-<uuid>``)
    device: str | None = None  # the device it was configured on, when known
    assigned_at: datetime | None = None
    released_at: datetime | None = None


@dataclass(frozen=True)
class PrefixUsage:
    """How full one prefix of a site is (``remotehands ipam show``)."""

    site: str
    prefix: IpNetwork
    gateway: IpAddress | None
    description: str
    # Usable addresses, by each plan's rule. Built-in (``ipam``): the prefix without the IPv4 network and
    # broadcast address (kept in a /31-/32), the IPv6 subnet-router anycast address (the first, RFC 4291;
    # kept in a /127-/128), the gateway and the reserved ranges. NetBox (``netbox``): NetBox's utilization
    # rule, the prefix without the IPv4 network and broadcast address unless it is a pool or a /31-/32, and
    # every address of an IPv6 prefix; NetBox's ``available-ips`` never hands out the anycast address of a
    # non-pool IPv6 prefix shorter than /127, so such a prefix still shows 1 free when it is full. The lab's
    # NetBox simulator does hand that address out (``remotehands.lab.netbox_sim_model``).
    size: int
    assigned: int

    @property
    def free(self) -> int:
        return self.size - self.assigned


class AddressPlan(Protocol):
    """The IP plan of one or more sites. Raises ``InvalidRequest`` (unknown site or customer, an address
    outside the plan), ``AddressInUse`` and ``PrefixExhausted``; nothing is assigned when it raises."""

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
        """``count`` free addresses of one prefix of ``site`` (``prefix`` if given, else the first with room
        of IP ``version``), assigned atomically: two concurrent callers never get the same address. Called
        again with the same ``key`` it returns what that key already holds and assigns nothing new."""
        ...

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
        """Assign one named address; ``AddressInUse`` if another key holds it, ``InvalidRequest`` if it is
        outside the plan, reserved or the gateway."""
        ...

    def release(self, site: str, addresses: list[IpAddress], *, ticket_id: str) -> list[Assignment]:
        """Release assigned addresses (all or none); ``InvalidRequest`` naming any that is not assigned."""
        ...

    def assignments(
        self, site: str, *, customer: str | None = None, key: str | None = None
    ) -> list[Assignment]:
        """The active assignments of ``site``, optionally of one customer or one allocation key."""
        ...

    def usage(self, site: str) -> list[PrefixUsage]:
        """Every prefix of ``site`` with its size and how many addresses are assigned."""
        ...


def plan_for(runtime: Runtime, actor: str) -> AddressPlan:
    """The IP plan the settings name (``[ipam] source``): the built-in one, or NetBox. No I/O here."""
    ipam = runtime.settings.ipam
    if ipam.source == "netbox":
        from remotehands.network.netbox import NetBoxPlan

        assert ipam.netbox_url is not None and ipam.netbox_token is not None  # checked by the settings
        return NetBoxPlan(
            ipam.netbox_url,
            ipam.netbox_token,
            ca_file=ipam.netbox_ca,
            tls_insecure=ipam.netbox_tls_insecure,
            prefix_role=ipam.netbox_prefix_role,
        )
    from remotehands.network.ipam import BuiltinPlan

    return BuiltinPlan(runtime.db, runtime.inventory(), actor=actor)
