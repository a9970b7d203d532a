"""The step every action starts with: re-read the ticket's approval at its own ticket system, so a ticket
un-approved while its job waited in the queue does nothing."""

from __future__ import annotations

from remotehands.errors import NotApproved
from remotehands.jobs.steps import Done, Step, StepContext


class CheckApproval(Step):
    name = "check-approval"
    description = "re-read the ticket's approval at its own ticket system"
    idempotent = True

    def run(self, ctx: StepContext) -> Done:
        approval = ctx.runtime.tickets.approval(ctx.ticket_id)
        if not approval.approved:
            raise NotApproved(
                f"{ctx.ticket_id} is no longer approved at its ticket system",
                fix="have it approved again, then re-run the ticket",
            )
        return Done(f"{ctx.ticket_id} approved by {approval.approver}")
