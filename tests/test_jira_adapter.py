"""Jira Service Management specifics the ticket contract does not cover: priority and severity, the status
mapping and workflow transitions, approval history, paging at Jira's page size, Retry-After dates, and
what errors say (Jira's text, never the token)."""

from __future__ import annotations

import email.utils
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from remotehands import redaction
from remotehands.config import TicketSystemConfig
from remotehands.errors import (
    ConfigError,
    InvalidRequest,
    TicketNotFound,
    TicketSystemRefused,
)
from remotehands.lab.ticket_sims.harness import ServerThread
from remotehands.lab.ticket_sims.jira import JiraSim
from remotehands.tickets import registry
from remotehands.tickets.base import Severity, TaskRequest, TicketStatus, TicketType, event_marker
from remotehands.tickets.jira import JiraTickets
from tests.tickets_contract.target_jira import FIELDS, TOKEN, USER, make_jira, seed_jira

REQUEST = TaskRequest(action="power.cycle", targets=("mac-01",), params={})
SEVERITY_FIELD = "customfield_10060"


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[JiraSim, ServerThread]]:
    sim = JiraSim(user=USER, token=TOKEN)
    thread = ServerThread(sim.app).start()
    yield sim, thread
    thread.stop()


@pytest.fixture
def sim(server: tuple[JiraSim, ServerThread]) -> Iterator[JiraSim]:
    server[0].faults.reset()
    yield server[0]
    server[0].faults.reset()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def jira(server: tuple[JiraSim, ServerThread], sleeps: list[float]) -> Iterator[JiraTickets]:
    adapter = make_jira(server[1].url, sleeps)
    yield adapter
    adapter.close()


def other(server: tuple[JiraSim, ServerThread], **config: Any) -> JiraTickets:
    return make_jira(server[1].url, [], **config)


# -- reading -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("priority", "severity"),
    [("Highest", 1), ("High", 2), ("Medium", 3), ("Low", 4), ("Lowest", 5), ("Blocker", 1), ("Odd", 3)],
)
def test_priority_gives_the_severity(sim: JiraSim, jira: JiraTickets, priority: str, severity: int) -> None:
    key = seed_jira(sim, REQUEST, priority=priority)
    assert jira.get(key).severity == Severity(severity)


def test_a_mapped_severity_field_wins_over_the_priority(
    sim: JiraSim, server: tuple[JiraSim, ServerThread]
) -> None:
    adapter = other(server, fields=FIELDS.model_copy(update={"severity": SEVERITY_FIELD}))
    key = seed_jira(sim, REQUEST, priority="Lowest")
    for value, expected in [({"value": "Sev 1"}, 1), ("sev4", 4), (2, 2)]:
        sim.set_field(key, SEVERITY_FIELD, value)
        assert adapter.get(key).severity == Severity(expected)
    sim.set_field(key, SEVERITY_FIELD, {"value": "sev9"})
    with pytest.raises(InvalidRequest, match=SEVERITY_FIELD):
        adapter.get(key)
    adapter.close()


def test_get_reads_reporter_labels_dates_and_defaults(sim: JiraSim, jira: JiraTickets) -> None:
    key = seed_jira(sim, REQUEST, requester="Alice Smith", labels=("sensitive", "mac"))
    ticket = jira.get(key)
    assert ticket.requester == "Alice Smith"
    assert ticket.sensitive is True
    assert ticket.customer == "provider"  # no customer field mapped: the configured default
    assert ticket.subscription == "acme"
    assert ticket.type == TicketType.REMOTE_HANDS
    assert ticket.received_at.tzinfo is not None and ticket.received_at.year == 2025
    assert ticket.approver is None
    plain = seed_jira(sim, REQUEST)
    assert jira.get(plain).sensitive is False


def test_a_wiki_code_block_holds_a_request(sim: JiraSim, jira: JiraTickets) -> None:
    key = sim.create_issue(
        summary="reboot",
        description="please\n{code:remotehands}\naction: power.cycle\nhosts: [mac-07]\n{code}",
    )
    assert jira.get(key).request.targets == ("mac-07",)


@pytest.mark.parametrize(
    ("native", "ours"),
    [
        ("Waiting for approval", TicketStatus.NEW),
        ("Waiting for support", TicketStatus.APPROVED),
        ("In Progress", TicketStatus.IN_PROGRESS),
        ("Escalated", TicketStatus.NEEDS_ATTENTION),
        ("Resolved", TicketStatus.RESOLVED),
        ("Closed", TicketStatus.CLOSED),
        ("Declined", TicketStatus.CLOSED),  # a common name, not one of ours
        ("Waiting for customer", TicketStatus.IN_PROGRESS),
        ("Under review", TicketStatus.IN_PROGRESS),  # unknown name: its category, indeterminate
    ],
)
def test_jira_statuses_read_as_ours(sim: JiraSim, jira: JiraTickets, native: str, ours: TicketStatus) -> None:
    key = seed_jira(sim, REQUEST)
    sim.set_status(key, native)
    assert jira.get(key).status == ours


def test_approval_follows_the_latest_decision(sim: JiraSim, jira: JiraTickets) -> None:
    key = seed_jira(sim, REQUEST)
    assert jira.approval(key).approved is False  # a pending approval
    sim.set_approval(key, "approved", "Bob Jones")
    approval = jira.approval(key)
    assert (approval.approved, approval.approver) == (True, "Bob Jones")
    assert approval.at is not None and approval.at.year == 2025
    assert jira.get(key).approver == "Bob Jones"
    assert jira.get(key).status == TicketStatus.APPROVED  # JSM moved it to Waiting for support
    sim.set_approval(key, "pending", "")  # a second approval step, not yet decided
    assert jira.approval(key).approved is False
    assert jira.get(key).approver is None


# -- writing -------------------------------------------------------------------------------------------


def test_set_status_takes_the_transition_to_the_mapped_status(sim: JiraSim, jira: JiraTickets) -> None:
    key = seed_jira(sim, REQUEST)
    jira.set_status(key, TicketStatus.NEEDS_ATTENTION)
    assert sim.status(key) == "Escalated"
    jira.set_status(key, TicketStatus.APPROVED)
    assert sim.status(key) == "Waiting for support"


def test_a_status_already_reached_sends_no_transition(sim: JiraSim, jira: JiraTickets) -> None:
    key = seed_jira(sim, REQUEST)
    sim.set_status(key, "In Progress")
    before = sim.faults.requests
    jira.set_status(key, TicketStatus.IN_PROGRESS)
    assert sim.faults.requests - before == 1  # the status read only
    assert sim.status(key) == "In Progress"


def test_a_missing_transition_is_refused_naming_those_on_offer(sim: JiraSim, jira: JiraTickets) -> None:
    key = seed_jira(sim, REQUEST)
    sim.set_status(key, "In Progress")
    with pytest.raises(TicketSystemRefused) as err:
        jira.set_status(key, TicketStatus.CLOSED)  # this workflow closes only resolved requests
    message = str(err.value)
    assert "no transition to 'Closed'" in message
    assert "'Resolve' -> Resolved" in message
    assert "statuses" in message
    assert sim.status(key) == "In Progress"


def test_a_status_the_workflow_lacks_is_refused(sim: JiraSim, server: tuple[JiraSim, ServerThread]) -> None:
    adapter = other(server, statuses={"needs-attention": "Blocked"})
    key = seed_jira(sim, REQUEST)
    with pytest.raises(TicketSystemRefused, match="'Blocked'"):
        adapter.set_status(key, TicketStatus.NEEDS_ATTENTION)
    assert sim.status(key) == "Waiting for approval"
    adapter.close()


def test_status_overrides_write_and_read_back(sim: JiraSim, server: tuple[JiraSim, ServerThread]) -> None:
    adapter = other(server, statuses={"in-progress": "Under review"})
    key = seed_jira(sim, REQUEST)
    adapter.set_status(key, TicketStatus.IN_PROGRESS)
    assert sim.status(key) == "Under review"
    assert adapter.get(key).status == TicketStatus.IN_PROGRESS
    adapter.close()


def test_unknown_status_keys_are_a_config_error(server: tuple[JiraSim, ServerThread]) -> None:
    with pytest.raises(ConfigError, match="'doing'"):
        other(server, statuses={"doing": "In Progress"})


def test_comments_page_at_jiras_size_and_carry_the_marker(sim: JiraSim, jira: JiraTickets) -> None:
    key = seed_jira(sim, REQUEST)
    for i in range(120):
        sim.add_comment(key, f"filler {i}")
    before = sim.faults.requests
    jira.comment(key, "cycled mac-01", event_key="outbox-41", internal=False)
    assert sim.faults.requests - before == 4  # pages of 50, 50 and 20, then the post
    body, internal = sim.comments(key)[-1]
    assert body.endswith(event_marker("outbox-41"))
    assert internal is True  # always internal, whatever the caller asked


def test_comments_mask_registered_secrets(sim: JiraSim, jira: JiraTickets) -> None:
    key = seed_jira(sim, REQUEST)
    redaction.register("hunter2-bmc-password")
    jira.comment(key, "ipmitool -P hunter2-bmc-password failed")
    assert sim.comments(key)[-1][0] == "ipmitool -P *** failed"


def test_an_attachment_of_another_size_is_a_new_one(sim: JiraSim, jira: JiraTickets) -> None:
    key = seed_jira(sim, REQUEST)
    jira.attach(key, "sel.txt", b"one")
    jira.attach(key, "sel.txt", b"three")
    jira.attach(key, "sel.txt", b"one")
    assert sim.attachments(key) == [("sel.txt", b"one"), ("sel.txt", b"three")]


def test_the_simulator_refuses_attachments_without_the_xsrf_header(
    sim: JiraSim, server: tuple[JiraSim, ServerThread]
) -> None:
    key = seed_jira(sim, REQUEST)
    response = httpx.post(
        f"{server[1].url}/rest/api/2/issue/{key}/attachments", files={"file": ("a", b"x")}, auth=(USER, TOKEN)
    )
    assert response.status_code == 403
    assert sim.attachments(key) == []


# -- failures ------------------------------------------------------------------------------------------


def test_retry_after_as_an_http_date_is_waited_out(
    sim: JiraSim, jira: JiraTickets, sleeps: list[float]
) -> None:
    key = seed_jira(sim, REQUEST)
    when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    sim.faults.throttle(1, retry_after=when)
    assert jira.get(key).id == key
    assert sim.faults.throttled == 1
    assert len(sleeps) == 1 and 27.0 <= sleeps[0] <= 30.0


def test_wrong_credentials_carry_jiras_words_not_the_token(
    sim: JiraSim, server: tuple[JiraSim, ServerThread]
) -> None:
    key = seed_jira(sim, REQUEST)
    wrong = other(server, token="s3cret-wrong-token-value")
    with pytest.raises(TicketSystemRefused) as err:
        wrong.approval(key)
    assert "You are not authenticated" in str(err.value)
    assert "401" in str(err.value)
    assert "s3cret-wrong-token-value" not in str(err.value) + repr(err.value)
    wrong.close()


def test_not_found_carries_jiras_words(sim: JiraSim, jira: JiraTickets) -> None:
    with pytest.raises(TicketNotFound, match="Issue does not exist"):
        jira.get("HW-99999")
    with pytest.raises(TicketNotFound, match="could not be found"):
        jira.approval("HW-99999")  # the JSM API says it its own way


def test_a_malformed_key_is_not_sent(sim: JiraSim, jira: JiraTickets) -> None:
    before = sim.faults.requests
    with pytest.raises(TicketNotFound, match="not a Jira issue key"):
        jira.get("../../rest/api/2/myself")
    assert sim.faults.requests == before


def test_the_registry_builds_it_with_the_token_resolved(
    sim: JiraSim, server: tuple[JiraSim, ServerThread], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RH_TEST_JIRA_TOKEN", TOKEN)
    config = TicketSystemConfig(
        kind="jira", url=server[1].url, user=USER, token="env:RH_TEST_JIRA_TOKEN", fields=FIELDS
    )
    adapter = registry.build("jsm", config)
    assert isinstance(adapter, JiraTickets)
    key = seed_jira(sim, REQUEST)
    assert adapter.get(key).request == REQUEST
    assert redaction.redact(f"token {TOKEN}") == "token ***"
    adapter.close()
