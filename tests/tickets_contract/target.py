"""What a ticket contract target is: one adapter wired to its simulator, with the simulator's own view of
the ticket (comments, attachments, native status), so the tests check what the system really holds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from remotehands.lab.ticket_sims.harness import Faults
from remotehands.tickets.base import TaskRequest, TicketSystem


@dataclass
class TicketTarget:
    """``seed(request=, title=, requester=, subscription=, via_fields=, description=)`` creates a ticket in
    the system (the request in mapped fields when ``via_fields``, else as a fenced block in the description;
    ``request=None`` creates one without a request) and returns its id as the adapter names it.
    ``set_approval(id, "approved" | "pending" | "declined", approver)`` changes it at the source.
    ``comments(id)`` -> [(body, internal)], ``attachments(id)`` -> [(name, bytes)] as the system stores them.
    ``make(**overrides)`` builds another adapter (e.g. ``token="wrong"``, ``url=dead``); ``sleeps`` records
    the waits the adapter made (its sleep is patched to record, not to wait)."""

    name: str
    system: TicketSystem
    seed: Callable[..., str]
    set_approval: Callable[[str, str, str], None]
    comments: Callable[[str], list[tuple[str, bool]]]
    attachments: Callable[[str], list[tuple[str, bytes]]]
    native_status: Callable[[str], str]
    add_comments: Callable[[str, int], None]  # n filler comments from a person (forces pagination)
    faults: Faults | None = None
    make: Callable[..., TicketSystem] | None = None
    sleeps: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def sample_request(host: str = "mac-01") -> TaskRequest:
    return TaskRequest(action="power.cycle", targets=(host,), params={})
