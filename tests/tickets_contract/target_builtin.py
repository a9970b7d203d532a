"""The builtin ticket system as a contract target (no HTTP: its store is remotehands' own database)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from remotehands.runtime import Runtime
from remotehands.tickets.base import Severity, TaskRequest, TicketType
from remotehands.tickets.builtin import NewTicket
from remotehands.tickets.tables import AttachmentRow, CommentRow, TicketRow
from tests.tickets_contract.target import TicketTarget, sample_request

FIXTURES = ["builtin_target"]


@pytest.fixture
def builtin_target(rt: Runtime) -> Iterator[TicketTarget]:
    tickets = rt.tickets

    def seed(
        request: TaskRequest | None = None,
        title: str = "Hung Mac",
        requester: str = "alice",
        subscription: str = "acme",
        via_fields: bool = True,
        description: str = "",
    ) -> str:
        return tickets.create(
            NewTicket(
                type=TicketType.REMOTE_HANDS,
                severity=Severity.OUTAGE_ONE,
                title=title,
                requester=requester,
                customer="provider",
                subscription=subscription,
                request=request or sample_request(),
                description=description,
            ),
            rt.inventory(),
        )

    def set_approval(ticket_id: str, state: str, approver: str) -> None:
        if state == "approved":
            tickets.approve(ticket_id, approver)
        else:
            tickets.revoke(ticket_id, approver, reason=state)

    def rows(model: type, ticket_id: str) -> list:
        with rt.db.session() as s:
            number = int(ticket_id.split("-")[1])
            return list(
                s.execute(select(model).where(model.ticket_id == number).order_by(model.id)).scalars()
            )

    def native_status(ticket_id: str) -> str:
        with rt.db.session() as s:
            row = s.get(TicketRow, int(ticket_id.split("-")[1]))
            assert row is not None
            return row.status

    def add_comments(ticket_id: str, n: int) -> None:
        for i in range(n):
            tickets.comment(ticket_id, f"filler {i}", internal=False, author="carol")

    yield TicketTarget(
        name="builtin",
        system=tickets,
        seed=seed,
        set_approval=set_approval,
        comments=lambda t: [(c.body, c.internal) for c in rows(CommentRow, t)],
        attachments=lambda t: [(a.name, a.content) for a in rows(AttachmentRow, t)],
        native_status=native_status,
        add_comments=add_comments,
        extra={"requestless": False},
    )
