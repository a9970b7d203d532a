"""The ``reimage`` action: a ticket asks to reimage hosts (params ``image``, optional ``method``); each
host's job runs ``reimage.<method>``, the method chosen for that host (``methods.choose``)."""

from __future__ import annotations

from typing import Any

from remotehands.inventory.models import Host
from remotehands.jobs import actions
from remotehands.reimage import methods

DEADLINE_S = 6 * 3600  # a backstop; each wait has its own deadline (the install deadline)


def resolve(host: Host, params: dict[str, Any]) -> str:
    method = params.get("method")
    return "reimage." + methods.choose(host, str(method) if method else None).name


actions.register(
    actions.Action(
        "reimage",
        "reinstall a host's OS with the method its inventory profile (or the request) names",
        lambda: [],
        DEADLINE_S,
        "reimage",
        resolve=resolve,
    )
)
for _method in methods.all_methods().values():
    actions.register(
        actions.Action(
            f"reimage.{_method.name}",
            f"reimage: {_method.summary}",
            _method.steps,
            DEADLINE_S,
            f"reimage ({_method.name})",
        )
    )
