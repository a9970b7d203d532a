"""The ``TicketSystem`` interface every ticket adapter implements, and the types at its boundary."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator

from remotehands.errors import InvalidRequest, TicketNotFound
from remotehands.numbers import ascii_int


class TicketType(StrEnum):
    REMOTE_HANDS = "remote-hands"
    CONFIG_CHANGE = "config-change"
    ENVIRONMENT_SETUP = "environment-setup"
    MONITORING_ALERT = "monitoring-alert"


class Severity(IntEnum):
    """Sev1 is the most urgent. The queue works lower numbers first, then in the order received."""

    OUTAGE_MANY = 1  # outage for many customers
    OUTAGE_ONE = 2  # outage for one customer
    DEGRADED = 3  # degradation
    REDUNDANCY_LOST = 4  # a redundant component failed
    FALSE_ALARM = 5  # false alarm

    @property
    def meaning(self) -> str:
        return SEVERITY_MEANINGS[self]


SEVERITY_MEANINGS = {
    Severity.OUTAGE_MANY: "outage for many customers",
    Severity.OUTAGE_ONE: "outage for one customer",
    Severity.DEGRADED: "degradation",
    Severity.REDUNDANCY_LOST: "redundant component failure",
    Severity.FALSE_ALARM: "false alarm",
}


class TicketStatus(StrEnum):
    NEW = "new"
    APPROVED = "approved"
    IN_PROGRESS = "in-progress"
    RESOLVED = "resolved"
    CLOSED = "closed"
    NEEDS_ATTENTION = "needs-attention"


class TaskRequest(BaseModel):
    """What a ticket asks remotehands to do: one action on one or more targets."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: str = Field(min_length=1)
    targets: tuple[str, ...] = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("targets")
    @classmethod
    def _distinct(cls, targets: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(targets)) != len(targets):
            raise ValueError("a target is listed twice")
        if any(not t.strip() for t in targets):
            raise ValueError("a target name is empty")
        return targets


@dataclass(frozen=True)
class Approval:
    approved: bool
    approver: str | None
    at: datetime | None


@dataclass(frozen=True)
class Ticket:
    """A ticket as remotehands sees it, whatever system it lives in."""

    id: str  # as the ticket system writes it, e.g. RH-12
    system: str
    type: TicketType
    severity: Severity
    status: TicketStatus
    title: str
    description: str
    sensitive: bool
    customer: str
    subscription: str
    site: str
    requester: str
    approver: str | None
    request: TaskRequest | None  # None: the ticket asks nothing of remotehands (e.g. an alert to triage)
    received_at: datetime
    # The SLA clock and escalation, where the system keeps them (builtin does; external systems run their own).
    sla_due_at: datetime | None = None
    responded_at: datetime | None = None
    escalation_level: int = 0
    assignee_group: str | None = None

    def wanted(self) -> TaskRequest:
        """The ticket's request; raises ``InvalidRequest`` when it asks nothing of remotehands."""
        if self.request is None:
            raise InvalidRequest(
                f"{self.id} asks nothing of remotehands (it has no action and no targets)",
                fix="open a ticket with an action and hosts for the work",
            )
        return self.request


@dataclass(frozen=True)
class Comment:
    author: str
    body: str
    internal: bool
    at: datetime


@dataclass(frozen=True)
class Attachment:
    name: str
    size: int
    at: datetime


@runtime_checkable
class TicketSystem(Protocol):
    """What remotehands needs of a ticket system. Every method raises ``TicketSystemUnavailable`` when the
    system does not answer and ``TicketNotFound`` for an unknown id. ``event_key`` makes a write idempotent:
    a second write with the same key does nothing."""

    name: str
    # True: the outbox sends a run of step comments written close together as one comment (external
    # systems, where people read the trail and rate limits apply); False: one comment per event.
    coalesce_comments: bool

    def get(self, ticket_id: str) -> Ticket: ...

    def approval(self, ticket_id: str) -> Approval: ...

    def comment(
        self, ticket_id: str, text: str, *, internal: bool = True, event_key: str | None = None
    ) -> None: ...

    def set_status(self, ticket_id: str, status: TicketStatus) -> None: ...

    def attach(self, ticket_id: str, name: str, data: bytes, *, event_key: str | None = None) -> None: ...


def event_marker(event_key: str) -> str:
    """The tag an external adapter appends to a comment it writes, so a redelivery can find it and write
    nothing twice (external systems have no idempotency keys of their own)."""
    return f"[remotehands:{event_key}]"


def parse_builtin_id(ticket_id: str | int) -> int:
    """``RH-12``, ``rh-12`` or ``12`` -> 12; raises ``TicketNotFound`` for anything else."""
    number = ascii_int(str(ticket_id).strip().upper().removeprefix("RH-"), max_digits=12)
    if number is None:
        raise TicketNotFound(f"{ticket_id!r} is not a builtin ticket id", fix="ticket ids look like RH-12")
    return number


def format_builtin_id(number: int) -> str:
    return f"RH-{number}"
