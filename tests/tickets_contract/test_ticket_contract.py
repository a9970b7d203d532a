"""The contract every ticket adapter keeps, run against builtin and each external system's simulator."""

from __future__ import annotations

import pytest

from remotehands.errors import InvalidRequest, TicketNotFound, TicketSystemRefused, TicketSystemUnavailable
from remotehands.tickets.base import TaskRequest, TicketStatus
from tests.tickets_contract.target import TicketTarget

REQUEST = TaskRequest(action="power.cycle", targets=("mac-01", "esx-01"), params={"reason": "hung"})


@pytest.mark.parametrize("via_fields", [True, False], ids=["fields", "block"])
def test_get_reads_the_request_and_the_ticket(target: TicketTarget, via_fields: bool) -> None:
    ticket_id = target.seed(request=REQUEST, title="Hung hosts", requester="alice", via_fields=via_fields)
    ticket = target.system.get(ticket_id)
    assert ticket.id == ticket_id
    assert ticket.system == target.system.name
    assert ticket.request.action == "power.cycle"
    assert set(ticket.request.targets) == {"mac-01", "esx-01"}
    assert ticket.request.params == {"reason": "hung"}
    assert ticket.title == "Hung hosts"
    assert ticket.requester == "alice"
    assert ticket.subscription == "acme"
    assert ticket.status not in (TicketStatus.RESOLVED, TicketStatus.CLOSED)


def test_approval_is_read_at_the_source(target: TicketTarget) -> None:
    ticket_id = target.seed(request=REQUEST)
    assert not target.system.approval(ticket_id).approved
    target.set_approval(ticket_id, "approved", "bob")
    approval = target.system.approval(ticket_id)
    assert approval.approved
    assert approval.approver == "bob"
    target.set_approval(ticket_id, "declined", "bob")
    assert not target.system.approval(ticket_id).approved


def test_comments_are_internal_and_idempotent_across_pages(target: TicketTarget) -> None:
    ticket_id = target.seed(request=REQUEST)
    target.add_comments(ticket_id, 120)  # more than one page of comments before ours
    target.system.comment(ticket_id, "power.cycle on mac-01: verified on", event_key="outbox-7")
    target.system.comment(ticket_id, "power.cycle on mac-01: verified on", event_key="outbox-7")
    ours = [(body, internal) for body, internal in target.comments(ticket_id) if "verified on" in body]
    assert len(ours) == 1
    assert ours[0][1] is True


def test_status_moves_and_reads_back(target: TicketTarget) -> None:
    ticket_id = target.seed(request=REQUEST)
    before = target.native_status(ticket_id)
    target.system.set_status(ticket_id, TicketStatus.IN_PROGRESS)
    assert target.system.get(ticket_id).status == TicketStatus.IN_PROGRESS
    target.system.set_status(ticket_id, TicketStatus.RESOLVED)
    assert target.native_status(ticket_id) != before
    assert target.system.get(ticket_id).status == TicketStatus.RESOLVED


def test_attachments_arrive_intact_once(target: TicketTarget) -> None:
    ticket_id = target.seed(request=REQUEST)
    data = bytes(range(256)) * 4
    target.system.attach(ticket_id, "sel-esx-01.txt", data, event_key="outbox-9")
    target.system.attach(ticket_id, "sel-esx-01.txt", data, event_key="outbox-9")
    assert target.attachments(ticket_id) == [("sel-esx-01.txt", data)]


def test_unknown_ticket_is_not_found(target: TicketTarget) -> None:
    missing = target.seed(request=REQUEST)[:-1] + "999999"
    with pytest.raises(TicketNotFound):
        target.system.get(missing)
    with pytest.raises(TicketNotFound):
        target.system.approval(missing)


def test_a_ticket_without_a_request_says_what_is_missing(http_target: TicketTarget) -> None:
    ticket_id = http_target.seed(request=None, description="please reboot it")
    with pytest.raises(InvalidRequest, match="remotehands"):
        http_target.system.get(ticket_id)
    # Approval and comments still work, so the intake can tell the ticket what is wrong.
    http_target.system.comment(ticket_id, "no request found", event_key="outbox-1")
    assert any("no request found" in body for body, _ in http_target.comments(ticket_id))


def test_rate_limits_are_waited_out(http_target: TicketTarget) -> None:
    assert http_target.faults is not None
    ticket_id = http_target.seed(request=REQUEST)
    http_target.sleeps.clear()
    http_target.faults.throttle(2, retry_after="3")
    assert http_target.system.get(ticket_id).id == ticket_id
    assert http_target.faults.throttled == 2
    assert http_target.sleeps[:2] == [3.0, 3.0]


def test_a_system_that_keeps_failing_is_unavailable(http_target: TicketTarget) -> None:
    assert http_target.faults is not None
    ticket_id = http_target.seed(request=REQUEST)
    http_target.faults.fail(50)
    try:
        with pytest.raises(TicketSystemUnavailable):
            http_target.system.comment(ticket_id, "x", event_key="outbox-2")
    finally:
        http_target.faults.fail(0)


def test_a_dead_system_is_unavailable(http_target: TicketTarget) -> None:
    assert http_target.make is not None
    dead = http_target.make(url="http://127.0.0.1:9")
    with pytest.raises(TicketSystemUnavailable):
        dead.get("1")


def test_wrong_credentials_are_refused_not_retried(http_target: TicketTarget) -> None:
    assert http_target.make is not None and http_target.faults is not None
    ticket_id = http_target.seed(request=REQUEST)
    wrong = http_target.make(token="wrong-token")
    before = http_target.faults.requests
    with pytest.raises(TicketSystemRefused) as err:
        wrong.get(ticket_id)
    assert http_target.faults.requests - before == 1
    assert "wrong-token" not in str(err.value)
