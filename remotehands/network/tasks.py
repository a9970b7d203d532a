"""Network actions, each run by the one change pipeline (``remotehands.network.pipeline``):
``net.firewall_rule`` (add or remove a rule), ``net.add_ip`` (addresses from the site's IP plan, routed to
the customer's host) and ``net.release_ip`` (their routes removed, the addresses back in the plan)."""

from __future__ import annotations

from typing import Any

from remotehands.inventory.models import NetworkDevice
from remotehands.jobs import actions
from remotehands.network import templates
from remotehands.network.addresses import parse_ip_request
from remotehands.network.pipeline import change_steps
from remotehands.network.rules import parse_rule

# Backup, apply, verify and confirm each log in once; a commit on a busy firewall can take minutes.
DEADLINE_S = 1800


def check_rule(params: dict[str, Any], device: NetworkDevice) -> None:
    """A ticket's rule is refused at intake when it is malformed or the platform cannot express it."""
    templates.change(parse_rule(params, device, "intake"), device, "")


def check_add_ip(params: dict[str, Any], device: NetworkDevice) -> None:
    """A request for addresses is refused at intake when a field is malformed (the IP plan is asked later)."""
    parse_ip_request(params, device, "add")


def check_release_ip(params: dict[str, Any], device: NetworkDevice) -> None:
    parse_ip_request(params, device, "remove")


for name, description, purpose, check in (
    (
        "net.firewall_rule",
        "add or remove a firewall rule, with backup, verify, confirm and proven rollback",
        "firewall rule",
        check_rule,
    ),
    (
        "net.add_ip",
        "give a customer addresses from the site's IP plan and route them to its host",
        "customer IPs",
        check_add_ip,
    ),
    (
        "net.release_ip",
        "remove the routes of a customer's addresses and release them in the IP plan",
        "release customer IPs",
        check_release_ip,
    ),
):
    actions.register(
        actions.Action(
            name, description, change_steps, DEADLINE_S, purpose, target_kind="network", check_params=check
        )
    )
