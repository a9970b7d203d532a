"""``remotehands power``: read power state directly (changing it goes through a ticket)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import typer

from remotehands.cli.common import print_table, runtime
from remotehands.cli.output import JsonOption, SafeTable, emit
from remotehands.errors import RemoteHandsError

app = typer.Typer(
    help="Power: read state. Power changes run as ticket jobs ('remotehands run').", no_args_is_help=True
)


@app.command()
def status(hosts: list[str] = typer.Argument(..., help="Host names."), as_json: bool = JsonOption) -> None:
    """Read each host's power state from its BMC; one failure does not hide the other hosts' results."""
    rt = runtime()
    inventory = rt.inventory()
    targets = [inventory.host(h) for h in hosts]  # unknown names fail before any traffic

    def read(host_name: str) -> dict[str, str]:
        host = inventory.host(host_name)
        try:
            driver = rt.power_driver(host)
            try:
                return {"host": host_name, "power": driver.state().value, "via": driver.name, "error": ""}
            finally:
                driver.close()
        except RemoteHandsError as exc:
            return {"host": host_name, "power": "unknown", "via": host.power.type, "error": str(exc)}

    with ThreadPoolExecutor(max_workers=min(16, len(targets))) as pool:
        results = list(pool.map(read, [t.name for t in targets]))

    def render() -> None:
        table = SafeTable(title="power")
        for col in ("host", "power", "via", "error"):
            table.add_column(col)
        for r in results:
            table.add_row(r["host"], r["power"], r["via"], r["error"])
        print_table(table)

    emit(results, as_json, render)
    if any(r["error"] for r in results):
        raise typer.Exit(1)
