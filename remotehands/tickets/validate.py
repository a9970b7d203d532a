"""The checks every request passes before it becomes jobs, whichever system the ticket lives in."""

from __future__ import annotations

from remotehands.errors import InvalidRequest, WrongSubscription
from remotehands.inventory.models import PROVIDER, Host, Inventory, NetworkDevice, StorageArray
from remotehands.jobs import actions
from remotehands.tickets.base import TaskRequest


def check_request(
    request: TaskRequest,
    *,
    customer: str,
    subscription: str,
    inventory: Inventory,
    known_actions: frozenset[str],
) -> str:
    """Validate a request against the inventory; returns the site(s) of its targets, comma-separated.

    Raises ``InvalidRequest`` for an unknown action or subscription, ``UnknownTarget`` for a target not in
    the inventory, ``WrongSubscription`` when a customer targets a host outside its subscription."""
    if request.action not in known_actions:
        raise InvalidRequest(
            f"request.action {request.action!r} is not an action remotehands knows",
            fix="one of: " + ", ".join(sorted(known_actions)),
        )
    sites = set()
    action = actions.get(request.action)
    what = {"host": "host", "network": "device", "storage": "array"}[action.target_kind]
    for target in request.targets:
        host: Host | NetworkDevice | StorageArray
        if action.target_kind == "network":
            host = inventory.network_device(target)
        elif action.target_kind == "storage":
            host = inventory.array(target)
        else:
            host = inventory.host(target)
        if action.check_params is not None:
            action.check_params(dict(request.params), host)
        sites.add(host.site)
        if customer != PROVIDER and host.subscription != subscription:
            raise WrongSubscription(
                f"request.targets: {what} {target} does not belong to subscription {subscription} "
                f"of customer {customer}",
                fix="a customer's ticket can only target its own hosts; check the host name",
            )
    if customer != PROVIDER and subscription not in inventory.subscriptions:
        raise InvalidRequest(
            f"subscription {subscription!r} is not in the inventory",
            fix="known subscriptions: " + ", ".join(sorted(inventory.subscriptions)),
        )
    return ",".join(sorted(sites))
