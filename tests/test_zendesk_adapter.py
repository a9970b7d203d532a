"""Zendesk specifics the ticket contract does not cover: priority and severity, the status mapping (and
Zendesk's rules for new and closed tickets), approval in custom fields, the two-step upload, cursor
paging, Retry-After dates, and what errors say (Zendesk's text, never the token)."""

from __future__ import annotations

import email.utils
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from remotehands import redaction
from remotehands.config import TicketSystemConfig
from remotehands.errors import ConfigError, TicketNotFound, TicketSystemRefused
from remotehands.lab.ticket_sims.harness import ServerThread
from remotehands.lab.ticket_sims.zendesk import ZendeskSim
from remotehands.tickets import registry
from remotehands.tickets.base import Severity, TaskRequest, TicketStatus, event_marker
from remotehands.tickets.zendesk import ZendeskTickets
from tests.tickets_contract.target_zendesk import (
    APPROVAL,
    APPROVER,
    FIELDS,
    OPTIONS,
    TOKEN,
    USER,
    make_zendesk,
    seed_zendesk,
    set_approval,
)

REQUEST = TaskRequest(action="power.cycle", targets=("mac-01",), params={})
SENSITIVE_FIELD = 360000000301


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[ZendeskSim, ServerThread]]:
    sim = ZendeskSim(user=USER, token=TOKEN)
    thread = ServerThread(sim.app).start()
    yield sim, thread
    thread.stop()


@pytest.fixture
def sim(server: tuple[ZendeskSim, ServerThread]) -> Iterator[ZendeskSim]:
    server[0].faults.reset()
    yield server[0]
    server[0].faults.reset()
    server[0].sideload_users = True


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def zd(server: tuple[ZendeskSim, ServerThread], sleeps: list[float]) -> Iterator[ZendeskTickets]:
    adapter = make_zendesk(server[1].url, sleeps)
    yield adapter
    adapter.close()


def other(server: tuple[ZendeskSim, ServerThread], **config: Any) -> ZendeskTickets:
    return make_zendesk(server[1].url, [], **config)


# -- reading -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("priority", "severity"), [("urgent", 1), ("high", 2), ("normal", 3), ("low", 4), (None, 3)]
)
def test_priority_gives_the_severity(
    sim: ZendeskSim, zd: ZendeskTickets, priority: str | None, severity: int
) -> None:
    ticket_id = seed_zendesk(sim, REQUEST, priority=priority)
    assert zd.get(ticket_id).severity == Severity(severity)


def test_a_mapped_severity_field_wins_over_the_priority(
    sim: ZendeskSim, server: tuple[ZendeskSim, ServerThread]
) -> None:
    adapter = other(server, fields=FIELDS.model_copy(update={"severity": "360000000302"}))
    ticket_id = seed_zendesk(sim, REQUEST, priority="low")
    sim.set_field(ticket_id, 360000000302, "sev_1")  # a drop-down's tag
    assert adapter.get(ticket_id).severity == Severity.OUTAGE_MANY
    adapter.close()


@pytest.mark.parametrize(
    ("native", "approved", "ours"),
    [
        ("new", False, TicketStatus.NEW),
        ("new", True, TicketStatus.APPROVED),
        ("open", False, TicketStatus.IN_PROGRESS),
        ("pending", True, TicketStatus.IN_PROGRESS),
        ("hold", True, TicketStatus.NEEDS_ATTENTION),
        ("solved", True, TicketStatus.RESOLVED),
        ("closed", True, TicketStatus.CLOSED),
    ],
)
def test_zendesk_statuses_read_as_ours(
    sim: ZendeskSim, zd: ZendeskTickets, native: str, approved: bool, ours: TicketStatus
) -> None:
    ticket_id = seed_zendesk(sim, REQUEST)
    if approved:
        set_approval(sim, ticket_id, "approved", "bob")
    sim.set_status(ticket_id, native)
    assert zd.get(ticket_id).status == ours


def test_get_reads_requester_tags_and_fields(
    sim: ZendeskSim, server: tuple[ZendeskSim, ServerThread]
) -> None:
    adapter = other(server, fields=FIELDS.model_copy(update={"sensitive": str(SENSITIVE_FIELD)}))
    tagged = seed_zendesk(sim, REQUEST, requester="Alice Smith", tags=("sensitive",))
    ticket = adapter.get(tagged)
    assert (ticket.requester, ticket.sensitive, ticket.customer) == ("Alice Smith", True, "provider")
    assert ticket.received_at.tzinfo is not None and ticket.received_at.year == 2025
    checkbox = seed_zendesk(sim, REQUEST)
    assert adapter.get(checkbox).sensitive is False
    sim.set_field(checkbox, SENSITIVE_FIELD, True)
    assert adapter.get(checkbox).sensitive is True
    adapter.close()


def test_the_requester_is_looked_up_when_not_sideloaded(sim: ZendeskSim, zd: ZendeskTickets) -> None:
    ticket_id = seed_zendesk(sim, REQUEST, requester="Dora")
    sim.sideload_users = False
    before = sim.faults.requests
    assert zd.get(ticket_id).requester == "Dora"
    assert sim.faults.requests - before == 2  # the ticket, then the user


def test_approval_needs_the_field_to_say_approved_and_a_name(sim: ZendeskSim, zd: ZendeskTickets) -> None:
    ticket_id = seed_zendesk(sim, REQUEST)
    sim.set_field(ticket_id, APPROVAL, "approved")
    assert zd.approval(ticket_id).approved is False  # nobody named: the self-approval check needs one
    sim.set_field(ticket_id, APPROVER, "Bob Jones")
    approval = zd.approval(ticket_id)
    assert (approval.approved, approval.approver, approval.at) == (True, "Bob Jones", None)
    sim.set_field(ticket_id, APPROVAL, "declined")
    assert zd.approval(ticket_id).approved is False
    assert zd.get(ticket_id).approver is None


def test_approval_fields_must_be_configured(server: tuple[ZendeskSim, ServerThread]) -> None:
    with pytest.raises(ConfigError, match=r"options\.approver_field"):
        other(server, options={"approval_field": str(APPROVAL)})


# -- writing -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ours", "native"),
    [
        (TicketStatus.NEW, "open"),  # Zendesk takes new only for a ticket nobody has opened
        (TicketStatus.APPROVED, "open"),
        (TicketStatus.NEEDS_ATTENTION, "hold"),
        (TicketStatus.RESOLVED, "solved"),
        (TicketStatus.CLOSED, "closed"),
    ],
)
def test_set_status_writes_zendesk_statuses(
    sim: ZendeskSim, zd: ZendeskTickets, ours: TicketStatus, native: str
) -> None:
    ticket_id = seed_zendesk(sim, REQUEST)
    zd.set_status(ticket_id, ours)
    assert sim.status(ticket_id) == native


def test_a_closed_ticket_is_refused_without_an_update(sim: ZendeskSim, zd: ZendeskTickets) -> None:
    ticket_id = seed_zendesk(sim, REQUEST)
    sim.set_status(ticket_id, "closed")
    before = sim.faults.requests
    with pytest.raises(TicketSystemRefused, match="closed"):
        zd.set_status(ticket_id, TicketStatus.IN_PROGRESS)
    assert sim.faults.requests - before == 1
    zd.set_status(ticket_id, TicketStatus.CLOSED)  # already there: nothing to do, nothing refused


def test_zendesks_validation_text_reaches_the_error(
    sim: ZendeskSim, server: tuple[ZendeskSim, ServerThread]
) -> None:
    adapter = other(server, statuses={"new": "new"})
    ticket_id = seed_zendesk(sim, REQUEST)
    sim.set_status(ticket_id, "open")
    with pytest.raises(TicketSystemRefused) as err:
        adapter.set_status(ticket_id, TicketStatus.NEW)
    assert "422" in str(err.value)
    assert "RecordInvalid" in str(err.value) and "Status: new is not valid" in str(err.value)
    adapter.close()


def test_status_overrides_are_checked(server: tuple[ZendeskSim, ServerThread]) -> None:
    with pytest.raises(ConfigError, match="'escalated' is not a Zendesk status"):
        other(server, statuses={"needs-attention": "escalated"})


def test_attach_uploads_then_comments_privately_once(sim: ZendeskSim, zd: ZendeskTickets) -> None:
    ticket_id = seed_zendesk(sim, REQUEST)
    uploads = sim.uploads_received
    zd.attach(ticket_id, "sel-mac-01.txt", b"SEL entries\n", event_key="outbox-3")
    assert sim.uploads_received == uploads + 1
    body, internal = sim.comments(ticket_id)[-1]
    assert internal is True
    assert "sel-mac-01.txt" in body and event_marker("outbox-3") in body
    assert sim.attachments(ticket_id) == [("sel-mac-01.txt", b"SEL entries\n")]
    zd.attach(ticket_id, "sel-mac-01.txt", b"SEL entries\n")  # same name and size, no key
    zd.attach(ticket_id, "other.txt", b"changed", event_key="outbox-3")  # same event
    assert sim.uploads_received == uploads + 1
    zd.attach(ticket_id, "sel-mac-01.txt", b"SEL entries, more\n")
    assert sim.uploads_received == uploads + 2
    assert len(sim.attachments(ticket_id)) == 2


def test_comments_page_by_cursor(sim: ZendeskSim, zd: ZendeskTickets) -> None:
    ticket_id = seed_zendesk(sim, REQUEST)
    for i in range(120):
        sim.add_comment(ticket_id, f"filler {i}")
    before = sim.faults.requests
    zd.comment(ticket_id, "cycled mac-01", event_key="outbox-8", internal=False)
    assert sim.faults.requests - before == 3  # 100 + 21 comments, then the update
    zd.comment(ticket_id, "cycled mac-01", event_key="outbox-8")
    assert [b for b, _ in sim.comments(ticket_id)].count(f"cycled mac-01\n\n{event_marker('outbox-8')}") == 1
    assert sim.comments(ticket_id)[-1][1] is True


def test_comments_mask_registered_secrets(sim: ZendeskSim, zd: ZendeskTickets) -> None:
    ticket_id = seed_zendesk(sim, REQUEST)
    redaction.register("hunter2-bmc-password")
    zd.comment(ticket_id, "ipmitool -P hunter2-bmc-password failed")
    assert sim.comments(ticket_id)[-1][0] == "ipmitool -P *** failed"


# -- failures ------------------------------------------------------------------------------------------


def test_retry_after_as_an_http_date_is_waited_out(
    sim: ZendeskSim, zd: ZendeskTickets, sleeps: list[float]
) -> None:
    ticket_id = seed_zendesk(sim, REQUEST)
    when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    sim.faults.throttle(1, retry_after=when)
    assert zd.approval(ticket_id).approved is False
    assert sim.faults.throttled == 1
    assert len(sleeps) == 1 and 27.0 <= sleeps[0] <= 30.0


def test_wrong_credentials_carry_zendesks_words_not_the_token(
    sim: ZendeskSim, server: tuple[ZendeskSim, ServerThread]
) -> None:
    ticket_id = seed_zendesk(sim, REQUEST)
    wrong = other(server, token="s3cret-wrong-token-value")
    with pytest.raises(TicketSystemRefused) as err:
        wrong.get(ticket_id)
    assert "Couldn't authenticate you" in str(err.value) and "401" in str(err.value)
    assert "s3cret-wrong-token-value" not in str(err.value) + repr(err.value)
    wrong.close()


def test_the_login_is_the_email_with_slash_token(
    sim: ZendeskSim, server: tuple[ZendeskSim, ServerThread]
) -> None:
    ticket_id = seed_zendesk(sim, REQUEST)
    plain = other(server, basic=(USER, TOKEN))  # e-mail without /token: a password login, refused
    with pytest.raises(TicketSystemRefused, match="Couldn't authenticate you"):
        plain.approval(ticket_id)
    plain.close()


def test_not_found_carries_zendesks_words(sim: ZendeskSim, zd: ZendeskTickets) -> None:
    with pytest.raises(TicketNotFound, match="RecordNotFound"):
        zd.get("987654")
    before = sim.faults.requests
    with pytest.raises(TicketNotFound, match="not a Zendesk ticket id"):
        zd.get("12/../../users/1")
    assert sim.faults.requests == before


def test_the_registry_builds_it_with_the_token_resolved(
    sim: ZendeskSim, server: tuple[ZendeskSim, ServerThread], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RH_TEST_ZENDESK_TOKEN", TOKEN)
    config = TicketSystemConfig(
        kind="zendesk",
        url=server[1].url,
        user=USER,
        token="env:RH_TEST_ZENDESK_TOKEN",
        fields=FIELDS,
        options=OPTIONS,
    )
    adapter = registry.build("zd", config)
    assert isinstance(adapter, ZendeskTickets)
    ticket_id = seed_zendesk(sim, REQUEST)
    assert adapter.get(ticket_id).request == REQUEST
    adapter.close()
