"""``remotehands inventory``: check and list the inventory."""

from __future__ import annotations

from pathlib import Path

import typer

from remotehands.cli.common import print_table, runtime
from remotehands.cli.output import JsonOption, SafeTable, emit, say

app = typer.Typer(help="Inventory: check it for problems and list what it holds.", no_args_is_help=True)

PathOption = typer.Option(None, "--path", help="Inventory directory (default: the 'inventory' setting).")


@app.command()
def check(path: Path = PathOption, as_json: bool = JsonOption) -> None:
    """Report every inventory problem at once, each with file, host and field. Exit 2 if any."""
    from remotehands.inventory import check_inventory

    where = path or runtime().inventory_path
    problems = check_inventory(where)
    data = {"path": str(where), "ok": not problems, "problems": [p.as_dict() for p in problems]}

    def render() -> None:
        if not problems:
            say(f"{where}: no problems", style="green")
        for p in problems:
            say(str(p), style="red")

    emit(data, as_json, render)
    if problems:
        raise typer.Exit(2)


@app.command("list")
def list_(path: Path = PathOption, as_json: bool = JsonOption) -> None:
    """List hosts with site, rack, kind, subscription and power profile."""
    from remotehands.inventory import load_inventory

    inv = load_inventory(path or runtime().inventory_path)
    hosts = sorted(inv.hosts.values(), key=lambda h: h.name)
    data = [
        {
            "name": h.name,
            "kind": h.kind,
            "site": h.site,
            "rack": h.rack,
            "subscription": h.subscription,
            "customer": inv.customer_of(h.subscription),
            "power": h.power.type,
            "serial_number": h.serial_number,
            "mgmt_address": h.mgmt_address,
        }
        for h in hosts
    ]

    def render() -> None:
        table = SafeTable(title=f"hosts in {inv.source}")
        for col in ("name", "kind", "site", "rack", "customer", "subscription", "power"):
            table.add_column(col)
        for d in data:
            table.add_row(
                *(str(d[c]) for c in ("name", "kind", "site", "rack", "customer", "subscription", "power"))
            )
        print_table(table)

    emit(data, as_json, render)
