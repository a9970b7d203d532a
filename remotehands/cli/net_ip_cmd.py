"""``remotehands net ip add|release DEVICE``: customers' additional IPs from the site's IP plan, routed on a
firewall (``net.add_ip``) or removed and released (``net.release_ip``), for an approved ticket; ``--plan``
reads the device and prints the exact commands and the expected diff, taking nothing from the IP plan."""

from __future__ import annotations

import re
from ipaddress import IPv4Address
from typing import Any, Literal

import typer

from remotehands.cli.common import runtime
from remotehands.cli.net_cmd import run_approved, ticket_asking
from remotehands.cli.output import JsonOption, emit, say
from remotehands.errors import NotPermitted
from remotehands.network.addresses import RouteChange, parse_ip_request
from remotehands.network.platforms import platform
from remotehands.network.session import open_session

app = typer.Typer(help="Customers' additional IP addresses on a firewall.", no_args_is_help=True)
ACTIONS = {"add": "net.add_ip", "remove": "net.release_ip"}


def _given(**flags: Any) -> dict[str, Any]:
    return {k: v for k, v in flags.items() if v not in (None, [], ())}


def _run(
    op: Literal["add", "remove"],
    device_name: str,
    flags: dict[str, Any],
    ticket: str | None,
    plan: bool,
    as_json: bool,
) -> None:
    rt = runtime()
    device = rt.inventory().network_device(device_name)
    params = flags
    t = None
    if ticket:
        t = ticket_asking(rt, ticket, ACTIONS[op], device.name)
        approved = dict(t.wanted().params)
        if parse_ip_request(approved | flags, device, op) != parse_ip_request(approved, device, op):
            raise NotPermitted(
                f"{t.id} was approved for {approved}, not {approved | flags}",
                fix="run it as approved (the flags may be left out), or open a ticket for this",
            )
        params = approved
    request = parse_ip_request(params, device, op)
    if plan:
        _plan(device_name, request, ticket or "PLAN", as_json)
        return
    if t is None:
        raise NotPermitted(
            "a change of customer IPs needs an approved ticket", fix="pass --ticket RH-n (or --plan)"
        )
    run_approved(rt, t, device.name, as_json)


def _plan(device_name: str, request: Any, ticket: str, as_json: bool) -> None:
    rt = runtime()
    device = rt.inventory().network_device(device_name)
    spec = platform(device.platform)
    # Nothing is taken from the plan: new addresses show as placeholders in otherwise exact commands.
    placeholders = {IPv4Address(f"0.0.0.{n}"): f"<address {n}>" for n in range(1, request.count + 1)}
    addresses = request.addresses or tuple(placeholders)
    change = RouteChange(
        request.op, addresses, request.next_hop, request.zone, ticket, request.mode, request.public_zone
    )
    with open_session(device) as session:
        config = session.running_config()
    rendered = change.render(device, config)
    done = bool(request.addresses) and change.is_done(device, config)

    def shown(line: str) -> str:
        for address, text in placeholders.items():
            line = re.sub(rf"(?<![\d.]){re.escape(str(address))}(?!\d)", text, line)
        return line

    commands = [shown(line) for line in rendered.lines]
    values = {"minutes": device.confirm_minutes, "ticket": ticket}
    wrapped = [c.format(**values) for c in (spec.config_enter,) if c] + commands
    wrapped += [c.format(**values) for c in (*spec.check, *spec.commit)] + [
        c for c in (spec.config_exit,) if c
    ]
    sign = "+" if request.op == "add" else "-"
    expected = [
        f"{sign} {c.removeprefix('no ').removeprefix('delete ')}"
        for c in commands
        if not c.startswith(("config ", "edit ", "next", "end", "exit"))
    ]
    data = {
        "device": device.name,
        "op": request.op,
        "customer": request.customer,
        "already": done,
        "commands": [] if done else wrapped,
        "expected_diff": [] if done else expected,
    }

    def render() -> None:
        say(
            f"{request.op} IPs for {request.customer} on {device.name} ({device.platform}): {change.describe()}",
            style="bold",
        )
        if done:
            say("  already in the wanted state: the job would change nothing")
            return
        for line in wrapped:
            say(f"    {line}")
        say("  expected diff of the running config:")
        for line in expected:
            say(f"    {line}")

    emit(data, as_json, render)


@app.command("add")
def add(
    device: str = typer.Argument(..., help="Inventory name of the firewall."),
    ticket: str = typer.Option(
        None, "--ticket", help="The approved ticket asking for it (optional for --plan)."
    ),
    customer: str = typer.Option(None, "--customer", help="The customer the addresses are for."),
    count: int = typer.Option(None, "--count", help="How many new addresses (1-16)."),
    address: list[str] = typer.Option(
        None, "--address", help="A specific address (repeat); instead of --count."
    ),
    next_hop: str = typer.Option(None, "--next-hop", help="The customer host's address behind the firewall."),
    zone: str = typer.Option(
        None, "--zone", help="The zone whose interface reaches the host (default inside)."
    ),
    prefix: str = typer.Option(None, "--prefix", help="Take the addresses from this prefix of the plan."),
    mode: str = typer.Option(None, "--mode", help="route (default, every platform) or nat (ASA static NAT)."),
    plan: bool = typer.Option(
        False, "--plan", help="Print the exact commands and the expected diff; change nothing."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Give a customer addresses from the site's IP plan and route them to its host."""
    flags = _given(
        customer=customer, count=count, addresses=address, next_hop=next_hop, zone=zone, prefix=prefix
    )
    _run("add", device, flags, ticket, plan, as_json)


@app.command("release")
def release(
    device: str = typer.Argument(..., help="Inventory name of the firewall."),
    ticket: str = typer.Option(
        None, "--ticket", help="The approved ticket asking for it (optional for --plan)."
    ),
    customer: str = typer.Option(None, "--customer", help="The customer holding the addresses."),
    address: list[str] = typer.Option(None, "--address", help="An address to release (repeat)."),
    zone: str = typer.Option(None, "--zone", help="The zone their routes go through (default inside)."),
    mode: str = typer.Option(None, "--mode", help="How they were configured: route (default) or nat."),
    plan: bool = typer.Option(
        False, "--plan", help="Print the exact commands and the expected diff; change nothing."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Remove the routes of a customer's addresses and release them in the IP plan."""
    flags = _given(customer=customer, addresses=address, zone=zone, mode=mode)
    _run("remove", device, flags, ticket, plan, as_json)
