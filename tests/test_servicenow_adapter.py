"""ServiceNow adapter details the ticket contract does not cover: state, priority and severity mapping,
resolution fields, Link-header paging, error text and credentials, settings."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from remotehands.config import TicketSystemConfig
from remotehands.errors import ConfigError, InvalidRequest, TicketNotFound, TicketSystemRefused
from remotehands.lab.ticket_sims.harness import ServerThread
from remotehands.lab.ticket_sims.servicenow import Ref, ServiceNowSim
from remotehands.tickets import registry
from remotehands.tickets.base import Severity, TicketStatus, TicketType, event_marker
from remotehands.tickets.extract import FieldMap
from remotehands.tickets.http import HttpSettings
from remotehands.tickets.servicenow import ServiceNowTickets

USER = "rh.integration"
PASSWORD = "sn-test-" + secrets.token_hex(8)
FIELDS = FieldMap(action="u_rh_action", hosts="u_rh_hosts", subscription="u_rh_subscription")
REQUEST_FIELDS = {"u_rh_action": "power.cycle", "u_rh_hosts": "mac-01", "u_rh_subscription": "acme"}


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[ServiceNowSim, str]]:
    sim = ServiceNowSim(user=USER, password=PASSWORD)
    thread = ServerThread(sim.app).start()
    try:
        yield sim, thread.url
    finally:
        thread.stop()


@pytest.fixture
def sim(server: tuple[ServiceNowSim, str]) -> ServiceNowSim:
    return server[0]


@pytest.fixture
def make(server: tuple[ServiceNowSim, str]) -> Iterator[Any]:
    made: list[ServiceNowTickets] = []

    def build(
        *, password: str = PASSWORD, sleeps: list[float] | None = None, **config: Any
    ) -> ServiceNowTickets:
        url = config.pop("url", server[1])
        settings = TicketSystemConfig(
            kind="servicenow", url=url, user=USER, fields=config.pop("fields", FIELDS), **config
        )
        adapter = ServiceNowTickets(
            "sn", settings, HttpSettings(base_url=url, basic=(USER, password)), sleep=(sleeps or []).append
        )
        made.append(adapter)
        return adapter

    yield build
    for adapter in made:
        adapter.close()


def seed(sim: ServiceNowSim, **kwargs: Any) -> str:
    fields = {**REQUEST_FIELDS, **kwargs.pop("fields", {})}
    return sim.seed(short_description=kwargs.pop("title", "Hung Mac"), fields=fields, **kwargs)


# -- reading ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "approval", "expected"),
    [
        ("1", "not requested", TicketStatus.NEW),
        ("1", "approved", TicketStatus.APPROVED),
        ("2", "approved", TicketStatus.IN_PROGRESS),
        ("3", "requested", TicketStatus.NEEDS_ATTENTION),
        ("6", "approved", TicketStatus.RESOLVED),
        ("7", "approved", TicketStatus.CLOSED),
        ("8", "rejected", TicketStatus.CLOSED),
        ("-40", "not requested", TicketStatus.NEEDS_ATTENTION),  # a state nothing maps: a human looks
    ],
)
def test_states_read_as_our_statuses(
    sim: ServiceNowSim, make: Any, state: str, approval: str, expected: TicketStatus
) -> None:
    number = seed(sim, fields={"state": state, "approval": approval, "close_code": "x", "close_notes": "y"})
    assert make().get(number).status == expected


@pytest.mark.parametrize("priority", ["1", "2", "3", "4", "5"])
def test_priority_is_the_severity_when_no_field_is_mapped(
    sim: ServiceNowSim, make: Any, priority: str
) -> None:
    number = seed(sim, priority=priority)
    assert make().get(number).severity == Severity(int(priority))


@pytest.mark.parametrize(("value", "expected"), [("sev1", 1), ("Sev 4", 4), ("5", 5), ("2 - High", 2)])
def test_a_mapped_severity_field_wins_over_priority(
    sim: ServiceNowSim, make: Any, value: str, expected: int
) -> None:
    number = seed(sim, priority="3", fields={"u_rh_sev": value})
    adapter = make(fields=FIELDS.model_copy(update={"severity": "u_rh_sev"}))
    assert adapter.get(number).severity == Severity(expected)


def test_a_bad_severity_or_type_names_the_field(sim: ServiceNowSim, make: Any) -> None:
    adapter = make(fields=FIELDS.model_copy(update={"severity": "u_rh_sev", "type": "u_rh_type"}))
    with pytest.raises(InvalidRequest, match="u_rh_sev"):
        adapter.get(seed(sim, fields={"u_rh_sev": "urgent"}))
    with pytest.raises(InvalidRequest, match="remote-hands"):
        adapter.get(seed(sim, fields={"u_rh_sev": "sev2", "u_rh_type": "plumbing"}))
    assert adapter.get(seed(sim, fields={"u_rh_type": "Config Change"})).type == TicketType.CONFIG_CHANGE


def test_reference_fields_read_by_display_value(sim: ServiceNowSim, make: Any) -> None:
    number = seed(
        sim,
        caller="Alice Example",
        fields={"company": Ref("core_company", secrets.token_hex(16), "Acme Corp"), "u_rh_secret": "true"},
    )
    adapter = make(fields=FIELDS.model_copy(update={"customer": "company", "sensitive": "u_rh_secret"}))
    ticket = adapter.get(number)
    assert ticket.customer == "Acme Corp"
    assert ticket.requester == "Alice Example"
    assert ticket.sensitive is True
    assert ticket.subscription == "acme"
    assert abs((ticket.received_at - datetime.now(UTC)).total_seconds()) < 120


def test_unmapped_customer_and_subscription_come_from_the_settings(sim: ServiceNowSim, make: Any) -> None:
    number = sim.seed(short_description="x", fields={"u_rh_action": "power.cycle", "u_rh_hosts": "mac-01"})
    ticket = make(
        fields=FieldMap(action="u_rh_action", hosts="u_rh_hosts"), customer="acme-co", subscription="gold"
    ).get(number)
    assert (ticket.customer, ticket.subscription) == ("acme-co", "gold")


def test_the_approver_comes_from_the_approval_record(sim: ServiceNowSim, make: Any) -> None:
    number = seed(sim)
    adapter = make()
    sim.set_approval(number, "approved", "Bob Approver")
    approval = adapter.approval(number)
    assert approval.approved and approval.approver == "Bob Approver" and approval.at is not None
    assert adapter.get(number).approver == "Bob Approver"
    sim.set_approval(number, "rejected", "Bob Approver")
    assert adapter.approval(number).approved is False
    assert adapter.get(number).approver is None


def test_a_query_in_the_ticket_id_is_not_sent(sim: ServiceNowSim, make: Any) -> None:
    before = sim.faults.requests
    with pytest.raises(TicketNotFound):
        make().get("INC0010001^ORnumberISNOTEMPTY")
    assert sim.faults.requests == before


# -- writing ------------------------------------------------------------------------------------------


def test_resolving_sends_the_resolution_fields(sim: ServiceNowSim, make: Any) -> None:
    number = seed(sim)
    make().set_status(number, TicketStatus.RESOLVED)
    record = sim.record(number)
    assert record["state"] == "6"
    assert record["close_code"] == "Solved (Permanently)"
    assert record["close_notes"] == "resolved by remotehands"
    other = seed(sim)
    make(options={"close_code": "Solved Remotely (Permanently)"}).set_status(other, TicketStatus.CLOSED)
    assert (sim.state(other), sim.record(other)["close_code"]) == ("7", "Solved Remotely (Permanently)")


@pytest.mark.parametrize(
    ("status", "state"),
    [(TicketStatus.NEW, "1"), (TicketStatus.IN_PROGRESS, "2"), (TicketStatus.NEEDS_ATTENTION, "3")],
)
def test_statuses_write_incident_states(
    sim: ServiceNowSim, make: Any, status: TicketStatus, state: str
) -> None:
    number = seed(sim, fields={"state": "2"} if state == "1" else {})
    make().set_status(number, status)
    assert sim.state(number) == state


def test_status_overrides_take_labels_or_values_and_read_back(sim: ServiceNowSim, make: Any) -> None:
    number = seed(sim)
    adapter = make(statuses={"needs-attention": "In Progress", "in-progress": "-5"})
    adapter.set_status(number, TicketStatus.NEEDS_ATTENTION)
    assert sim.state(number) == "2"
    adapter.set_status(number, TicketStatus.IN_PROGRESS)
    assert sim.state(number) == "-5"
    assert adapter.get(number).status == TicketStatus.IN_PROGRESS


def test_approved_has_no_state_and_writes_nothing(sim: ServiceNowSim, make: Any) -> None:
    number = seed(sim, fields={"state": "2"})
    adapter = make()
    adapter.get(number)
    before = sim.faults.requests
    adapter.set_status(number, TicketStatus.APPROVED)
    assert sim.faults.requests == before and sim.state(number) == "2"


def test_bad_status_settings_are_config_errors() -> None:
    for statuses in ({"done": "6"}, {"resolved": "Fixed It"}):
        config = TicketSystemConfig(kind="servicenow", url="http://127.0.0.1:9", statuses=statuses)
        with pytest.raises(ConfigError, match="statuses"):
            ServiceNowTickets("sn", config, HttpSettings(base_url="http://127.0.0.1:9"))


def test_public_comments_are_customer_visible_and_the_sys_id_is_cached(sim: ServiceNowSim, make: Any) -> None:
    number = seed(sim)
    adapter = make()
    adapter.comment(number, "first", internal=False)
    before = sim.faults.requests
    adapter.comment(number, "second")
    assert sim.faults.requests - before == 1  # one PATCH, no lookup of the number again
    assert sim.journal(number) == [("comments", "first"), ("work_notes", "second")]


def test_the_marker_is_found_on_a_later_page_of_the_link_header(sim: ServiceNowSim, make: Any) -> None:
    number = seed(sim)
    adapter = make()
    sim.add_work_notes(number, 230)
    adapter.comment(number, "cycled mac-01", event_key="outbox-41")
    sim.add_work_notes(number, 50)  # our note is now on the third page of 100, not the last row
    before = sim.faults.requests
    adapter.comment(number, "cycled mac-01", event_key="outbox-41")
    assert sim.faults.requests - before == 3  # two next links followed, nothing written
    ours = [v for _, v in sim.journal(number) if event_marker("outbox-41") in v]
    assert ours == [f"cycled mac-01\n\n{event_marker('outbox-41')}"]


def test_next_links_are_followed_only_on_the_configured_instance(make: Any) -> None:
    adapter = make(url="http://127.0.0.1:8123")
    link = '<https://evil.example.com:8443/api/now/table/sys_journal_field?sysparm_offset=100&sysparm_limit=100>;rel="next"'
    nxt = adapter._next({}, httpx.Response(200, headers={"Link": link}))
    assert nxt == (
        "http://127.0.0.1:8123/api/now/table/sys_journal_field",
        {"sysparm_offset": "100", "sysparm_limit": "100"},
    )
    assert adapter._next({}, httpx.Response(200)) is None


def test_attachments_are_skipped_only_for_the_same_name_and_size(sim: ServiceNowSim, make: Any) -> None:
    number = seed(sim)
    adapter = make()
    adapter.attach(number, "sel.txt", b"one")
    adapter.attach(number, "sel.txt", b"one")
    adapter.attach(number, "sel.txt", b"longer")
    adapter.attach(number, "photo.png", b"\x89PNG")
    adapter.attach(number, "odd^name.txt", b"x")
    adapter.attach(number, "odd^name.txt", b"x")
    assert sim.attachment_files(number) == [
        ("sel.txt", b"one"),
        ("sel.txt", b"longer"),
        ("photo.png", b"\x89PNG"),
        ("odd^name.txt", b"x"),
    ]


# -- errors and credentials ---------------------------------------------------------------------------


def test_errors_carry_servicenows_message_never_the_password(
    sim: ServiceNowSim, make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    number = seed(sim)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(TicketSystemRefused) as err:
        make(password=PASSWORD + "-wrong").get(number)
    assert "User Not Authenticated" in str(err.value) and "401" in str(err.value)
    with pytest.raises(TicketSystemRefused, match="Invalid table no_such_table"):
        make(options={"table": "no_such_table"}).get(number)
    sim.faults.throttle(1, retry_after="2")
    make().comment(number, "after a wait")
    text = str(err.value) + caplog.text
    assert PASSWORD not in text


def test_the_registry_builds_it_with_basic_auth_from_a_reference(
    sim: ServiceNowSim, server: tuple[ServiceNowSim, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SN_TEST_PASSWORD", PASSWORD)
    config = TicketSystemConfig(
        kind="servicenow", url=server[1], user=USER, token="env:SN_TEST_PASSWORD", fields=FIELDS
    )
    adapter = registry.build("corp-sn", config)
    assert isinstance(adapter, ServiceNowTickets)
    try:
        ticket = adapter.get(seed(sim, title="via registry"))
    finally:
        adapter.close()
    assert (ticket.system, ticket.title, ticket.request.targets) == ("corp-sn", "via registry", ("mac-01",))
