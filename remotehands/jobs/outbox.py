"""The outbox: job events written in the same transaction as the step journal, delivered to the ticket
later, idempotently (each event carries its own key) and with retries, so a ticket system that is down
loses nothing and a redelivery writes nothing twice."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from remotehands import redaction
from remotehands.db import Database
from remotehands.errors import RemoteHandsError, TicketSystemUnavailable
from remotehands.jobs.tables import OutboxEvent
from remotehands.tickets.base import TicketStatus, TicketSystem

log = logging.getLogger(__name__)

MAX_BACKOFF = timedelta(minutes=10)


def _now() -> datetime:
    return datetime.now(UTC)


def enqueue(
    session: Session,
    ticket_system: str,
    ticket_id: str,
    kind: str,
    body: str,
    *,
    job_id: int | None = None,
    payload: bytes | None = None,
) -> None:
    """Add an event inside the caller's transaction; it is delivered only if that transaction commits."""
    stamp = _now()
    session.add(
        OutboxEvent(
            job_id=job_id,
            ticket_system=ticket_system,
            ticket_id=ticket_id,
            kind=kind,
            body=redaction.redact(body),
            payload=redaction.redact_bytes(payload) if payload is not None else None,
            created_at=stamp,
            next_attempt_at=stamp,
        )
    )


def deliver(db: Database, tickets: TicketSystem, *, limit: int = 100) -> int:
    """Deliver due events in the order they were written; returns how many were delivered.

    Events of one ticket stay in order: after a failure for a ticket, its later events wait too.
    """
    delivered = 0
    with db.session() as s:
        due = list(
            s.execute(
                select(OutboxEvent)
                .where(OutboxEvent.delivered_at.is_(None), OutboxEvent.next_attempt_at <= _now())
                .order_by(OutboxEvent.id)
                .limit(limit)
            ).scalars()
        )
    blocked: set[str] = set()
    for event in due:
        if event.ticket_id in blocked:
            continue
        try:
            _send(tickets, event)
        except RemoteHandsError as exc:
            blocked.add(event.ticket_id)
            _record_failure(db, event.id, exc)
            continue
        with db.session() as s:
            row = s.get(OutboxEvent, event.id)
            if row is not None and row.delivered_at is None:
                row.delivered_at = _now()
                row.attempts += 1
        delivered += 1
    return delivered


def _send(tickets: TicketSystem, event: OutboxEvent) -> None:
    key = f"outbox-{event.id}"
    if event.kind == "comment":
        tickets.comment(event.ticket_id, event.body, internal=True, event_key=key)
    elif event.kind == "status":
        tickets.set_status(event.ticket_id, TicketStatus(event.body))
    elif event.kind == "attach":
        tickets.attach(event.ticket_id, event.body, event.payload or b"", event_key=key)
    else:
        raise TicketSystemUnavailable(f"outbox event {event.id} has unknown kind {event.kind!r}")


def _record_failure(db: Database, event_id: int, exc: RemoteHandsError) -> None:
    with db.session() as s:
        row = s.get(OutboxEvent, event_id)
        if row is None:
            return
        row.attempts += 1
        delay = min(timedelta(seconds=2 ** min(row.attempts, 10)), MAX_BACKOFF)
        row.next_attempt_at = _now() + delay
        row.last_error = str(exc)
        log.warning(
            "outbox event %s for %s not delivered (attempt %s): %s", row.id, row.ticket_id, row.attempts, exc
        )


def pending(db: Database, ticket_id: str | None = None) -> int:
    """How many events are still undelivered (for one ticket, or all)."""
    with db.session() as s:
        query = select(OutboxEvent.id).where(OutboxEvent.delivered_at.is_(None))
        if ticket_id:
            query = query.where(OutboxEvent.ticket_id == ticket_id)
        return len(s.execute(query).all())
