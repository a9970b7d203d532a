"""Network actions: ``net.firewall_rule`` (add or remove one rule on a firewall, ``remotehands.network.pipeline``)."""

from __future__ import annotations

from typing import Any

from remotehands.inventory.models import NetworkDevice
from remotehands.jobs import actions
from remotehands.network import templates
from remotehands.network.pipeline import firewall_steps
from remotehands.network.rules import parse_rule

# Backup, apply, verify and confirm each log in once; a commit on a busy firewall can take minutes.
DEADLINE_S = 1800


def check_rule(params: dict[str, Any], device: NetworkDevice) -> None:
    """A ticket's rule is refused at intake when it is malformed or the platform cannot express it."""
    templates.change(parse_rule(params, device, "intake"), device, "")


actions.register(
    actions.Action(
        "net.firewall_rule",
        "add or remove a firewall rule, with backup, verify, confirm and proven rollback",
        firewall_steps,
        DEADLINE_S,
        "firewall rule",
        target_kind="network",
        check_params=check_rule,
    )
)
