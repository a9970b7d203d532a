"""What a job is made of: an ordered list of steps.

A step acts once per call of ``run`` and returns ``Done`` (with a one-line result for the ticket) or
``Wait`` (call me again at ``until``; the worker is freed meanwhile). Before ``run``, the engine commits a
``started`` journal row holding the step's ``baseline`` (evidence read from the equipment before acting).
If the process dies between that commit and ``done``, the next worker calls ``reconcile`` instead of
running the step blindly: it reads the equipment and decides.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from remotehands.inventory.models import Host
    from remotehands.runtime import Runtime


@dataclass(frozen=True)
class Done:
    """The step finished; ``message`` is its one-line result for the ticket trail.

    ``quiet`` keeps a step that had nothing to do on this path (e.g. a skipped half of a cycle) out of the
    ticket trail; the job journal still records it."""

    message: str
    quiet: bool = False


@dataclass(frozen=True)
class Wait:
    """Call the step again at ``until`` (or earlier, on a callback); ``reason`` shows in ``jobs show``."""

    until: datetime
    reason: str


class Verdict(StrEnum):
    DONE = "done"  # the equipment shows the step took effect: do not act again
    RETRY = "retry"  # the step did not act (or acting again is harmless): run it
    NEEDS_OPERATOR = "needs_operator"  # cannot tell: a human must look


@dataclass(frozen=True)
class Reconciled:
    verdict: Verdict
    message: str


@dataclass
class StepContext:
    """What a step may use: the job's identity and parameters, its shared data, the runtime."""

    job_id: int
    ticket_id: str
    action: str
    target: str
    params: dict[str, Any]
    data: dict[str, Any]  # persisted with each step's done; later steps read what earlier steps wrote
    runtime: Runtime
    confirmed_by: str | None = None  # a technician's confirmation of a manual step
    ticket_system: str = "builtin"
    notes: list[str] = field(default_factory=list)  # ticket comments, committed with the step's outcome
    attachments: list[tuple[str, bytes]] = field(default_factory=list)  # likewise, ticket attachments

    def host(self) -> Host:
        return self.runtime.inventory().host(self.target)

    def tell_ticket(self, text: str) -> None:
        """Add a comment to the ticket, written in the same transaction as this step's outcome."""
        self.notes.append(text)

    def attach(self, name: str, data: bytes) -> None:
        """Attach a file to the ticket (redacted), written in the same transaction as this step's outcome,
        failures included: evidence gathered while failing reaches the ticket."""
        self.attachments.append((name, data))


class Step(ABC):
    """One journaled unit of a job."""

    name: str = ""
    description: str = ""
    # A read-only or naturally idempotent step may simply be run again after a crash.
    idempotent: bool = False
    # Before a step that may change the equipment (every non-idempotent step, and idempotent ones that
    # declare it), the ticket's approval is re-read at its source.
    changes_equipment: bool = False
    # Once this step is done the equipment cannot be put back (a LUN is never shrunk): from then on the job
    # never ends as failed; a fatal error, exhausted retries or the deadline stop it as needs_operator, so
    # an operator finishes it (``jobs retry`` resumes at the step that stopped).
    irreversible: bool = False
    # The step may act for longer than a broker keeps a message unacknowledged (RabbitMQ's consumer_timeout,
    # 30 minutes by default; a Redis visibility timeout): a playbook run. The celery executor runs the jobs
    # that have such a step beside its task threads, so no message is held while they run.
    long: bool = False

    @property
    def needs_approval(self) -> bool:
        return self.changes_equipment or not self.idempotent

    def baseline(self, ctx: StepContext) -> dict[str, Any]:
        """Evidence read before acting, stored in the ``started`` row for ``reconcile``."""
        return {}

    @abstractmethod
    def run(self, ctx: StepContext) -> Done | Wait:
        """Act once. Raise a ``RemoteHandsError``: retryable errors are retried with back-off."""

    def reconcile(self, ctx: StepContext, baseline: dict[str, Any]) -> Reconciled:
        """Decide what to do about a ``started`` row left by a dead worker. Non-idempotent steps override."""
        if self.idempotent:
            return Reconciled(Verdict.RETRY, f"{self.name} is safe to run again")
        return Reconciled(
            Verdict.NEEDS_OPERATOR,
            f"the worker stopped while '{self.name}' was acting and it cannot be told whether it took effect",
        )
