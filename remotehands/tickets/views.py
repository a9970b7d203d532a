"""Tickets as plain data (for ``--json``, the API and the pages)."""

from __future__ import annotations

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
        "action": t.request.action,
        "targets": list(t.request.targets),
        "params": t.request.params,
        "received_at": t.received_at.isoformat(),
    }
