"""``remotehands net rule add|remove DEVICE``: a firewall rule as a journaled, verified, rolled-back-on-failure
job for an approved ticket; ``--plan`` reads the device and prints the exact commands and the expected diff.
``net ip`` lives in ``net_ip_cmd`` (registered under ``net`` by ``cli.main``)."""

from __future__ import annotations

from typing import Any

import typer

from remotehands.cli.common import current_user, runtime
from remotehands.cli.output import JsonOption, emit, say
from remotehands.errors import NotApproved, NotPermitted
from remotehands.network import templates
from remotehands.network.platforms import platform
from remotehands.network.rules import FirewallRule, parse_rule
from remotehands.network.session import open_session
from remotehands.runtime import Runtime
from remotehands.tickets.base import Ticket

ACTION = "net.firewall_rule"

app = typer.Typer(
    help="Network changes on firewalls: rules and customers' additional IPs.", no_args_is_help=True
)
rule_app = typer.Typer(help="Add or remove one firewall rule.", no_args_is_help=True)
app.add_typer(rule_app, name="rule")


def _flags(
    op: str,
    source: str | None,
    destination: str | None,
    protocol: str | None,
    ports: str | None,
    from_zone: str | None,
    to_zone: str | None,
    action: str | None,
) -> dict[str, Any]:
    given = {
        "source": source,
        "destination": destination,
        "protocol": protocol,
        "ports": ports,
        "from_zone": from_zone,
        "to_zone": to_zone,
        "action": action,
    }
    return {"op": op} | {k: v for k, v in given.items() if v is not None}


def _run(
    op: str, device_name: str, flags: dict[str, Any], ticket: str | None, plan: bool, as_json: bool
) -> None:
    rt = runtime()
    device = rt.inventory().network_device(device_name)
    params = flags
    t = None
    if ticket:
        t = ticket_asking(rt, ticket, ACTION, device.name)
        approved = {"op": "add"} | dict(t.wanted().params)
        # Compare what the flags mean, not how they are written (198.51.100.20 is 198.51.100.20/32).
        wanted = parse_rule(approved | flags, device, t.id)
        granted = parse_rule(approved, device, t.id)
        if (wanted.op, wanted.name) != (granted.op, granted.name):
            raise NotPermitted(
                f"{t.id} was approved for {granted.op} {granted.describe()}, not {wanted.op} "
                f"{wanted.describe()}",
                fix="run it as approved (the flags may be left out), or open a ticket for this rule",
            )
        params = approved
    rule = parse_rule(params, device, ticket or "PLAN")
    if plan:
        _plan(rt, rule, device_name, as_json)
        return
    if t is None:
        raise NotPermitted(
            "a firewall change needs an approved ticket", fix="pass --ticket RH-n (or --plan to look)"
        )
    run_approved(rt, t, device.name, as_json)


def ticket_asking(rt: Runtime, ticket: str, action: str, device: str) -> Ticket:
    """The ticket ``ticket``, which must ask for ``action`` on ``device``; raises ``NotPermitted``."""
    t = rt.tickets.get(ticket)
    request = t.wanted()
    if request.action != action or device not in request.targets:
        raise NotPermitted(
            f"{t.id} does not ask for {action} on {device} (it asks for {request.action} on "
            f"{', '.join(request.targets)})",
            fix=f"open a ticket for {action} on {device}",
        )
    return t


def run_approved(rt: Runtime, t: Ticket, device: str, as_json: bool) -> None:
    """Make the ticket's job for ``device`` once the ticket reads approved at its system, follow it, exit
    with its outcome. Raises ``NotApproved``."""
    from remotehands.cli.jobs_cmd import _exit_code, run_jobs
    from remotehands.jobs import store

    approval = rt.tickets.approval(t.id)
    if not approval.approved:
        raise NotApproved(
            f"{t.id} is not approved (status {t.status.value}); nothing was done",
            fix=f"someone other than {t.requester} runs: remotehands tickets approve {t.id}",
        )
    ids = store.create_jobs_for_ticket(
        rt.db, t, approval.approver, current_user(), only=frozenset({device}), inventory=rt.inventory()
    )
    data = run_jobs(rt, ids, quiet=as_json, timeout=600)
    emit({"ticket": t.id, "jobs": data}, as_json, lambda: None)
    raise typer.Exit(_exit_code(rt, ids))


def _plan(rt: Runtime, rule: FirewallRule, device_name: str, as_json: bool) -> None:
    """Read the device (nothing is changed) and print what the job would send and what would change."""
    device = rt.inventory().network_device(device_name)
    spec = platform(device.platform)
    with open_session(device) as session:
        config = session.running_config()
    change = templates.change(rule, device, config)
    done = templates.is_done(rule, device, config)
    values = {"minutes": device.confirm_minutes, "ticket": rule.ticket_id}
    commands = [c.format(**values) for c in (spec.config_enter,) if c]
    commands += [*change.lines, *(c.format(**values) for c in (*spec.check, *spec.commit))]
    commands += [c for c in (spec.config_exit,) if c]
    confirm = [c.format(**values) for c in (*spec.confirm, *spec.save)]
    sign = "+" if rule.op == "add" else "-"
    expected = (
        []
        if done
        else [
            f"{sign} {line.removeprefix('no ').removeprefix('delete ')}"
            for line in change.lines
            if _changes(line)
        ]
    )
    data = {
        "device": device.name,
        "platform": device.platform,
        "rule": rule.name,
        "describe": rule.describe(),
        "already": done,
        "commands": [] if done else commands,
        "confirm": [] if done else confirm,
        "expected_diff": expected,
        "safety": spec.safety,
    }

    def render() -> None:
        say(f"{rule.op} {rule.name} on {device.name} ({device.platform}): {rule.describe()}", style="bold")
        if done:
            say("  already in the wanted state: the job would change nothing")
            return
        say(f"  commands ({spec.safety}):")
        for line in commands:
            say(f"    {line}")
        say("  after verifying: " + "; ".join(confirm or ["(nothing: the change is live once committed)"]))
        say("  expected diff of the running config:")
        for line in expected:
            say(f"    {line}")

    emit(data, as_json, render)


def _changes(line: str) -> bool:
    """Whether a config line changes something (not a mode line like ``edit``/``next``/``end``)."""
    return not line.startswith(("config ", "edit ", "next", "end", "ip access-list ", "ipv6 access-list "))


def _rule_command(op: str) -> Any:
    def command(
        device: str = typer.Argument(..., help="Inventory name of the firewall."),
        ticket: str = typer.Option(
            None, "--ticket", help="The approved ticket asking for it (optional for --plan)."
        ),
        source: str = typer.Option(None, "--source", help="Address, CIDR prefix or 'any'."),
        destination: str = typer.Option(None, "--destination", help="Address, CIDR prefix or 'any'."),
        protocol: str = typer.Option(None, "--protocol", help="tcp, udp, icmp or ip."),
        ports: str = typer.Option(
            None, "--ports", help="Destination port or range (443, 8000-8010); tcp/udp."
        ),
        from_zone: str = typer.Option(
            None, "--from-zone", help="Zone the traffic enters from (inventory zones)."
        ),
        to_zone: str = typer.Option(None, "--to-zone", help="Zone the traffic goes to."),
        action: str = typer.Option(None, "--action", help="permit (default) or deny."),
        plan: bool = typer.Option(
            False, "--plan", help="Print the exact commands and the expected diff; change nothing."
        ),
        as_json: bool = JsonOption,
    ) -> None:
        flags = _flags(op, source, destination, protocol, ports, from_zone, to_zone, action)
        _run(op, device, flags, ticket, plan, as_json)

    command.__doc__ = (
        f"{op.capitalize()} a firewall rule: backup, apply under the platform's safety net, verify, confirm."
    )
    return command


rule_app.command("add")(_rule_command("add"))
rule_app.command("remove")(_rule_command("remove"))
