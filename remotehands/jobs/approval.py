"""Approval at the source: the step every action starts with, and the check the runner makes right before
each step that changes the equipment. Both re-read the ticket's approval at its own ticket system, so a
ticket un-approved while its job waited, or while it ran, stops before the next change (the job is
cancelled, and the ticket is told why)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from remotehands.errors import NotApproved
from remotehands.jobs.steps import Done, Step, StepContext

if TYPE_CHECKING:
    from remotehands.runtime import Runtime


def require_approval(runtime: Runtime, system: str, ticket_id: str, before: str) -> str:
    """Return who approved ``ticket_id``; raise ``NotApproved`` if it is not approved at ``system`` now.

    ``TicketSystemUnavailable`` propagates: the step is retried, never run unapproved."""
    approval = runtime.ticket_system(system).approval(ticket_id)
    if not approval.approved:
        raise NotApproved(
            f"{ticket_id} is no longer approved at {system}; stopped before {before}",
            fix="have it approved again, then re-run the ticket",
        )
    return approval.approver or "unknown"


class CheckApproval(Step):
    name = "check-approval"
    description = "re-read the ticket's approval at its own ticket system"
    idempotent = True

    def run(self, ctx: StepContext) -> Done:
        approver = require_approval(ctx.runtime, ctx.ticket_system, ctx.ticket_id, "starting")
        return Done(f"{ctx.ticket_id} approved by {approver}")
