"""Webhook intake after the signature: a durable record first, then the work, at the ticket's own system.

``accept`` stores the delivery (a re-sent delivery id is a no-op) and returns at once, so the server can
answer 202 fast. ``process_due`` then handles each stored delivery: it fetches the ticket from its own
system (the webhook body is never trusted for content), extracts and validates the request, skips a
request that already has jobs (a ticket system re-sends, and every comment we write triggers another
"updated" webhook), reads approval there, and makes the jobs. Whatever stops it is written on the ticket:
an invalid request, no approval, a busy host. A ticket system that is down is retried with back-off; the
delivery stays ``received`` meanwhile, so a server restart loses nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from remotehands import audit, redaction
from remotehands.errors import (
    BadInput,
    NotApproved,
    NotPermitted,
    RemoteHandsError,
    RetryableError,
    TicketNotFound,
)
from remotehands.intake.tables import WebhookDelivery
from remotehands.jobs import actions, store
from remotehands.runtime import Runtime
from remotehands.tickets.extract import request_key
from remotehands.tickets.validate import check_request

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8


def _now() -> datetime:
    return datetime.now(UTC)


def ticket_id_from(kind: str, body: bytes) -> str:
    """The ticket a (verified) webhook body is about. Raises ``BadInput`` naming the field it expected."""
    try:
        data = json.loads(body)
    except ValueError:
        raise BadInput("the body is not JSON", fix="send the webhook body as JSON") from None
    if not isinstance(data, dict):
        raise BadInput("the body is not a JSON object", fix="send an object with the ticket's id")
    candidates: list[Any]
    if kind == "jira":
        issue = data.get("issue")
        candidates = [issue.get("key") if isinstance(issue, dict) else None]
        field = "issue.key"
    else:
        ticket = data.get("ticket")
        detail = data.get("detail")
        candidates = [
            data.get("ticket_id"),
            ticket.get("id") if isinstance(ticket, dict) else None,
            detail.get("id") if isinstance(detail, dict) else None,
        ]
        field = "ticket_id"
    for value in candidates:
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()[:64]
    raise BadInput(f"the body has no {field}", fix=f"send the ticket's id as {field}")


def accept(runtime: Runtime, system: str, delivery_id: str, ticket_id: str) -> tuple[bool, int]:
    """Store a delivery; returns (new, delivery row id). A delivery id seen before is not stored again."""
    return accept_many(runtime, [(system, delivery_id, ticket_id)])[0]


def accept_many(runtime: Runtime, deliveries: list[tuple[str, str, str]]) -> list[tuple[bool, int]]:
    """Store (system, delivery id, ticket id) deliveries in one transaction, so many webhooks arriving
    together share one commit (one fsync); returns (new, row id) for each, in order. A delivery id seen
    before, or twice in the batch, is stored once."""
    stamp = _now()
    insert = sqlite_insert if runtime.db.engine.dialect.name == "sqlite" else pg_insert
    out: list[tuple[bool, int]] = []
    with runtime.db.session() as s:
        for system, delivery_id, ticket_id in deliveries:
            new_id = s.execute(
                insert(WebhookDelivery)
                .values(
                    system=system,
                    delivery_id=delivery_id,
                    ticket_id=ticket_id,
                    state="received",
                    outcome="",
                    job_ids=[],
                    attempts=0,
                    received_at=stamp,
                    next_attempt_at=stamp,
                )
                .on_conflict_do_nothing(index_elements=["system", "delivery_id"])
                .returning(WebhookDelivery.id)
            ).scalar()
            if new_id is not None:
                out.append((True, int(new_id)))
                continue
            existing = s.execute(
                select(WebhookDelivery.id).where(
                    WebhookDelivery.system == system, WebhookDelivery.delivery_id == delivery_id
                )
            ).scalar_one()
            out.append((False, int(existing)))
    return out


def process_due(runtime: Runtime, *, limit: int = 50) -> int:
    """Process stored deliveries that are due, oldest first; returns how many reached an outcome."""
    stamp = _now()
    with runtime.db.session() as s:
        due = list(
            s.execute(
                select(WebhookDelivery.id)
                .where(WebhookDelivery.state == "received", WebhookDelivery.next_attempt_at <= stamp)
                .order_by(WebhookDelivery.id)
                .limit(limit)
            ).scalars()
        )
    return sum(1 for delivery in due if process(runtime, delivery))


def process(runtime: Runtime, delivery: int) -> bool:
    """Handle one delivery; True when it reached an outcome, False when it will be retried (or another
    process has it)."""
    with runtime.db.session() as s:
        # Claim it by pushing its next attempt out: two intake loops never process one delivery at once.
        claimed = s.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery,
                WebhookDelivery.state == "received",
                WebhookDelivery.next_attempt_at <= _now(),
            )
            .values(next_attempt_at=_now() + timedelta(minutes=2), attempts=WebhookDelivery.attempts + 1)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            return False
        row = s.get(WebhookDelivery, delivery)
        assert row is not None
        system, ticket_id, attempts = row.system, row.ticket_id, row.attempts
    try:
        state, outcome, job_ids = _handle(runtime, system, ticket_id)
    except RetryableError as exc:
        if attempts >= MAX_ATTEMPTS:
            _record(runtime, delivery, "failed", f"gave up after {attempts} attempts: {exc}", [])
            return True
        delay = min(2**attempts, 300)
        with runtime.db.session() as s:
            row = s.get(WebhookDelivery, delivery)
            if row is not None:
                row.next_attempt_at = _now() + timedelta(seconds=delay)
                row.outcome = redaction.redact(f"retrying in {delay} s: {exc}")
        log.warning("webhook %s for %s %s: retrying in %s s: %s", delivery, system, ticket_id, delay, exc)
        return False
    _record(runtime, delivery, state, outcome, job_ids)
    return True


def _handle(runtime: Runtime, system: str, ticket_id: str) -> tuple[str, str, list[int]]:
    tickets = runtime.ticket_system(system)
    try:
        ticket = tickets.get(ticket_id)
    except TicketNotFound as exc:
        return "invalid", str(exc), []
    except BadInput as exc:
        _tell(tickets, ticket_id, f"remotehands cannot act on this ticket: {exc}", _digest("invalid", exc))
        return "invalid", str(exc), []
    inventory = runtime.inventory()
    try:
        request = ticket.wanted()
        site = check_request(
            request,
            customer=ticket.customer,
            subscription=ticket.subscription,
            inventory=inventory,
            known_actions=actions.names(),
        )
    except (BadInput, NotPermitted) as exc:
        _tell(tickets, ticket_id, f"remotehands cannot act on this ticket: {exc}", _digest("invalid", exc))
        return "invalid", str(exc), []
    key = request_key(request)
    existing = store.jobs_for_request(runtime.db, system, ticket.id, key)
    if existing:
        return "duplicate", "this request already has job(s) " + ", ".join(map(str, existing)), existing
    approval = tickets.approval(ticket.id)
    if not approval.approved:
        _tell(
            tickets,
            ticket.id,
            f"remotehands will {request.action} {', '.join(request.targets)} once this "
            f"ticket is approved in {system}; it is not approved yet.",
            f"unapproved-{key}",
        )
        return "unapproved", f"{ticket.id} is not approved at {system}", []
    if not ticket.site:
        ticket = dataclasses.replace(ticket, site=site)
    try:
        job_ids = store.create_jobs_for_ticket(
            runtime.db, ticket, approval.approver, f"webhook:{system}", inventory=inventory
        )
    except (NotApproved, NotPermitted) as exc:
        _tell(tickets, ticket.id, f"remotehands did not start: {exc}", f"refused-{key}")
        return "refused", str(exc), []
    except BadInput as exc:  # e.g. no reimage method fits a host
        _tell(tickets, ticket.id, f"remotehands cannot act on this ticket: {exc}", _digest("invalid", exc))
        return "invalid", str(exc), []
    with runtime.db.session() as s:
        audit.append(
            s, f"webhook:{system}", "intake.jobs", ticket.id, {"jobs": job_ids, "approver": approval.approver}
        )
    return "jobs", f"job(s) {', '.join(map(str, job_ids))} for {request.action}", job_ids


def _digest(kind: str, exc: Exception) -> str:
    """One comment per distinct problem: the same problem re-sent is not repeated, a new one is said."""
    return f"{kind}-{hashlib.sha256(str(exc).encode()).hexdigest()[:12]}"


def _tell(tickets: Any, ticket_id: str, text: str, key: str) -> None:
    # Event keys are unique across tickets (the builtin system keeps them in one column): the ticket is part
    # of the key, hashed to fit.
    event_key = "intake-" + hashlib.sha256(f"{ticket_id}\0{key}".encode()).hexdigest()[:40]
    try:
        tickets.comment(ticket_id, text, internal=True, event_key=event_key)
    except RemoteHandsError as exc:
        log.warning("could not comment on %s: %s", ticket_id, exc)


def _record(runtime: Runtime, delivery: int, state: str, outcome: str, job_ids: list[int]) -> None:
    with runtime.db.session() as s:
        row = s.get(WebhookDelivery, delivery)
        if row is None:
            return
        row.state = state
        row.outcome = redaction.redact(outcome)
        row.job_ids = job_ids
        row.processed_at = _now()
    log.info("webhook %s: %s: %s", delivery, state, outcome)


def deliveries(runtime: Runtime, ticket_id: str | None = None) -> list[Mapping[str, Any]]:
    """Stored deliveries (newest first), for the API and tests."""
    with runtime.db.session() as s:
        query = select(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(200)
        if ticket_id:
            query = query.where(WebhookDelivery.ticket_id == ticket_id)
        return [
            {
                "id": r.id,
                "system": r.system,
                "delivery_id": r.delivery_id,
                "ticket_id": r.ticket_id,
                "state": r.state,
                "outcome": r.outcome,
                "job_ids": list(r.job_ids),
                "attempts": r.attempts,
            }
            for r in s.execute(query).scalars()
        ]
