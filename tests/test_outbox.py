"""Outbox delivery to a system that coalesces comments: one deliverer per ticket at a time (the claim moves
with the oldest undelivered event), and a run interrupted by a crash is rebuilt exactly on redelivery."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from remotehands.jobs import outbox
from remotehands.jobs.tables import OutboxEvent
from remotehands.runtime import Runtime
from tests.conftest import open_ticket


class Crash(Exception):
    """The deliverer's process dying right after a send (before it could mark the events delivered)."""


class Coalescing:
    """The builtin system as an external one would be delivered to (comments coalesced), with hooks for
    the interleavings no simulator produces: a second deliverer running mid-send, a crash after a send."""

    coalesce_comments = True

    def __init__(
        self, rt: Runtime, *, during_send=None, on_send: int = 1, crash_after: int | None = None
    ) -> None:
        self.rt = rt
        self.name = "builtin"
        self.during_send = during_send  # called once, during the ``on_send``-th comment
        self.on_send = on_send
        self.crash_after = crash_after
        self.sent: list[str] = []

    def comment(self, ticket_id, text, *, internal=True, event_key=None):
        self.rt.tickets.comment(ticket_id, text, internal=internal, event_key=event_key)
        self.sent.append(text)
        if self.during_send is not None and len(self.sent) == self.on_send:
            hook, self.during_send = self.during_send, None
            hook()
        if self.crash_after is not None and len(self.sent) >= self.crash_after:
            raise Crash

    def __getattr__(self, name):
        return getattr(self.rt.tickets, name)


def _events(rt: Runtime, ticket_id: str, *bodies: str, age: float = 60.0) -> None:
    with rt.db.session() as s:
        for body in bodies:
            outbox.enqueue(s, "builtin", ticket_id, "comment", body)
    with rt.db.session() as s:  # the clock: these were written a minute ago, their window has closed
        s.execute(
            update(OutboxEvent)
            .where(OutboxEvent.ticket_id == ticket_id, OutboxEvent.delivered_at.is_(None))
            .values(created_at=outbox._now() - timedelta(seconds=age))
        )


def _trail(rt: Runtime, ticket_id: str) -> list[str]:
    return [c.body for c in rt.tickets.comments(ticket_id) if "step" in c.body]


def test_a_second_deliverer_cannot_take_a_ticket_mid_delivery(rt: Runtime) -> None:
    ticket_id = open_ticket(rt, "esx-01")
    _events(rt, ticket_id, "step a")
    with rt.db.session() as s:
        outbox.enqueue(s, "builtin", ticket_id, "status", "in-progress")
    _events(rt, ticket_id, "step b")
    stolen: list[list[str]] = []

    def second_deliverer() -> None:
        other = Coalescing(rt)
        outbox.deliver(rt.db, lambda _: other, owner="other")
        stolen.append(other.sent)

    # Three sends: "step a", the status, "step b". While "step b" is being sent (the first two are
    # delivered by then), another deliverer runs: it must find the ticket still taken.
    first = Coalescing(rt, during_send=second_deliverer, on_send=2)
    outbox.deliver(rt.db, lambda _: first, owner="first")
    assert stolen == [[]]
    assert first.sent == ["step a", "step b"]
    with rt.db.session() as s:
        claims = (
            s.execute(select(OutboxEvent.claimed_by).where(OutboxEvent.ticket_id == ticket_id))
            .scalars()
            .all()
        )
    assert set(claims) == {None}  # released at the end


def test_a_run_cut_by_a_crash_is_rebuilt_exactly_and_a_late_event_keeps_its_text(rt: Runtime) -> None:
    ticket_id = open_ticket(rt, "esx-02")
    _events(rt, ticket_id, "step 1 read-power", "step 2 send-cycle")
    crashing = Coalescing(rt, crash_after=1)
    with pytest.raises(Crash):
        outbox.deliver(rt.db, lambda _: crashing, owner="dying")
    assert crashing.sent == ["step 1 read-power\nstep 2 send-cycle"]
    # An event that committed late, with a time inside the run's window, arrives after the crash.
    _events(rt, ticket_id, "step 3 confirm-power", age=60.0)
    with rt.db.session() as s:  # the dead deliverer's claim expires
        s.execute(update(OutboxEvent).values(claim_until=outbox._now() - timedelta(seconds=1)))
    again = Coalescing(rt)
    outbox.deliver(rt.db, lambda _: again, owner="restarted")
    assert again.sent == ["step 1 read-power\nstep 2 send-cycle", "step 3 confirm-power"]
    assert _trail(rt, ticket_id) == ["step 1 read-power\nstep 2 send-cycle", "step 3 confirm-power"]
    assert outbox.pending(rt.db, ticket_id) == 0
