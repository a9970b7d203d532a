"""Tickets as plain data (for ``--json``, the API and the pages)."""

from __future__ import annotations

from remotehands.alerts.sla import breached
from remotehands.tickets.base import Ticket


def ticket_dict(t: Ticket) -> dict[str, object]:
    """A ticket as JSON-able data."""
    return {
        "id": t.id,
        "type": t.type.value,
        "severity": int(t.severity),
        "severity_meaning": t.severity.meaning,
        "status": t.status.value,
        "title": t.title,
        "description": t.description,
        "sensitive": t.sensitive,
        "customer": t.customer,
        "subscription": t.subscription,
        "site": t.site,
        "requester": t.requester,
        "approver": t.approver,
        "action": t.request.action if t.request else None,
        "targets": list(t.request.targets) if t.request else [],
        "params": t.request.params if t.request else {},
        "received_at": t.received_at.isoformat(),
        "sla_due_at": t.sla_due_at.isoformat() if t.sla_due_at else None,
        "responded_at": t.responded_at.isoformat() if t.responded_at else None,
        "sla_breached": breached(t.sla_due_at, t.responded_at),
        "escalation_level": t.escalation_level,
        "assignee_group": t.assignee_group,
    }
