"""RT (REST2) adapter details the ticket contract does not cover: the Create-transaction description,
status and priority mapping, the approval custom fields, REST2 paging, error text and the token."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from remotehands.config import TicketSystemConfig
from remotehands.errors import ConfigError, InvalidRequest, TicketNotFound, TicketSystemRefused
from remotehands.lab.ticket_sims.harness import ServerThread
from remotehands.lab.ticket_sims.rt import STATUSES, RtSim
from remotehands.tickets import registry
from remotehands.tickets.base import Severity, TicketStatus, TicketType, event_marker
from remotehands.tickets.extract import FieldMap
from remotehands.tickets.http import HttpSettings
from remotehands.tickets.rt import RtTickets

TOKEN = "rt-test-" + secrets.token_hex(8)
FIELDS = FieldMap(action="RH Action", hosts="RH Hosts", subscription="Subscription")
REQUEST_FIELDS: dict[str, str | list[str]] = {
    "RH Action": "power.cycle",
    "RH Hosts": ["mac-01"],
    "Subscription": "acme",
}
BLOCK = "```remotehands\naction: power.cycle\nhosts: [mac-02]\n```\n"


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[RtSim, str]]:
    sim = RtSim(token=TOKEN, statuses=(*STATUSES, "waiting"))  # a lifecycle with one status of its own
    sim.define_fields("Approval", "Approver")
    thread = ServerThread(sim.app).start()
    try:
        yield sim, thread.url
    finally:
        thread.stop()


@pytest.fixture
def sim(server: tuple[RtSim, str]) -> RtSim:
    return server[0]


@pytest.fixture
def make(server: tuple[RtSim, str]) -> Iterator[Any]:
    made: list[RtTickets] = []

    def build(*, token: str = TOKEN, url: str | None = None, **config: Any) -> RtTickets:
        url = url or server[1]
        settings = TicketSystemConfig(kind="rt", url=url, fields=config.pop("fields", FIELDS), **config)
        adapter = RtTickets(
            "rt", settings, HttpSettings(base_url=url, auth={"Authorization": f"token {token}"})
        )
        made.append(adapter)
        return adapter

    yield build
    for adapter in made:
        adapter.close()


def seed(sim: RtSim, **kwargs: Any) -> str:
    fields = {**REQUEST_FIELDS, **kwargs.pop("fields", {})}
    return str(sim.seed(subject=kwargs.pop("subject", "Hung Mac"), fields=fields, **kwargs))


# -- reading ------------------------------------------------------------------------------------------


def test_the_description_is_the_create_message_not_its_files(sim: RtSim, make: Any) -> None:
    number = sim.seed(
        subject="Hung Mac",
        content=f"It froze at 03:00.\n\n{BLOCK}",
        fields={"Subscription": "acme"},
        files=[("console.txt", b"```remotehands\naction: power.off\nhosts: [mac-09]\n```\n")],
    )
    sim.add_messages(number, 3, kind="Comment")
    ticket = make().get(str(number))
    assert ticket.description.startswith("It froze at 03:00.")
    assert ticket.request.action == "power.cycle" and ticket.request.targets == ("mac-02",)
    only_a_file = sim.seed(
        subject="See file", fields={"Subscription": "acme"}, files=[("blk.txt", BLOCK.encode())]
    )
    with pytest.raises(InvalidRequest, match="remotehands"):
        make().get(str(only_a_file))  # a file's text is not the description


def test_custom_fields_hold_the_request_multi_value_hosts_included(sim: RtSim, make: Any) -> None:
    number = seed(sim, fields={"RH Hosts": ["mac-01", "esx-01"]}, content=BLOCK)
    ticket = make().get(number)
    assert ticket.request.targets == ("mac-01", "esx-01")  # fields win over the block
    assert (ticket.requester, ticket.subscription, ticket.customer) == ("alice", "acme", "provider")


@pytest.mark.parametrize(
    ("status", "approval", "expected"),
    [
        ("new", "pending", TicketStatus.NEW),
        ("new", "approved", TicketStatus.APPROVED),
        ("open", "approved", TicketStatus.IN_PROGRESS),
        ("stalled", "approved", TicketStatus.NEEDS_ATTENTION),
        ("resolved", "approved", TicketStatus.RESOLVED),
        ("rejected", "declined", TicketStatus.CLOSED),
        ("deleted", "pending", TicketStatus.CLOSED),
        ("waiting", "pending", TicketStatus.NEEDS_ATTENTION),  # nothing maps it: a human looks
    ],
)
def test_statuses_read_as_ours(
    sim: RtSim, make: Any, status: str, approval: str, expected: TicketStatus
) -> None:
    number = seed(sim, status=status, fields={"Approval": approval})
    assert make().get(number).status == expected


@pytest.mark.parametrize(
    ("priority", "expected"),
    [
        (0, 4),
        (39, 4),
        (40, 3),
        (50, 3),
        (60, 2),
        (79, 2),
        (80, 1),
        (100, 1),
        ("High", 1),
        ("Medium", 3),
        ("Low", 4),
    ],
)
def test_priority_bands_give_the_severity(sim: RtSim, make: Any, priority: int | str, expected: int) -> None:
    assert make().get(seed(sim, priority=priority)).severity == Severity(expected)


def test_severity_type_and_sensitivity_fields(sim: RtSim, make: Any) -> None:
    fmap = FIELDS.model_copy(update={"severity": "Severity", "type": "Kind", "sensitive": "Secret"})
    adapter = make(fields=fmap)
    ticket = adapter.get(
        seed(sim, priority=100, fields={"Severity": "sev5", "Kind": "monitoring alert", "Secret": "yes"})
    )
    assert (ticket.severity, ticket.type, ticket.sensitive) == (
        Severity.FALSE_ALARM,
        TicketType.MONITORING_ALERT,
        True,
    )
    with pytest.raises(InvalidRequest, match="Severity"):
        adapter.get(seed(sim, fields={"Severity": "whenever"}))


def test_approval_fields_are_configurable(sim: RtSim, make: Any) -> None:
    number = seed(sim, fields={"CAB Decision": "Approved", "CAB Member": "bob"})
    adapter = make(options={"approval_field": "CAB Decision", "approver_field": "CAB Member"})
    approval = adapter.approval(number)
    assert (approval.approved, approval.approver, approval.at) == (True, "bob", None)
    assert adapter.get(number).approver == "bob"
    assert make().approval(number).approved is False  # the default field is empty on this ticket


def test_ticket_ids_that_are_not_numbers_send_nothing(sim: RtSim, make: Any) -> None:
    before = sim.faults.requests
    with pytest.raises(TicketNotFound):
        make().get("12/comment")
    assert sim.faults.requests == before
    number = seed(sim)
    assert make().get(f"#{number}").id == number


# -- writing ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (TicketStatus.NEW, "new"),
        (TicketStatus.IN_PROGRESS, "open"),
        (TicketStatus.NEEDS_ATTENTION, "stalled"),
        (TicketStatus.RESOLVED, "resolved"),
        (TicketStatus.CLOSED, "resolved"),
    ],
)
def test_statuses_write_rt_statuses(sim: RtSim, make: Any, status: TicketStatus, expected: str) -> None:
    number = seed(sim, status="open")
    make().set_status(number, status)
    assert sim.status(int(number)) == expected


def test_a_status_rt_keeps_is_refused_with_rts_message(sim: RtSim, make: Any) -> None:
    number = seed(sim)
    with pytest.raises(TicketSystemRefused, match="isn't a valid status"):
        make(statuses={"needs-attention": "parked"}).set_status(number, TicketStatus.NEEDS_ATTENTION)
    assert sim.status(int(number)) == "new"
    adapter = make(statuses={"needs-attention": "waiting"})
    adapter.set_status(number, TicketStatus.NEEDS_ATTENTION)
    assert sim.status(int(number)) == "waiting"
    assert adapter.get(number).status == TicketStatus.NEEDS_ATTENTION


def test_approved_writes_nothing_and_bad_settings_are_config_errors(sim: RtSim, make: Any) -> None:
    number = seed(sim, status="open")
    before = sim.faults.requests
    make().set_status(number, TicketStatus.APPROVED)
    assert sim.faults.requests == before and sim.status(int(number)) == "open"
    with pytest.raises(ConfigError, match="statuses"):
        make(statuses={"done": "resolved"})


def test_comments_are_rt_comments_and_public_ones_correspondence(sim: RtSim, make: Any) -> None:
    number = seed(sim)
    adapter = make()
    adapter.comment(number, "internal note")
    adapter.comment(number, "dear customer", internal=False)
    assert sim.messages(int(number)) == [("Comment", "internal note"), ("Correspond", "dear customer")]


def test_the_marker_is_found_on_the_last_page_of_the_history(sim: RtSim, make: Any) -> None:
    number = seed(sim)
    adapter = make()
    sim.add_messages(int(number), 230)
    adapter.comment(number, "cycled mac-01", event_key="outbox-77")
    before = sim.faults.requests
    adapter.comment(number, "cycled mac-01", event_key="outbox-77")
    assert sim.faults.requests - before == 3  # 232 transactions: three pages of 100, nothing written
    ours = [text for _, text in sim.messages(int(number)) if "cycled" in text]
    assert ours == [f"cycled mac-01\n\n{event_marker('outbox-77')}"]


def test_next_page_is_followed_only_on_the_configured_rt(make: Any) -> None:
    adapter = make(url="http://127.0.0.1:8123/rt")
    body = {"next_page": "https://elsewhere.example.com/rt/REST/2.0/ticket/7/history?per_page=100&page=2"}
    assert adapter._next(body, httpx.Response(200)) == (
        "http://127.0.0.1:8123/rt/REST/2.0/ticket/7/history",
        {"per_page": "100", "page": "2"},
    )
    assert adapter._next({"page": 2, "pages": 2}, httpx.Response(200)) is None


def test_files_go_with_an_internal_comment_once_per_name_and_size(sim: RtSim, make: Any) -> None:
    number = seed(sim)
    adapter = make()
    adapter.attach(number, "sel.txt", b"one", event_key="outbox-5")
    adapter.attach(number, "sel.txt", b"one", event_key="outbox-5")
    adapter.attach(number, "sel.txt", b"longer")
    assert sim.files(int(number)) == [("sel.txt", b"one"), ("sel.txt", b"longer")]
    kinds = [kind for kind, text in sim.messages(int(number)) if "sel.txt" in text]
    assert kinds == ["Comment", "Comment"]


def test_a_url_that_already_names_rest2_works(sim: RtSim, make: Any, server: tuple[RtSim, str]) -> None:
    number = seed(sim, subject="rooted")
    assert make(url=server[1] + "/REST/2.0/").get(number).title == "rooted"


# -- errors and the token -----------------------------------------------------------------------------


def test_errors_carry_rts_message_never_the_token(
    sim: RtSim, make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    number = seed(sim)
    with pytest.raises(TicketSystemRefused) as err:
        make(token=TOKEN + "-wrong").get(number)
    assert "Unauthorized" in str(err.value) and "401" in str(err.value)
    with pytest.raises(TicketNotFound, match="Not Found"):
        make().comment("987654", "x", event_key="outbox-3")
    sim.faults.throttle(1, retry_after="0")
    make().comment(number, "after a wait")
    assert TOKEN not in str(err.value) + caplog.text


def test_the_registry_builds_it_with_token_auth_from_a_reference(
    sim: RtSim, server: tuple[RtSim, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RT_TEST_TOKEN", TOKEN)
    adapter = registry.build(
        "ops-rt", TicketSystemConfig(kind="rt", url=server[1], token="env:RT_TEST_TOKEN", fields=FIELDS)
    )
    assert isinstance(adapter, RtTickets)
    try:
        ticket = adapter.get(seed(sim, subject="via registry"))
    finally:
        adapter.close()
    assert (ticket.system, ticket.title, ticket.request.targets) == ("ops-rt", "via registry", ("mac-01",))
