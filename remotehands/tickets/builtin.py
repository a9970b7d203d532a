"""The builtin ticket system: tickets in remotehands' own database.

Creating a ticket validates its request before anything else exists: the action must be known, every
target must be in the inventory, and a customer's ticket may only target hosts of its own subscription.
Approval must come from someone other than the requester. Sensitive tickets keep title, description,
comments and attachments encrypted at rest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from remotehands import audit, redaction
from remotehands.alerts.settings import EscalationSettings, SlaSettings
from remotehands.alerts.sla import due_at
from remotehands.db import Database
from remotehands.errors import (
    InvalidRequest,
    NotPermitted,
    SelfApproval,
    TicketNotFound,
)
from remotehands.inventory.models import Inventory
from remotehands.tickets.base import (
    Approval,
    Attachment,
    Comment,
    Severity,
    TaskRequest,
    Ticket,
    TicketStatus,
    TicketType,
    format_builtin_id,
    parse_builtin_id,
)
from remotehands.tickets.crypto import TicketCipher
from remotehands.tickets.tables import AttachmentRow, CommentRow, TicketRow
from remotehands.tickets.validate import check_request


@dataclass(frozen=True)
class NewTicket:
    type: TicketType
    severity: Severity
    title: str
    requester: str
    customer: str
    subscription: str
    request: TaskRequest | None
    description: str = ""
    sensitive: bool = False
    site: str = ""  # taken from the targets when there is a request
    source_key: str | None = None  # where an automatically opened ticket came from (see TicketRow)
    source_digest: str | None = None


def now() -> datetime:
    return datetime.now(UTC)


def _zone(inventory: Inventory, site: str) -> str:
    first = site.split(",", maxsplit=1)[0]
    return inventory.sites[first].timezone if first in inventory.sites else "UTC"


class BuiltinTickets:
    """``TicketSystem`` over remotehands' own database."""

    name = "builtin"
    coalesce_comments = False

    def __init__(
        self,
        db: Database,
        cipher: TicketCipher,
        known_actions: frozenset[str],
        *,
        sla: SlaSettings | None = None,
        escalation: EscalationSettings | None = None,
    ) -> None:
        self._db = db
        self._cipher = cipher
        self._known_actions = known_actions
        self._sla = sla or SlaSettings()
        self._escalation = escalation or EscalationSettings()

    # -- creating and approving -------------------------------------------------------------------

    def create(self, new: NewTicket, inventory: Inventory) -> str:
        """Validate and store a ticket; returns its id (``RH-n``).

        Raises ``InvalidRequest`` for an unknown action or empty title, ``UnknownTarget`` for a target not in
        the inventory, ``WrongSubscription`` when a customer targets a host outside its subscription.
        """
        if not new.title.strip():
            raise InvalidRequest("title is empty", fix="give the ticket a one-line title (--title)")
        if not new.requester.strip():
            raise InvalidRequest("requester is empty", fix="say who asks (--requester)")
        site = new.site
        if new.request is not None:
            site = check_request(
                new.request,
                customer=new.customer,
                subscription=new.subscription,
                inventory=inventory,
                known_actions=self._known_actions,
            )
        stamp = now()
        title, description = new.title, new.description
        if new.sensitive:
            title, description = self._cipher.encrypt_text(title), self._cipher.encrypt_text(description)
        row = TicketRow(
            type=new.type.value,
            severity=int(new.severity),
            status=TicketStatus.NEW.value,
            title=title,
            description=description,
            sensitive=new.sensitive,
            customer=new.customer,
            subscription=new.subscription,
            site=site,
            requester=new.requester,
            action=new.request.action if new.request else "",
            targets=list(new.request.targets) if new.request else [],
            params=self._seal_params(dict(new.request.params) if new.request else {}, new.sensitive),
            received_at=stamp,
            updated_at=stamp,
            sla_due_at=due_at(stamp, new.severity, _zone(inventory, site), self._sla),
            source_key=new.source_key,
            source_digest=new.source_digest,
        )
        with self._db.session() as s:
            s.add(row)
            s.flush()
            ticket_id = format_builtin_id(row.id)
            audit.append(
                s,
                new.requester,
                "ticket.create",
                ticket_id,
                {
                    "action": new.request.action if new.request else None,
                    "targets": list(new.request.targets) if new.request else [],
                    "severity": int(new.severity),
                },
            )
        return ticket_id

    def approve(self, ticket_id: str, approver: str) -> None:
        """Approve a new ticket. Raises ``SelfApproval`` when the approver asked for it,
        ``NotPermitted`` when the ticket is not in state new."""
        with self._db.session() as s:
            row = self._row(s, ticket_id)
            if approver.strip().lower() == row.requester.strip().lower():
                raise SelfApproval(
                    f"{approver} requested {ticket_id} and cannot approve it",
                    fix="ask another approver",
                )
            if row.status != TicketStatus.NEW.value:
                raise NotPermitted(
                    f"{ticket_id} is {row.status}, only a new ticket can be approved",
                    fix=f"see it with: remotehands tickets show {ticket_id}",
                )
            row.status = TicketStatus.APPROVED.value
            row.approver = approver
            row.approved_at = row.updated_at = now()
            row.responded_at = row.responded_at or row.approved_at
            audit.append(s, approver, "ticket.approve", ticket_id)

    def revoke(self, ticket_id: str, who: str, *, reason: str = "revoked") -> None:
        """Withdraw a ticket's approval: it goes back to new and its jobs stop at their next approval check.
        Raises ``NotPermitted`` when the ticket is resolved or closed."""
        with self._db.session() as s:
            row = self._row(s, ticket_id)
            if row.status in (TicketStatus.RESOLVED.value, TicketStatus.CLOSED.value):
                raise NotPermitted(f"{ticket_id} is {row.status}; there is nothing to revoke")
            row.status = TicketStatus.NEW.value
            row.approver = None
            row.approved_at = None
            row.updated_at = now()
            audit.append(s, who, "ticket.revoke", ticket_id, {"reason": reason})

    def escalate(self, ticket_id: str, reason: str, *, event_key: str | None = None) -> int:
        """Raise the ticket's escalation level by one, assign it to that level's group from the settings,
        move it to needs-attention and say so on the ticket. Returns the new level. With ``event_key``, a
        second call with the same key does nothing (returns the current level)."""
        with self._db.session() as s:
            row = self._row(s, ticket_id)
            if (
                event_key
                and s.execute(select(CommentRow.id).where(CommentRow.event_key == event_key)).first()
            ):
                return row.escalation_level
            row.escalation_level += 1
            row.assignee_group = self._escalation.group(row.escalation_level) or row.assignee_group
            if row.status not in (TicketStatus.RESOLVED.value, TicketStatus.CLOSED.value):
                row.status = TicketStatus.NEEDS_ATTENTION.value
            row.updated_at = now()
            level, group = row.escalation_level, row.assignee_group
            audit.append(s, "remotehands", "ticket.escalate", ticket_id, {"level": level, "group": group})
        self.comment(
            ticket_id,
            f"ESCALATED to level {level}, assigned to {group or 'no group'}: {reason}",
            event_key=event_key,
        )
        return level

    def find_by_source(self, source_key: str) -> str | None:
        """The id of the ticket opened from ``source_key``, if any."""
        with self._db.session() as s:
            number = s.execute(select(TicketRow.id).where(TicketRow.source_key == source_key)).scalar()
            return format_builtin_id(number) if number is not None else None

    def source_digest(self, ticket_id: str) -> str | None:
        with self._db.session() as s:
            return self._row(s, ticket_id).source_digest

    def set_source(self, ticket_id: str, key: str | None, digest: str | None) -> None:
        """Record (or detach, with ``key=None``) the source of an automatically opened ticket."""
        with self._db.session() as s:
            row = self._row(s, ticket_id)
            row.source_key, row.source_digest = key, digest

    def set_request(self, ticket_id: str, request: TaskRequest, inventory: Inventory) -> None:
        """Give a ticket that has no request one (an alert ticket a remediation policy acts on).
        Raises ``NotPermitted`` when it already has one."""
        with self._db.session() as s:
            row = self._row(s, ticket_id)
            if row.action:
                raise NotPermitted(f"{ticket_id} already asks for {row.action}")
            row.site = check_request(
                request,
                customer=row.customer,
                subscription=row.subscription,
                inventory=inventory,
                known_actions=self._known_actions,
            )
            row.action, row.targets = request.action, list(request.targets)
            row.params = self._seal_params(dict(request.params), row.sensitive)
            row.updated_at = now()

    def overdue(self, at: datetime | None = None) -> list[str]:
        """Open tickets past their SLA due time with no response and not yet escalated."""
        closed = {TicketStatus.RESOLVED.value, TicketStatus.CLOSED.value}
        with self._db.session() as s:
            rows = s.execute(
                select(TicketRow.id).where(
                    TicketRow.status.not_in(closed),
                    TicketRow.sla_due_at.is_not(None),
                    TicketRow.sla_due_at < (at or now()),
                    TicketRow.responded_at.is_(None),
                    TicketRow.escalation_level == 0,
                )
            ).scalars()
            return [format_builtin_id(i) for i in rows]

    # -- the TicketSystem interface -----------------------------------------------------------------

    def get(self, ticket_id: str, *, reveal: bool = True) -> Ticket:
        with self._db.session() as s:
            row = self._row(s, ticket_id)
            title, description = row.title, row.description
            if row.sensitive:
                if reveal:
                    title, description = (
                        self._cipher.decrypt_text(title),
                        self._cipher.decrypt_text(description),
                    )
                else:
                    title = description = "[sensitive: use --reveal]"
            return Ticket(
                id=format_builtin_id(row.id),
                system=self.name,
                type=TicketType(row.type),
                severity=Severity(row.severity),
                status=TicketStatus(row.status),
                title=title,
                description=description,
                sensitive=row.sensitive,
                customer=row.customer,
                subscription=row.subscription,
                site=row.site,
                requester=row.requester,
                approver=row.approver,
                request=TaskRequest(
                    action=row.action, targets=tuple(row.targets), params=self._open_params(row, reveal)
                )
                if row.action
                else None,
                received_at=row.received_at,
                sla_due_at=row.sla_due_at,
                responded_at=row.responded_at,
                escalation_level=row.escalation_level,
                assignee_group=row.assignee_group,
            )

    def approval(self, ticket_id: str) -> Approval:
        with self._db.session() as s:
            row = self._row(s, ticket_id)
            approved = row.approver is not None and row.status != TicketStatus.NEW.value
            return Approval(approved=approved, approver=row.approver, at=row.approved_at)

    def comment(
        self,
        ticket_id: str,
        text: str,
        *,
        internal: bool = True,
        event_key: str | None = None,
        author: str = "remotehands",
    ) -> None:
        text = redaction.redact(text)
        try:
            with self._db.session() as s:
                row = self._row(s, ticket_id)
                if (
                    event_key
                    and s.execute(select(CommentRow.id).where(CommentRow.event_key == event_key)).first()
                ):
                    return
                body = self._cipher.encrypt_text(text) if row.sensitive else text
                if row.responded_at is None and author.lower() not in {
                    row.requester.lower(),
                    "remotehands",
                    "alertmanager",
                }:
                    row.responded_at = now()  # a person answered: the SLA clock's response
                s.add(
                    CommentRow(
                        ticket_id=row.id,
                        author=author,
                        body=body,
                        internal=internal,
                        event_key=event_key,
                        created_at=now(),
                    )
                )
        except IntegrityError:
            # The same event delivered concurrently by another worker: already there.
            return

    def set_status(self, ticket_id: str, status: TicketStatus) -> None:
        with self._db.session() as s:
            row = self._row(s, ticket_id)
            if row.status != status.value:
                row.status = status.value
                row.updated_at = now()

    def attach(self, ticket_id: str, name: str, data: bytes, *, event_key: str | None = None) -> None:
        data = redaction.redact_bytes(data)
        try:
            with self._db.session() as s:
                row = self._row(s, ticket_id)
                if (
                    event_key
                    and s.execute(
                        select(AttachmentRow.id).where(AttachmentRow.event_key == event_key)
                    ).first()
                ):
                    return
                content = self._cipher.encrypt_bytes(data) if row.sensitive else data
                s.add(
                    AttachmentRow(
                        ticket_id=row.id, name=name, content=content, event_key=event_key, created_at=now()
                    )
                )
        except IntegrityError:
            return

    # -- reading for people ---------------------------------------------------------------------------

    def comments(self, ticket_id: str, *, reveal: bool = False) -> list[Comment]:
        with self._db.session() as s:
            row = self._row(s, ticket_id)
            rows = s.execute(select(CommentRow).where(CommentRow.ticket_id == row.id).order_by(CommentRow.id))
            out = []
            for c in rows.scalars():
                body = c.body
                if row.sensitive:
                    body = self._cipher.decrypt_text(body) if reveal else "[sensitive: use --reveal]"
                out.append(Comment(author=c.author, body=body, internal=c.internal, at=c.created_at))
            return out

    def attachments(self, ticket_id: str) -> list[Attachment]:
        with self._db.session() as s:
            row = self._row(s, ticket_id)
            rows = s.execute(select(AttachmentRow).where(AttachmentRow.ticket_id == row.id))
            return [Attachment(name=a.name, size=len(a.content), at=a.created_at) for a in rows.scalars()]

    def attachment_content(self, ticket_id: str, name: str) -> bytes:
        with self._db.session() as s:
            row = self._row(s, ticket_id)
            att = (
                s.execute(
                    select(AttachmentRow).where(AttachmentRow.ticket_id == row.id, AttachmentRow.name == name)
                )
                .scalars()
                .first()
            )
            if att is None:
                raise TicketNotFound(f"{ticket_id} has no attachment {name!r}")
            return self._cipher.decrypt_bytes(att.content) if row.sensitive else att.content

    def queue(self, *, include_done: bool = False) -> list[Ticket]:
        """Open tickets in working order: severity first (Sev1 first), then the order received."""
        closed = {TicketStatus.RESOLVED.value, TicketStatus.CLOSED.value}
        with self._db.session() as s:
            query = select(TicketRow.id).order_by(TicketRow.severity, TicketRow.received_at, TicketRow.id)
            if not include_done:
                query = query.where(TicketRow.status.not_in(closed))
            ids = [format_builtin_id(i) for i in s.execute(query).scalars()]
        return [self.get(i, reveal=False) for i in ids]

    def _seal_params(self, params: dict[str, Any], sensitive: bool) -> dict[str, Any]:
        if not sensitive or not params:
            return params
        return {"sealed": self._cipher.encrypt_text(json.dumps(params))}

    def _open_params(self, row: TicketRow, reveal: bool) -> dict[str, Any]:
        sealed = row.params.get("sealed") if row.sensitive else None
        if not isinstance(sealed, str):
            return dict(row.params)
        if not reveal:
            return {"sealed": "[sensitive: use --reveal]"}
        loaded = json.loads(self._cipher.decrypt_text(sealed))
        return dict(loaded) if isinstance(loaded, dict) else {}

    def _row(self, s: Session, ticket_id: str) -> TicketRow:
        row = s.get(TicketRow, parse_builtin_id(ticket_id))
        if row is None:
            raise TicketNotFound(f"no ticket {ticket_id}", fix="list tickets with 'remotehands tickets list'")
        return row
