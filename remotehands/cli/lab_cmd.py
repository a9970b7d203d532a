"""``remotehands lab`` (a simulated site on 127.0.0.1) and ``remotehands demo``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from remotehands.cli.output import JsonOption, emit, say
from remotehands.config import Settings, state_dir

if TYPE_CHECKING:
    from remotehands.lab.process import LabInfo

app = typer.Typer(
    help="The lab: a simulated site (IPMI BMCs) on 127.0.0.1 for the demo and tests.", no_args_is_help=True
)

DirOption = typer.Option(None, "--dir", help="Lab state directory (default: <state dir>/lab).")


def _hosts(info: LabInfo) -> dict[str, dict[str, object]]:
    return {name: {"address": h.address, "port": h.port, "kind": h.kind} for name, h in info.hosts.items()}


def _dir(path: Path | None) -> Path:
    return (path or state_dir() / "lab").resolve()


@app.command()
def up(
    path: Path = DirOption,
    hosts: int = typer.Option(4, "--hosts", min=1, max=200, help="Simulated servers."),
    as_json: bool = JsonOption,
) -> None:
    """Start the lab in the background and write its inventory."""
    from remotehands.lab.process import read_lab, start_lab

    where = _dir(path)
    info = read_lab(where) or start_lab(where, hosts=hosts)
    data = {"dir": str(where), "pid": info.pid, "inventory": str(info.inventory_dir), "hosts": _hosts(info)}

    def render() -> None:
        say(f"lab running (pid {info.pid}) with {len(info.hosts)} BMCs on 127.0.0.1", style="green")
        say(f"use it with: export RH_INVENTORY={info.inventory_dir}")

    emit(data, as_json, render)


@app.command()
def status(path: Path = DirOption, as_json: bool = JsonOption) -> None:
    """Say whether the lab runs, and list its BMCs."""
    from remotehands.lab.process import read_lab

    info = read_lab(_dir(path))
    data = {
        "running": info is not None,
        "pid": info.pid if info else None,
        "hosts": info.hosts if info else {},
    }

    def render() -> None:
        if info is None:
            say("lab is not running")
            return
        say(f"lab running (pid {info.pid}); inventory {info.inventory_dir}")
        for name, h in sorted(info.hosts.items()):
            say(f"  {name}: {h.kind} BMC at {h.address}:{h.port}")

    emit(data, as_json, render)


@app.command()
def down(path: Path = DirOption, as_json: bool = JsonOption) -> None:
    """Stop the lab."""
    from remotehands.lab.process import stop_lab

    stopped = stop_lab(_dir(path))
    emit({"stopped": stopped}, as_json, lambda: say("lab stopped" if stopped else "lab was not running"))


def demo(
    path: Path = typer.Option(Path(".demo"), "--dir", help="Where the demo keeps its lab and database."),
    keep: bool = typer.Option(False, "--keep", help="Leave the lab running afterwards."),
    as_json: bool = JsonOption,
) -> None:
    """Lab up; a ticket to power-cycle a server (IPMI) and a Mac (PDU outlet), opened by one user and
    approved by another, run and verified; its trail."""
    from remotehands.cli.jobs_cmd import StepPrinter
    from remotehands.jobs import store
    from remotehands.jobs.executor import LocalExecutor
    from remotehands.jobs.views import job_dict
    from remotehands.lab.process import read_bmc_log, read_outlet_log, start_lab, stop_lab
    from remotehands.runtime import Runtime
    from remotehands.tickets.base import Severity, TaskRequest, TicketType
    from remotehands.tickets.builtin import NewTicket

    def narrate(text: str) -> None:
        if not as_json:
            say(text, style="bold")

    where = path.resolve()
    stop_lab(where / "lab")
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    narrate("1. starting the lab on 127.0.0.1: 4 servers with IPMI BMCs, 2 behind Redfish, 2 Macs on a PDU")
    info = start_lab(where / "lab", hosts=4)
    try:
        os.environ["XDG_STATE_HOME"] = str(where / "state")
        settings = Settings(
            db_url=f"sqlite:///{where / 'remotehands.db'}",
            inventory=info.inventory_dir,
            log_file=where / "remotehands.log",
            source="demo",
        )
        rt = Runtime(settings)
        narrate("2. alice (customer acme) opens a remote-hands ticket: power cycle esx-01 and the Mac mac-01")
        ticket_id = rt.tickets.create(
            NewTicket(
                type=TicketType.REMOTE_HANDS,
                severity=Severity.OUTAGE_ONE,
                title="esx-01 and mac-01 hung, please power cycle",
                requester="alice",
                customer="acme",
                subscription="acme-0001",
                request=TaskRequest(
                    action="power.cycle", targets=("esx-01", "mac-01"), params={"off_seconds": 1}
                ),
            ),
            rt.inventory(),
        )
        narrate(f"3. bob approves {ticket_id} (alice cannot approve her own ticket)")
        rt.tickets.approve(ticket_id, "bob")
        narrate(
            f"4. remotehands runs {ticket_id}: approval re-read; esx-01 cycled once over IPMI (proven from its "
            "event log); mac-01 has no BMC, so its PDU outlet goes off, stays off, comes back on; both read back"
        )
        approval = rt.tickets.approval(ticket_id)
        ids = store.create_jobs_for_ticket(rt.db, rt.tickets.get(ticket_id), approval.approver, "demo")
        printer = StepPrinter(rt, ids, quiet=as_json)
        executor = LocalExecutor(rt, only=frozenset(ids))
        try:
            executor.run_until(printer.settled, timeout=120, on_tick=printer)
            printer()
        finally:
            executor.shutdown()
        cycles = read_bmc_log(info.log_path, host="esx-01", command="cycle")
        outlet = [e["command"] for e in read_outlet_log(info.log_path, info.macs["mac-01"])]
        narrate(
            f"5. the lab BMC of esx-01 received {len(cycles)} cycle command(s); "
            f"mac-01's outlet received: {', '.join(outlet)}"
        )
        final = rt.tickets.get(ticket_id)
        trail = rt.tickets.comments(ticket_id)
        narrate(f"6. {ticket_id} is now {final.status.value}; its trail:")
        if not as_json:
            for c in trail:
                say(f"   {c.at.strftime('%H:%M:%S')} {c.author}: {c.body}")
        ok = final.status.value == "resolved" and len(cycles) == 1 and outlet == ["outlet_off", "outlet_on"]
        with rt.db.session() as s:
            jobs = [job_dict(store.get_job(s, j), store.steps_of(s, j)) for j in ids]
    finally:
        if not keep:
            stop_lab(where / "lab")
            narrate("7. lab stopped")
    summary = {
        "ok": ok,
        "ticket": ticket_id,
        "status": final.status.value,
        "bmc_cycle_commands": len(cycles),
        "mac_outlet_commands": outlet,
        "jobs": jobs,
        "trail": [{"at": c.at, "author": c.author, "body": c.body} for c in trail],
    }
    emit(summary, as_json, lambda: say("demo OK" if ok else "demo FAILED", style="green" if ok else "red"))
    if not ok:
        raise typer.Exit(1)
