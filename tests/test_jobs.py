"""The spine end to end against the lab: tickets, approval, jobs, journal, outbox, per-target lock."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from remotehands.errors import (
    NotApproved,
    SelfApproval,
    TargetBusy,
    TicketSystemUnavailable,
    WrongSubscription,
)
from remotehands.jobs import outbox, store
from remotehands.jobs.executor import LocalExecutor
from remotehands.jobs.tables import JobStep, OutboxEvent
from remotehands.tickets.base import Severity, TaskRequest, TicketStatus, TicketType
from remotehands.tickets.builtin import NewTicket
from tests.conftest import job_state, mark, open_ticket, run_ticket


def test_power_cycle_ticket_end_to_end(rt, lab):
    m = mark(lab, "esx-01")
    ticket_id = open_ticket(rt, "esx-01")
    [job_id] = run_ticket(rt, ticket_id)

    assert job_state(rt, job_id) == "succeeded"
    assert len(m.commands("cycle")) == 1
    with rt.db.session() as s:
        steps = store.steps_of(s, job_id)
    assert [st.name for st in steps if st.status in ("done", "skipped")] == [
        "check-approval",
        "read-power",
        "send-cycle",
        "confirm-off",
        "send-on",
        "confirm-power",
        "wait-reachable",
    ]
    ticket = rt.tickets.get(ticket_id)
    assert ticket.status is TicketStatus.RESOLVED
    trail = [c.body for c in rt.tickets.comments(ticket_id)]
    assert trail[0].startswith(f"remotehands accepted job {job_id}")
    assert any("step 3 send-cycle: cycle sent to esx-01" in c for c in trail)
    assert any("step 6 confirm-power: confirmed" in c for c in trail)
    assert not any("confirm-off" in c or "send-on" in c for c in trail)  # skipped halves stay off the ticket
    assert "succeeded" in trail[-1]
    assert outbox.pending(rt.db) == 0


def test_power_status_job_reads_the_state_and_sends_no_power_command(rt, lab):
    m = mark(lab, "esx-05")
    ticket_id = open_ticket(rt, "esx-05", action="power.status")
    [job_id] = run_ticket(rt, ticket_id)
    assert job_state(rt, job_id) == "succeeded"
    sent = {str(e["command"]) for e in m.commands()}
    assert not sent & {"power_off", "power_on", "cycle", "reset", "soft_off"}, sent
    trail = [c.body for c in rt.tickets.comments(ticket_id)]
    assert any("read-power: esx-05 power is on via ipmi" in c for c in trail), trail


def test_unapproved_ticket_is_refused_and_nothing_reaches_the_bmc(rt, lab):
    m = mark(lab, "esx-03")
    ticket_id = open_ticket(rt, "esx-03", approver=None)
    with pytest.raises(NotApproved) as err:
        run_ticket(rt, ticket_id)
    assert err.value.exit_code == 3
    assert ticket_id in str(err.value) and "approve" in str(err.value)
    assert m.commands() == []
    assert store.list_jobs(rt.db) == []


def test_self_approval_is_refused(rt):
    ticket_id = open_ticket(rt, "esx-01", requester="alice", approver=None)
    with pytest.raises(SelfApproval):
        rt.tickets.approve(ticket_id, "Alice")
    assert rt.tickets.approval(ticket_id).approved is False


def test_customer_cannot_target_another_customers_host(rt):
    inv = rt.inventory()
    assert inv.host("esx-02").subscription != "acme-0001"
    with pytest.raises(WrongSubscription) as err:
        open_ticket(rt, "esx-02", customer="acme", subscription="acme-0001")
    assert "esx-02" in str(err.value)
    assert rt.tickets.queue(include_done=True) == []


def test_second_job_on_a_busy_host_is_blocked_with_the_other_jobs_id(rt):
    first = open_ticket(rt, "esx-05")
    ticket = rt.tickets.get(first)
    [job_id] = store.create_jobs_for_ticket(rt.db, ticket, "bob", "test")
    # Running the same ticket again returns the same job instead of doubling the work.
    assert store.create_jobs_for_ticket(rt.db, ticket, "bob", "test") == [job_id]
    second = open_ticket(rt, "esx-05")
    with pytest.raises(TargetBusy) as err:
        store.create_jobs_for_ticket(rt.db, rt.tickets.get(second), "bob", "test")
    assert err.value.blocking_job_id == job_id
    assert f"job {job_id}" in str(err.value)
    store.request_cancel(rt.db, job_id, "test")
    # Once the first job has ended, the host is free again.
    assert len(store.create_jobs_for_ticket(rt.db, rt.tickets.get(second), "bob", "test")) == 1


def test_cancel_during_a_wait(rt, lab):
    ticket_id = open_ticket(rt, "esx-07")
    ticket = rt.tickets.get(ticket_id)
    [job_id] = store.create_jobs_for_ticket(rt.db, ticket, "bob", "test")
    executor = LocalExecutor(rt, poll=0.02)
    try:
        assert executor.run_until(lambda: job_state(rt, job_id) in ("waiting", "succeeded"), timeout=30)
    finally:
        executor.shutdown()
    assert job_state(rt, job_id) == "waiting"  # the confirm step polls by waiting, not by sleeping
    state = store.request_cancel(rt.db, job_id, "carol")
    assert state.value == "cancelled"
    assert job_state(rt, job_id) == "cancelled"
    outbox.deliver(rt.db, rt.ticket_system)
    assert rt.tickets.get(ticket_id).status is TicketStatus.NEEDS_ATTENTION
    assert "cancelled by carol" in rt.tickets.comments(ticket_id)[-1].body


def test_outbox_retries_while_the_ticket_system_is_down_and_loses_nothing(rt, lab, mocker):
    ticket_id = open_ticket(rt, "esx-01")
    real_comment, real_status = rt.tickets.comment, rt.tickets.set_status
    down = mocker.patch.object(
        rt.tickets, "comment", side_effect=TicketSystemUnavailable("ticket store down")
    )
    # The status change fails too: the ticket must still end resolved, never overtaken by an older event.
    mocker.patch.object(rt.tickets, "set_status", side_effect=TicketSystemUnavailable("ticket store down"))
    [job_id] = run_ticket(rt, ticket_id)
    assert job_state(rt, job_id) == "succeeded"  # the job does not wait for the ticket system
    assert down.call_count >= 1
    assert rt.tickets.comments(ticket_id) == []
    waiting = outbox.pending(rt.db, ticket_id)
    assert waiting >= 6  # accepted, 4 steps, final; plus status changes
    with rt.db.session() as s:
        errors = s.execute(select(OutboxEvent.last_error).where(OutboxEvent.attempts > 0)).scalars().all()
    assert any("ticket store down" in e for e in errors)

    mocker.patch.object(rt.tickets, "comment", side_effect=real_comment)
    mocker.patch.object(rt.tickets, "set_status", side_effect=real_status)
    later = store.now() + timedelta(hours=1)
    mocker.patch("remotehands.jobs.outbox._now", return_value=later)
    outbox.deliver(rt.db, rt.ticket_system)
    outbox.deliver(rt.db, rt.ticket_system)  # a second pass delivers nothing twice
    assert outbox.pending(rt.db, ticket_id) == 0
    bodies = [c.body for c in rt.tickets.comments(ticket_id)]
    assert len(bodies) == len(set(bodies))
    assert bodies[0].startswith(f"remotehands accepted job {job_id}")
    assert "succeeded" in bodies[-1]
    assert rt.tickets.get(ticket_id).status is TicketStatus.RESOLVED


def test_redelivery_of_one_event_writes_one_comment(rt):
    ticket_id = open_ticket(rt, "esx-01", approver=None)
    rt.tickets.comment(ticket_id, "hello", event_key="outbox-42")
    rt.tickets.comment(ticket_id, "hello", event_key="outbox-42")
    assert [c.body for c in rt.tickets.comments(ticket_id)] == ["hello"]


def test_queue_orders_by_severity_then_received_time(rt):
    a = open_ticket(rt, "esx-01", severity=Severity.DEGRADED, approver=None)
    b = open_ticket(rt, "esx-03", severity=Severity.OUTAGE_MANY, approver=None)
    c = open_ticket(rt, "esx-05", severity=Severity.DEGRADED, approver=None)
    d = open_ticket(rt, "esx-07", severity=Severity.FALSE_ALARM, approver=None)
    assert [t.id for t in rt.tickets.queue()] == [b, a, c, d]


def test_sensitive_ticket_is_encrypted_at_rest(rt, lab, tmp_path):
    ticket_id = rt.tickets.create(
        NewTicket(
            type=TicketType.REMOTE_HANDS,
            severity=Severity.OUTAGE_ONE,
            title="vault rotation TOPSECRET-TITLE",
            requester="alice",
            customer="globex",
            subscription="globex-0001",
            request=TaskRequest(
                action="power.cycle", targets=("esx-04",), params={"note": "TOPSECRET-PARAM"}
            ),
            description="TOPSECRET-DESCRIPTION",
            sensitive=True,
        ),
        rt.inventory(),
    )
    rt.tickets.approve(ticket_id, "bob")
    rt.tickets.comment(ticket_id, "customer says TOPSECRET-COMMENT")
    rt.tickets.attach(ticket_id, "notes.txt", b"TOPSECRET-ATTACHMENT")
    [job_id] = run_ticket(rt, ticket_id)
    assert job_state(rt, job_id) == "succeeded"
    assert rt.tickets.get(ticket_id, reveal=False).title == "[sensitive: use --reveal]"
    revealed = rt.tickets.get(ticket_id, reveal=True)
    assert "TOPSECRET-TITLE" in revealed.title and revealed.request.params == {"note": "TOPSECRET-PARAM"}
    assert all(c.body == "[sensitive: use --reveal]" for c in rt.tickets.comments(ticket_id))
    shown = [c.body for c in rt.tickets.comments(ticket_id, reveal=True)]
    assert any("TOPSECRET-COMMENT" in c for c in shown) and any("confirmed" in c for c in shown)
    assert rt.tickets.attachment_content(ticket_id, "notes.txt") == b"TOPSECRET-ATTACHMENT"
    rt.db.dispose()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("rh.db*"))
    assert b"TOPSECRET" not in raw
    with rt.db.session() as s:
        from remotehands.tickets.tables import CommentRow

        bodies = s.execute(select(CommentRow.body)).scalars().all()
        events = s.execute(select(OutboxEvent)).scalars().all()
    assert bodies and all(b.startswith("fernet:") for b in bodies)
    comments = [e for e in events if e.kind == "comment"]
    assert comments and all(e.sensitive and e.body.startswith("fernet:") for e in comments)


def test_journal_has_started_before_done_for_every_step(rt, lab):
    ticket_id = open_ticket(rt, "esx-01")
    [job_id] = run_ticket(rt, ticket_id)
    with rt.db.session() as s:
        rows = s.execute(select(JobStep).where(JobStep.job_id == job_id)).scalars().all()
    assert rows and all(r.status in ("done", "skipped") and r.finished_at >= r.started_at for r in rows)
    send = next(r for r in rows if r.name == "send-cycle")
    assert "event_marker" in send.baseline  # the evidence read before the cycle was sent
