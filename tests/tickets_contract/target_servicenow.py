"""ServiceNow (Table API) as a contract target: the adapter against the ServiceNow simulator over HTTP."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from remotehands.config import TicketSystemConfig
from remotehands.lab.ticket_sims.harness import ServerThread
from remotehands.lab.ticket_sims.servicenow import ServiceNowSim
from remotehands.tickets.base import TaskRequest
from remotehands.tickets.extract import FieldMap
from remotehands.tickets.http import HttpSettings
from remotehands.tickets.servicenow import ServiceNowTickets
from tests.tickets_contract.target import TicketTarget

SUPPORT = ["servicenow_server"]
FIXTURES = ["servicenow_target"]
HTTP_FIXTURES = ["servicenow_target"]

USER = "rh.integration"
FIELDS = FieldMap(
    action="u_rh_action", hosts="u_rh_hosts", params="u_rh_params", subscription="u_rh_subscription"
)
APPROVAL_STATES = {"approved": "approved", "declined": "rejected", "pending": "requested"}


@dataclass
class SnServer:
    sim: ServiceNowSim
    thread: ServerThread
    password: str

    @property
    def url(self) -> str:
        return self.thread.url


@pytest.fixture(scope="session")
def servicenow_server() -> Iterator[SnServer]:
    password = secrets.token_urlsafe(16)
    sim = ServiceNowSim(user=USER, password=password)
    thread = ServerThread(sim.app).start()
    try:
        yield SnServer(sim, thread, password)
    finally:
        thread.stop()


def sn_fields(request: TaskRequest | None, subscription: str, via_fields: bool) -> dict[str, str]:
    fields = {"u_rh_subscription": subscription}
    if request is not None and via_fields:
        fields["u_rh_action"] = request.action
        fields["u_rh_hosts"] = ", ".join(request.targets)
        if request.params:
            fields["u_rh_params"] = yaml.safe_dump(request.params)
    return fields


def with_block(description: str, request: TaskRequest | None, via_fields: bool) -> str:
    if request is None or via_fields:
        return description
    block = yaml.safe_dump(
        {"action": request.action, "hosts": list(request.targets), "params": request.params}, sort_keys=False
    )
    return f"{description}\n\n```remotehands\n{block}```\n".lstrip()


@pytest.fixture
def servicenow_target(servicenow_server: SnServer) -> Iterator[TicketTarget]:
    server = servicenow_server
    sim = server.sim
    sim.faults.reset()
    sleeps: list[float] = []
    made: list[ServiceNowTickets] = []

    def make(**overrides: Any) -> ServiceNowTickets:
        url = overrides.pop("url", server.url)
        password = overrides.pop("token", server.password)
        config = TicketSystemConfig(kind="servicenow", url=url, user=USER, fields=FIELDS, **overrides)
        adapter = ServiceNowTickets(
            "servicenow", config, HttpSettings(base_url=url, basic=(USER, password)), sleep=sleeps.append
        )
        made.append(adapter)
        return adapter

    def seed(
        request: TaskRequest | None = None,
        title: str = "Hung Mac",
        requester: str = "alice",
        subscription: str = "acme",
        via_fields: bool = True,
        description: str = "",
    ) -> str:
        return sim.seed(
            short_description=title,
            description=with_block(description, request, via_fields),
            caller=requester,
            fields=sn_fields(request, subscription, via_fields),
        )

    def comments(number: str) -> list[tuple[str, bool]]:
        return [(value, element == "work_notes") for element, value in sim.journal(number)]

    try:
        yield TicketTarget(
            name="servicenow",
            system=make(),
            seed=seed,
            set_approval=lambda number, state, approver: sim.set_approval(
                number, APPROVAL_STATES[state], approver
            ),
            comments=comments,
            attachments=sim.attachment_files,
            native_status=sim.state,
            add_comments=lambda number, n: sim.add_work_notes(number, n, author="carol"),
            faults=sim.faults,
            make=make,
            sleeps=sleeps,
            extra={"sim": sim, "requestless": True},
        )
    finally:
        sim.faults.reset()
        for adapter in made:
            adapter.close()
