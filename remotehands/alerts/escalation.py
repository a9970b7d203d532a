"""Escalating tickets whose SLA response time passed without a response. (A job that ends needs_operator
escalates its ticket through the outbox, see ``jobs.store.finish``.)"""

from __future__ import annotations

import logging

from remotehands.runtime import Runtime

log = logging.getLogger(__name__)


def check_sla(runtime: Runtime) -> list[str]:
    """Escalate every open builtin ticket past its SLA due time with no response; returns their ids.
    Each ticket is escalated for its SLA once (an event key makes a repeat a no-op)."""
    tickets = runtime.tickets
    escalated = []
    for ticket_id in tickets.overdue():
        ticket = tickets.get(ticket_id, reveal=False)
        due = ticket.sla_due_at.isoformat(timespec="minutes") if ticket.sla_due_at else "?"
        tickets.escalate(
            ticket_id,
            f"SLA breached: Sev{int(ticket.severity)} response was due by {due} and nobody has responded",
            event_key=f"sla-{ticket_id}",
        )
        escalated.append(ticket_id)
        log.warning("%s: SLA breached, escalated", ticket_id)
    return escalated
