"""The outbox: job events written in the same transaction as the step journal, delivered to the ticket
later, idempotently (each event carries its own key) and with retries, so a ticket system that is down
loses nothing and a redelivery writes nothing twice.

Events of one ticket are delivered strictly in the order written: a ticket whose oldest undelivered event
is not yet due (it failed and is backing off) gets nothing delivered, and a ticket is delivered by one
deliverer at a time (a claim on its oldest event), so a worker and a foreground ``run`` never interleave.
Events of a sensitive ticket are stored encrypted.

An external ticket system (one whose adapter sets ``coalesce_comments``) gets consecutive comments as one:
the run of comment events written within ``COALESCE`` of the oldest is sent, once that window has passed,
as a single comment keyed by the oldest event. The run's members are recorded on its first event before
it is sent, so a redelivery after a crash rebuilds exactly that run (an event that committed late does not
join it and lose its text to the first send's key). A ticket's trail there reads as a few comments, not one per step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from remotehands import redaction
from remotehands.db import Database
from remotehands.errors import InternalError, RemoteHandsError
from remotehands.jobs.tables import OutboxEvent
from remotehands.tickets.base import TicketStatus, TicketSystem
from remotehands.tickets.crypto import TicketCipher

log = logging.getLogger(__name__)

MAX_BACKOFF = timedelta(minutes=10)
CLAIM = timedelta(seconds=60)
COALESCE = timedelta(seconds=10)

Systems = Callable[[str], TicketSystem]


def _now() -> datetime:
    return datetime.now(UTC)


def cipher_of(session: Session) -> TicketCipher:
    """The sensitive-ticket cipher of the database this session belongs to."""
    cipher = session.info.get("cipher")
    if not isinstance(cipher, TicketCipher):
        raise InternalError(
            "a sensitive ticket's data was written through a database opened without a cipher"
        )
    return cipher


def enqueue(
    session: Session,
    ticket_system: str,
    ticket_id: str,
    kind: str,
    body: str,
    *,
    job_id: int | None = None,
    payload: bytes | None = None,
    sensitive: bool = False,
) -> None:
    """Add an event inside the caller's transaction; it is delivered only if that transaction commits."""
    stamp = _now()
    text = redaction.redact(body)
    data = redaction.redact_bytes(payload) if payload is not None else None
    if sensitive:
        cipher = cipher_of(session)
        text = cipher.encrypt_text(text)
        data = cipher.encrypt_bytes(data) if data is not None else None
    session.add(
        OutboxEvent(
            job_id=job_id,
            ticket_system=ticket_system,
            ticket_id=ticket_id,
            kind=kind,
            body=text,
            payload=data,
            sensitive=sensitive,
            created_at=stamp,
            next_attempt_at=stamp,
        )
    )


def deliver(db: Database, systems: Systems, *, owner: str = "", limit: int = 200) -> int:
    """Deliver due events, per ticket in the order written; returns how many were delivered.

    ``systems(name)`` gives the adapter of a ticket system by name."""
    with db.session() as s:
        pending = s.execute(
            select(OutboxEvent.id, OutboxEvent.ticket_system, OutboxEvent.ticket_id)
            .where(OutboxEvent.delivered_at.is_(None))
            .order_by(OutboxEvent.id)
            .limit(limit)
        ).all()
    first_of: dict[tuple[str, str], int] = {}
    for event_id, system, ticket_id in pending:
        first_of.setdefault((system, ticket_id), event_id)
    delivered = 0
    for (system, ticket_id), first_id in first_of.items():
        try:
            tickets = systems(system)
        except RemoteHandsError as exc:
            _record_failure(db, first_id, exc)
            continue
        if not _claim(db, first_id, owner or "deliverer"):
            continue  # backing off, or another deliverer has this ticket
        delivered += _deliver_ticket(db, tickets, system, ticket_id, first_id, owner or "deliverer")
    return delivered


def _claim(db: Database, first_id: int, owner: str) -> bool:
    stamp = _now()
    with db.session() as s:
        taken = s.execute(
            update(OutboxEvent)
            .where(
                OutboxEvent.id == first_id,
                OutboxEvent.delivered_at.is_(None),
                OutboxEvent.next_attempt_at <= stamp,
                or_(OutboxEvent.claim_until.is_(None), OutboxEvent.claim_until < stamp),
            )
            .values(claimed_by=owner, claim_until=stamp + CLAIM)
            .execution_options(synchronize_session=False)
        )
        return bool(taken.rowcount == 1)  # type: ignore[attr-defined]


def _batches(events: list[OutboxEvent], coalesce: bool) -> list[list[OutboxEvent]]:
    """Split a ticket's pending events into sends: one per event, or runs of comments within the window.
    A run recorded by an earlier attempt (``batch_ids``) is rebuilt exactly, so a redelivery sends the
    same text under the same key. A run whose window is still open ends the list: it waits for the next
    pass."""
    if not coalesce:
        return [[e] for e in events]
    out: list[list[OutboxEvent]] = []
    stamp = _now()
    by_id = {e.id: e for e in events}
    taken: set[int] = set()
    for first in events:
        if first.id in taken:
            continue
        if first.batch_ids:
            run = [by_id[i] for i in first.batch_ids if i in by_id]
        elif first.kind != "comment":
            run = [first]
        else:
            closes = _aware(first.created_at) + COALESCE
            if closes > stamp:
                break
            run = []
            for e in events[events.index(first) :]:
                joins = (
                    e.id not in taken
                    and not e.batch_ids
                    and e.kind == "comment"
                    and e.sensitive == first.sensitive
                    and _aware(e.created_at) <= closes
                )
                if not joins:
                    break  # the run is consecutive events only: order is kept
                run.append(e)
        taken.update(e.id for e in run)
        out.append(run)
    return out


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _deliver_ticket(
    db: Database, tickets: TicketSystem, system: str, ticket_id: str, first_id: int, owner: str
) -> int:
    """Deliver a ticket's pending events in order while holding its claim. The claim sits on the oldest
    undelivered event: it moves to the next one in the transaction that marks a batch delivered, and is
    renewed before every send, so no other deliverer can start on this ticket meanwhile."""
    with db.session() as s:
        events = list(
            s.execute(
                select(OutboxEvent)
                .where(
                    OutboxEvent.ticket_system == system,
                    OutboxEvent.ticket_id == ticket_id,
                    OutboxEvent.delivered_at.is_(None),
                    OutboxEvent.id >= first_id,
                )
                .order_by(OutboxEvent.id)
            ).scalars()
        )
        cipher = s.info.get("cipher")
    count = 0
    holder = first_id
    batches = _batches(events, tickets.coalesce_comments)
    try:
        for n, batch in enumerate(batches):
            if batch[0].id != holder or not _renew(db, holder, owner, batch):
                return count  # the claim was lost (expired and taken): the other deliverer goes on
            try:
                _send(tickets, batch, cipher)
            except RemoteHandsError as exc:
                _record_failure(db, batch[0].id, exc)
                return count
            following = batches[n + 1][0].id if n + 1 < len(batches) else None
            with db.session() as s:
                for event in batch:
                    row = s.get(OutboxEvent, event.id)
                    if row is not None and row.delivered_at is None:
                        row.delivered_at = _now()
                        row.attempts += 1
                if following is not None:  # hand the claim on: this batch is done
                    s.execute(
                        update(OutboxEvent)
                        .where(OutboxEvent.id == following)
                        .values(claimed_by=owner, claim_until=_now() + CLAIM)
                        .execution_options(synchronize_session=False)
                    )
                    s.execute(
                        update(OutboxEvent)
                        .where(OutboxEvent.id == holder)
                        .values(claimed_by=None, claim_until=None)
                        .execution_options(synchronize_session=False)
                    )
            holder = following if following is not None else holder
            count += len(batch)
    finally:
        with db.session() as s:
            s.execute(
                update(OutboxEvent)
                .where(OutboxEvent.id == holder, OutboxEvent.claimed_by == owner)
                .values(claimed_by=None, claim_until=None)
                .execution_options(synchronize_session=False)
            )
    return count


def _renew(db: Database, holder: int, owner: str, batch: list[OutboxEvent]) -> bool:
    """Renew our claim on ``holder``; record a coalesced batch's members before it is sent."""
    with db.session() as s:
        renewed = s.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id == holder, OutboxEvent.claimed_by == owner)
            .values(claim_until=_now() + CLAIM)
            .execution_options(synchronize_session=False)
        )
        if renewed.rowcount != 1:  # type: ignore[attr-defined]
            return False
        if len(batch) > 1 and not batch[0].batch_ids:
            row = s.get(OutboxEvent, holder)
            if row is not None:
                row.batch_ids = [e.id for e in batch]
    return True


def _open(event: OutboxEvent, cipher: object) -> tuple[str, bytes | None]:
    if not event.sensitive:
        return event.body, event.payload
    assert isinstance(cipher, TicketCipher)
    payload = cipher.decrypt_bytes(event.payload) if event.payload is not None else None
    return cipher.decrypt_text(event.body), payload


def _send(tickets: TicketSystem, batch: list[OutboxEvent], cipher: object) -> None:
    event = batch[0]
    key = f"outbox-{event.id}"
    body, payload = _open(event, cipher)
    if event.kind == "comment":
        if len(batch) > 1:
            body = "\n".join(_open(e, cipher)[0] for e in batch)
        tickets.comment(event.ticket_id, body, internal=True, event_key=key)
    elif event.kind == "status":
        tickets.set_status(event.ticket_id, TicketStatus(body))
    elif event.kind == "attach":
        tickets.attach(event.ticket_id, body, payload or b"", event_key=key)
    elif event.kind == "escalate":
        escalate = getattr(tickets, "escalate", None)
        if callable(escalate):
            escalate(event.ticket_id, body, event_key=key)
        else:  # the system runs its own escalation: say it on the ticket, its status already says the rest
            tickets.comment(event.ticket_id, f"ESCALATION: {body}", internal=True, event_key=key)
    else:
        raise InternalError(f"outbox event {event.id} has unknown kind {event.kind!r}")


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
