"""The actions remotehands can run, each declared as a list of steps. Task modules register theirs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from remotehands.errors import InvalidRequest
from remotehands.jobs.steps import Step

if TYPE_CHECKING:
    from remotehands.inventory.models import Host


@dataclass(frozen=True)
class Action:
    name: str
    description: str
    steps: Callable[[], list[Step]]
    deadline_seconds: int = 900
    purpose: str = ""
    # An action whose steps depend on the target (``reimage``: the method follows the host) names, per
    # target, the concrete action its job runs; raises ``InvalidRequest`` when none fits the host.
    resolve: Callable[[Host, dict[str, Any]], str] | None = None
    # What the targets are: inventory hosts (servers, Macs), network devices (firewalls, switches) or
    # storage arrays.
    target_kind: Literal["host", "network", "storage"] = "host"
    # Checks a request's params against one target before any job exists (a ticket with a bad rule is
    # refused at intake, naming the field); raises ``InvalidRequest``.
    check_params: Callable[[dict[str, Any], Any], None] | None = None
    # An action whose later steps depend on what its first steps found (``storage.expand_lun``: one step per
    # host that sees the LUN, fixed by its precheck) builds its steps from the job's data. The steps before
    # the ones that vary must not depend on it, so their indices never move.
    steps_for: Callable[[dict[str, Any]], list[Step]] | None = None

    def job_steps(self, data: dict[str, Any]) -> list[Step]:
        """The steps of a job of this action whose data (what its steps wrote so far) is ``data``."""
        return self.steps_for(data) if self.steps_for is not None else self.steps()


_ACTIONS: dict[str, Action] = {}


def register(action: Action) -> None:
    _ACTIONS[action.name] = action


def get(name: str) -> Action:
    """The registered action ``name``; raises ``InvalidRequest`` listing the known ones."""
    _load_builtin_actions()
    try:
        return _ACTIONS[name]
    except KeyError:
        raise InvalidRequest(
            f"unknown action {name!r}", fix="one of: " + ", ".join(sorted(_ACTIONS))
        ) from None


def names() -> frozenset[str]:
    _load_builtin_actions()
    return frozenset(_ACTIONS)


def _load_builtin_actions() -> None:
    # Importing a task module registers its actions.
    import remotehands.ansible.action
    import remotehands.bmc.tasks
    import remotehands.network.tasks
    import remotehands.reimage.action
    import remotehands.storage.tasks  # noqa: F401
