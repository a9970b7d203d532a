"""``remotehands power``: status of any hosts without a ticket; on, off and cycle under an approved ticket.

Hosts are named, or chosen by ``--rack``/``--site``, or taken from a ticket. Reads run concurrently, at most
``--per-site`` at a time per site and one at a time per BMC address. One host's failure never hides the
others: every host gets its line in the table (or the JSON list).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

import typer

from remotehands.bmc.base import Identify
from remotehands.bmc.paths import describe, open_first
from remotehands.cli.common import current_user, print_table, runtime
from remotehands.cli.output import JsonOption, SafeTable, emit
from remotehands.errors import InvalidRequest, NotApproved, NotPermitted, RemoteHandsError
from remotehands.inventory.models import Host, Inventory
from remotehands.runtime import Runtime

app = typer.Typer(
    help="Power: status of any hosts (no ticket needed); on, off and cycle under an approved ticket.",
    no_args_is_help=True,
)

HostsArg = typer.Argument(None, help="Host names (or use --rack, --site, --ticket).")
RackOpt = typer.Option(None, "--rack", help="All hosts of this rack (with --site when rack names repeat).")
SiteOpt = typer.Option(None, "--site", help="All hosts of this site.")
PerSiteOpt = typer.Option(32, "--per-site", min=1, help="At most this many hosts of one site at a time.")


def select_hosts(inv: Inventory, hosts: list[str] | None, rack: str | None, site: str | None) -> list[Host]:
    """The hosts named, or those of a rack/site; raises ``UnknownTarget`` (naming it) or ``InvalidRequest``."""
    if hosts and (rack or site):
        raise InvalidRequest(
            "name hosts or use --rack/--site, not both", fix="drop the host names or the option"
        )
    if hosts:
        return [inv.host(h) for h in dict.fromkeys(hosts)]
    if rack or site:
        return inv.hosts_in(site=site, rack=rack)
    return []


class Limits:
    """At most ``per_site`` concurrent operations per site and one per BMC/PDU address."""

    def __init__(self, per_site: int) -> None:
        self._lock = threading.Lock()
        self._sites: dict[str, threading.Semaphore] = {}
        self._addresses: dict[str, threading.Lock] = {}
        self.per_site = per_site

    def hold(self, host: Host) -> ExitStack:
        with self._lock:
            site = self._sites.setdefault(host.site, threading.Semaphore(self.per_site))
            key = host.power.address or host.power.pdu or host.name
            address = self._addresses.setdefault(key, threading.Lock())
        stack = ExitStack()
        stack.enter_context(site)
        stack.enter_context(address)
        return stack


def read_all(rt: Runtime, hosts: list[Host], per_site: int) -> list[dict[str, str]]:
    """Read every host's power, in the order given. Hosts whose first path is IPMI are read in bulk
    (FreeIPMI's ipmipower when installed and enough of them share credentials, else pyghmi threads); the
    others, and bulk failures of hosts that have fallback paths, one by one through their power paths."""
    rows = _read_ipmi_in_bulk(rt, [h for h in hosts if h.power.type == "ipmi"])
    rest = [h for h in hosts if h.name not in rows]
    limits = Limits(per_site)

    def read(host: Host) -> dict[str, str]:
        with limits.hold(host):
            try:
                opened = open_first(rt, host)
            except RemoteHandsError as exc:
                return {"host": host.name, "power": "unknown", "via": host.power.type, "error": str(exc)}
            if opened.driver is not None:
                opened.driver.close()
            via = (
                opened.profile.type
                if opened.profile.type == "manual"
                else opened.summary().removeprefix("via ")
            )
            return {"host": host.name, "power": opened.state.value, "via": via, "error": ""}

    with ThreadPoolExecutor(max_workers=min(64, max(1, len(rest)))) as pool:
        rows.update(zip((h.name for h in rest), pool.map(read, rest), strict=True))
    return [rows[h.name] for h in hosts]


def _read_ipmi_in_bulk(rt: Runtime, hosts: list[Host]) -> dict[str, dict[str, str]]:
    """Bulk-read hosts whose first path is IPMI; a host that failed and has a fallback is left out."""
    from remotehands import secrets
    from remotehands.bmc.ipmi_bulk import IPMIPOWER_MIN_HOSTS, IpmiTarget, bulk_status

    if len(hosts) < IPMIPOWER_MIN_HOSTS:
        return {}
    rows: dict[str, dict[str, str]] = {}
    targets: list[IpmiTarget] = []
    for host in hosts:
        profile = host.power
        if profile.address is None or profile.credentials is None:
            continue  # the per-host path reports it
        try:
            password = secrets.resolve(
                profile.credentials.password, field=f"{host.name}: power.credentials.password"
            )
        except RemoteHandsError as exc:
            rows[host.name] = {"host": host.name, "power": "unknown", "via": "ipmi", "error": str(exc)}
            continue
        targets.append(
            IpmiTarget(
                host.name, profile.address, profile.port or 623, profile.credentials.username, password
            )
        )
    by_name = {h.name: h for h in hosts}
    for name, result in bulk_status(targets, timeout=rt.settings.bmc_timeout).items():
        host = by_name[name]
        via = describe(host.power)
        if isinstance(result, RemoteHandsError):
            if host.power_fallback:
                continue
            rows[name] = {"host": name, "power": "unknown", "via": via, "error": str(result)}
        else:
            rows[name] = {"host": name, "power": result.value, "via": via, "error": ""}
    return rows


def _render(results: list[dict[str, str]], columns: tuple[str, ...], title: str) -> Callable[[], None]:
    def render() -> None:
        table = SafeTable(title=title)
        for col in columns:
            table.add_column(col)
        for r in results:
            table.add_row(*(str(r.get(c, "")) for c in columns))
        print_table(table)

    return render


@app.command()
def status(
    hosts: list[str] = HostsArg,
    rack: str = RackOpt,
    site: str = SiteOpt,
    ticket: str = typer.Option(None, "--ticket", help="The hosts a ticket targets."),
    per_site: int = PerSiteOpt,
    as_json: bool = JsonOption,
) -> None:
    """Read each host's power state (no ticket needed). Exit 1 if any host could not be read."""
    rt = runtime()
    inv = rt.inventory()
    chosen = select_hosts(inv, hosts, rack, site)
    if ticket:
        chosen += [
            inv.host(t) for t in rt.tickets.get(ticket).wanted().targets if t not in {h.name for h in chosen}
        ]
    if not chosen:
        raise InvalidRequest("no hosts chosen", fix="name hosts, or use --rack, --site or --ticket")
    results = read_all(rt, chosen, per_site)
    emit(results, as_json, _render(results, ("host", "power", "via", "error"), "power"))
    if any(r["error"] for r in results):
        raise typer.Exit(1)


def _change(
    verb: str, hosts: list[str] | None, rack: str | None, site: str | None, ticket: str, as_json: bool
) -> None:
    """Run ``power.<verb>`` for the chosen hosts under ``ticket``: it must be approved, ask for that very
    action, and target every chosen host (no hosts chosen: all its targets)."""
    from remotehands.cli.jobs_cmd import run_jobs
    from remotehands.jobs import store

    rt = runtime()
    t = rt.tickets.get(ticket)
    request = t.wanted()
    action = f"power.{verb}"
    if request.action != action:
        raise NotPermitted(
            f"{t.id} asks for {request.action}, not {action}",
            fix=f"open a ticket for {action} on these hosts",
        )
    chosen = [h.name for h in select_hosts(rt.inventory(), hosts, rack, site)] or list(request.targets)
    outside = [h for h in chosen if h not in request.targets]
    if outside:
        raise NotPermitted(
            f"{t.id} does not cover {', '.join(outside)}",
            fix=f"its targets are {', '.join(request.targets)}; open a ticket for the others",
        )
    approval = rt.tickets.approval(t.id)
    if not approval.approved:
        raise NotApproved(
            f"{t.id} is not approved (status {t.status.value}); nothing was done",
            fix=f"someone other than {t.requester} runs: remotehands tickets approve {t.id}",
        )
    ids = store.create_jobs_for_ticket(rt.db, t, approval.approver, current_user(), only=frozenset(chosen))
    jobs = run_jobs(rt, ids, quiet=True)
    rows: list[dict[str, Any]] = [
        {"host": j["target"], "job": j["id"], "state": j["state"], "result": j["reason"]} for j in jobs
    ]
    emit(rows, as_json, _render(rows, ("host", "job", "state", "result"), f"{action} for {t.id}"))
    if any(r["state"] != "succeeded" for r in rows):
        raise typer.Exit(1)


@app.command()
def identify(
    hosts: list[str] = HostsArg,
    seconds: int = typer.Option(60, "--seconds", min=0, max=255, help="How long to blink (0 turns it off)."),
    forever: bool = typer.Option(False, "--on", help="Keep it on until turned off with --seconds 0."),
    as_json: bool = JsonOption,
) -> None:
    """Light the chassis identify LED so a technician finds the server in the rack (IPMI; no ticket needed:
    it changes no power state). Exit 1 if any host could not do it."""
    rt = runtime()
    inv = rt.inventory()
    chosen = select_hosts(inv, hosts, None, None)
    if not chosen:
        raise InvalidRequest("no hosts named", fix="name the hosts to identify")
    rows: list[dict[str, str]] = []
    for host in chosen:
        path = next((p for p in host.power_paths if p.type == "ipmi"), None)
        if path is None:
            rows.append(
                {"host": host.name, "identify": "-", "error": "no IPMI power path (identify needs a BMC)"}
            )
            continue
        try:
            driver = rt.power_driver(host, path)
            try:
                if not isinstance(driver, Identify):
                    raise InvalidRequest(
                        f"the {driver.name} driver of {host.name} cannot light an identify LED"
                    )
                driver.identify(None if forever else seconds)
            finally:
                driver.close()
        except RemoteHandsError as exc:
            rows.append({"host": host.name, "identify": "-", "error": str(exc)})
            continue
        state = "on" if forever else ("off" if seconds == 0 else f"{seconds}s")
        rows.append({"host": host.name, "identify": state, "error": ""})
    emit(rows, as_json, _render(rows, ("host", "identify", "error"), "identify"))
    if any(r["error"] for r in rows):
        raise typer.Exit(1)


TicketOpt = typer.Option(..., "--ticket", help="The approved ticket this change is done under.")


def _change_command(verb: str, doc: str) -> Callable[..., None]:
    def command(
        hosts: list[str] = HostsArg,
        rack: str = RackOpt,
        site: str = SiteOpt,
        ticket: str = TicketOpt,
        as_json: bool = JsonOption,
    ) -> None:
        _change(verb, hosts, rack, site, ticket, as_json)

    command.__doc__ = doc
    return command


for _verb, _doc in (
    ("on", "Power hosts on under an approved power.on ticket (a host that is on is left alone)."),
    ("off", "Power hosts off hard under an approved power.off ticket."),
    ("cycle", "Power-cycle hosts under an approved power.cycle ticket, each confirmed back on."),
):
    app.command(_verb)(_change_command(_verb, _doc))
