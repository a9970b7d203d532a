"""``remotehands ipam``: the IP plan of each site (built-in, or NetBox per ``[ipam] source``): show usage,
allocate, assign and release."""

from __future__ import annotations

import uuid
from typing import Any

import typer

from remotehands.cli.common import current_user, print_table, runtime
from remotehands.cli.output import JsonOption, SafeTable, emit, say
from remotehands.errors import InvalidRequest
from remotehands.inventory.ip_plan import IpAddress, IpNetwork, parse_address, parse_network
from remotehands.network.plan import AddressPlan, Assignment, PrefixUsage, plan_for

app = typer.Typer(
    help="IP plan: prefixes and assigned addresses of each site; allocate, assign and release addresses.",
    no_args_is_help=True,
)

TicketOpt = typer.Option(..., "--ticket", help="The ticket the change is made under.")
CustomerOpt = typer.Option(..., "--customer", help="The customer the addresses are for.")
KeyOpt = typer.Option(
    None, "--key", help="Allocation key; the same key again returns the same addresses (default: a new one)."
)
DeviceOpt = typer.Option(None, "--device", help="The device the addresses are configured on.")


def _plan() -> AddressPlan:
    """The plan the settings name (``[ipam] source``: built-in or NetBox)."""
    return plan_for(runtime(), current_user())


def _address(text: str) -> IpAddress:
    try:
        return parse_address(text)
    except ValueError as exc:
        raise InvalidRequest(
            f"address: {exc}", fix="write an IPv4 or IPv6 address, e.g. 198.51.100.20"
        ) from None


def _network(text: str) -> IpNetwork:
    try:
        return parse_network(text)
    except ValueError as exc:
        raise InvalidRequest(
            f"--prefix: {exc}", fix="name one of the site's prefixes (remotehands ipam show)"
        ) from None


def _assignment_dict(a: Assignment) -> dict[str, Any]:
    return {
        "site": a.site,
        "address": str(a.address),
        "prefix": str(a.prefix),
        "customer": a.customer,
        "ticket": a.ticket_id,
        "key": a.key,
        "device": a.device,
        "assigned_at": a.assigned_at.isoformat() if a.assigned_at else None,
        "released_at": a.released_at.isoformat() if a.released_at else None,
    }


def _usage_dict(u: PrefixUsage) -> dict[str, Any]:
    return {
        "prefix": str(u.prefix),
        "description": u.description,
        "gateway": str(u.gateway) if u.gateway else None,
        "size": u.size,
        "assigned": u.assigned,
        "free": u.free,
    }


def _number(n: int) -> str:
    # An IPv6 /64 holds 18446744073709551360 usable addresses: say "1.84e+19", which fits a column.
    return str(n) if n < 10**9 else f"{n:.3g}"


def _assignment_table(rows: list[dict[str, Any]], title: str) -> SafeTable:
    table = SafeTable(title=title)
    table.add_column("address", no_wrap=True)
    for col in ("customer", "ticket", "key", "device", "assigned (UTC)"):
        table.add_column(col)
    for r in rows:
        since = r["assigned_at"][:16].replace("T", " ") if r["assigned_at"] else "-"
        table.add_row(r["address"], r["customer"], r["ticket"], r["key"], r["device"] or "-", since)
    return table


def _usage_table(site: str, prefixes: list[dict[str, Any]]) -> SafeTable:
    table = SafeTable(title=f"IP plan of {site}")
    table.add_column("prefix", no_wrap=True)
    table.add_column("gateway", no_wrap=True)
    for col in ("size", "assigned", "free", "description"):
        table.add_column(col)
    for p in prefixes:
        table.add_row(
            p["prefix"],
            p["gateway"] or "-",
            _number(p["size"]),
            _number(p["assigned"]),
            _number(p["free"]),
            p["description"],
        )
    return table


@app.command()
def show(
    site: str | None = typer.Argument(None, help="Site (default: every site with an IP plan)."),
    as_json: bool = JsonOption,
) -> None:
    """Each prefix with its size, assigned and free addresses and gateway, then the active assignments
    with customer and ticket."""
    plan, rt = _plan(), runtime()
    # The built-in plan knows the sites whose inventory has an ip_plan; NetBox may hold any site's.
    netbox = rt.settings.ipam.source == "netbox"
    names = [site] if site else sorted(n for n, s in rt.inventory().sites.items() if netbox or s.ip_plan)
    data: list[dict[str, Any]] = [
        {
            "site": name,
            "prefixes": [_usage_dict(u) for u in plan.usage(name)],
            "assignments": [_assignment_dict(a) for a in plan.assignments(name)],
        }
        for name in names
    ]

    def render() -> None:
        if not data:
            say("no site has an ip_plan in the inventory (sites.<site>.ip_plan in group_vars/all.yml)")
        for entry in data:
            print_table(_usage_table(entry["site"], entry["prefixes"]))
            if entry["assignments"]:
                print_table(_assignment_table(entry["assignments"], f"assigned at {entry['site']}"))
            else:
                say(f"no addresses assigned at {entry['site']}")

    emit(data, as_json, render)


@app.command()
def allocate(
    site: str = typer.Argument(..., help="Site."),
    count: int = typer.Option(..., "--count", help="How many addresses (1..256), all from one prefix."),
    customer: str = CustomerOpt,
    ticket: str = TicketOpt,
    prefix: str | None = typer.Option(
        None, "--prefix", help="Take them from this prefix of the site's plan."
    ),
    ipv6: bool = typer.Option(False, "--ipv6", help="IPv6 addresses (default IPv4)."),
    key: str | None = KeyOpt,
    device: str | None = DeviceOpt,
    as_json: bool = JsonOption,
) -> None:
    """Assign the lowest free addresses of one prefix (never network, broadcast, gateway or reserved)."""
    network = _network(prefix) if prefix else None
    # --prefix says the version by itself; --ipv6 is only needed without it.
    version = 6 if ipv6 else (network.version if network is not None else 4)
    given = _plan().allocate(
        site,
        count,
        customer=customer,
        ticket_id=ticket,
        key=key or f"cli-{uuid.uuid4().hex[:12]}",
        device=device,
        prefix=network,
        version=version,
    )
    rows = [_assignment_dict(a) for a in given]
    emit(rows, as_json, lambda: print_table(_assignment_table(rows, f"allocated at {site} for {ticket}")))


@app.command()
def assign(
    site: str = typer.Argument(..., help="Site."),
    address: str = typer.Argument(..., help="The address to assign."),
    customer: str = CustomerOpt,
    ticket: str = TicketOpt,
    key: str | None = KeyOpt,
    device: str | None = DeviceOpt,
    as_json: bool = JsonOption,
) -> None:
    """Assign one named address; exit 2 if another allocation holds it or it is not assignable."""
    given = _plan().assign(
        site,
        _address(address),
        customer=customer,
        ticket_id=ticket,
        key=key or f"cli-{uuid.uuid4().hex[:12]}",
        device=device,
    )
    rows = [_assignment_dict(given)]
    emit(rows, as_json, lambda: print_table(_assignment_table(rows, f"assigned at {site} for {ticket}")))


@app.command()
def release(
    site: str = typer.Argument(..., help="Site."),
    addresses: list[str] = typer.Argument(..., help="Addresses to release (all or none)."),
    ticket: str = TicketOpt,
    as_json: bool = JsonOption,
) -> None:
    """Release assigned addresses, all or none; they stay in the history with the releasing ticket."""
    released = _plan().release(site, [_address(a) for a in addresses], ticket_id=ticket)
    rows = [_assignment_dict(a) for a in released]

    def render() -> None:
        for r in rows:
            say(f"released {r['address']} (was {r['customer']}, ticket {r['ticket']}) under {ticket}")

    emit(rows, as_json, render)
