"""``remotehands storage expand ARRAY LUN --to SIZE --ticket ID``: grow a LUN on its array and on every host
that uses it, as a journaled job for an approved ticket; ``--plan`` reads the array and the hosts and prints
what the job would do, changing nothing. ``storage luns ARRAY`` lists the LUNs the inventory maps to hosts
with their size on the array."""

from __future__ import annotations

from contextlib import closing
from typing import Any

import typer

from remotehands.cli.common import runtime
from remotehands.cli.net_cmd import run_approved, ticket_asking
from remotehands.cli.output import JsonOption, emit, say
from remotehands.errors import InvalidRequest, NotPermitted
from remotehands.runtime import Runtime
from remotehands.storage.arrays import driver_for
from remotehands.storage.base import gib
from remotehands.storage.pipeline import check_room, lagging, look_at_hosts
from remotehands.storage.request import ExpandRequest, parse_expand, parse_size

ACTION = "storage.expand_lun"

app = typer.Typer(help="Storage arrays: grow LUNs, then the hosts that use them.", no_args_is_help=True)


@app.command()
def expand(
    array: str = typer.Argument(..., help="Inventory name of the array."),
    lun: str = typer.Argument(..., help="The LUN (ONTAP path /vol/VOL/LUN, Pure or PowerStore volume name)."),
    to: str = typer.Option(None, "--to", help="The new size: 150G, 1.5T (binary units: 1G = 1 GiB)."),
    ticket: str = typer.Option(
        None, "--ticket", help="The approved ticket asking for it (optional for --plan)."
    ),
    plan: bool = typer.Option(
        False, "--plan", help="Read the array and the hosts; print the steps; change nothing."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Grow a LUN: resize on the array, then rescan and grow on each host the inventory maps to it."""
    rt = runtime()
    target = rt.inventory().array(array)
    if to is None and not ticket:
        raise InvalidRequest("--to is missing", fix="give the new size, e.g. --to 150G (binary units: GiB)")
    params: dict[str, object] = {"lun": lun, "size": to}
    t = None
    if ticket:
        t = ticket_asking(rt, ticket, ACTION, target.name)
        approved = dict(t.wanted().params)
        asked = parse_expand(approved, target)
        if lun != asked.lun or (to is not None and parse_size(to, "--to") != asked.size):
            raise NotPermitted(
                f"{t.id} was approved for {asked.lun} to {gib(asked.size)}, not {lun} to {to or '?'}",
                fix="run it as approved (--to may be left out), or open a ticket for this",
            )
        params = approved
    request = parse_expand(params, target)
    if plan:
        _plan(rt, target.name, request, as_json)
        return
    if t is None:
        raise NotPermitted(
            "a LUN expansion needs an approved ticket", fix="pass --ticket RH-n (or --plan to look)"
        )
    run_approved(rt, t, target.name, as_json)


def _plan(rt: Runtime, array_name: str, request: ExpandRequest, as_json: bool) -> None:
    """Read (never change) the array and every host, and print what the job would do."""
    array = rt.inventory().array(array_name)
    with closing(driver_for(array)) as driver:
        lun = driver.lun(request.lun)
        views = look_at_hosts(rt, request.use, lun.naa)
        behind = lagging(lun.size, views)
        if request.size == lun.size and behind:
            room = f"already {gib(lun.size)} on the array; the job would finish {', '.join(behind)}"
        else:
            room = check_room(request, array, driver, lun)
    hosts: list[dict[str, Any]] = [
        {"host": name, "sees": view.device_size, "filesystem": view.where, "filesystem_size": view.fs_size}
        for name, view in views.items()
    ]
    data = {
        "array": array.name,
        "lun": lun.name,
        "naa": lun.naa,
        "size": lun.size,
        "new_size": request.size,
        "room": room,
        "hosts": hosts,
    }

    def render() -> None:
        say(
            f"grow {lun.name} on {array.name} ({lun.naa}): {gib(lun.size)} -> {gib(request.size)}",
            style="bold",
        )
        say(f"  room: {room}")
        for h in hosts:
            fs = f"{h['filesystem']} {gib(h['filesystem_size'])}" if h["filesystem_size"] else h["filesystem"]
            say(f"  {h['host']}: sees {gib(h['sees'])}; {fs}")
        say(
            "  the job: resize on the array, read back; rescan each host; grow on one, refresh the others; verify"
        )

    emit(data, as_json, render)


@app.command("luns")
def luns(
    array: str = typer.Argument(..., help="Inventory name of the array."),
    as_json: bool = JsonOption,
) -> None:
    """The LUNs the inventory maps to hosts, with their size on the array."""
    rt = runtime()
    target = rt.inventory().array(array)
    rows: list[dict[str, Any]] = []
    with closing(driver_for(target)) as driver:
        for name, use in sorted(target.luns.items()):
            lun = driver.lun(name)
            rows.append({"lun": name, "naa": lun.naa, "size": lun.size, "hosts": list(use.hosts)})

    def render() -> None:
        for row in rows:
            say(f"{row['lun']}  {gib(int(row['size']))}  {row['naa']}  hosts: {', '.join(row['hosts'])}")

    emit({"array": target.name, "luns": rows}, as_json, render)
