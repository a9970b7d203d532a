"""Request Tracker (REST2) as a contract target: the adapter against the RT simulator over HTTP."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from remotehands.config import TicketSystemConfig
from remotehands.lab.ticket_sims.harness import ServerThread
from remotehands.lab.ticket_sims.rt import RtSim
from remotehands.tickets.base import TaskRequest
from remotehands.tickets.extract import FieldMap
from remotehands.tickets.http import HttpSettings
from remotehands.tickets.rt import RtTickets
from tests.tickets_contract.target import TicketTarget

SUPPORT = ["rt_server"]
FIXTURES = ["rt_target"]
HTTP_FIXTURES = ["rt_target"]

FIELDS = FieldMap(action="RH Action", hosts="RH Hosts", params="RH Params", subscription="Subscription")


@dataclass
class RtServer:
    sim: RtSim
    thread: ServerThread
    token: str

    @property
    def url(self) -> str:
        return self.thread.url


@pytest.fixture(scope="session")
def rt_server() -> Iterator[RtServer]:
    token = secrets.token_urlsafe(16)
    sim = RtSim(token=token)
    sim.define_fields("RH Action", "RH Hosts", "RH Params", "Subscription", "Approval", "Approver")
    thread = ServerThread(sim.app).start()
    try:
        yield RtServer(sim, thread, token)
    finally:
        thread.stop()


def rt_fields(request: TaskRequest | None, subscription: str, via_fields: bool) -> dict[str, str | list[str]]:
    fields: dict[str, str | list[str]] = {"Subscription": subscription, "Approval": "pending"}
    if request is not None and via_fields:
        fields["RH Action"] = request.action
        fields["RH Hosts"] = list(request.targets)  # a multi-value custom field
        if request.params:
            fields["RH Params"] = yaml.safe_dump(request.params)
    return fields


def with_block(description: str, request: TaskRequest | None, via_fields: bool) -> str:
    if request is None or via_fields:
        return description
    block = yaml.safe_dump(
        {"action": request.action, "hosts": list(request.targets), "params": request.params}, sort_keys=False
    )
    return f"{description}\n\n```remotehands\n{block}```\n".lstrip()


def make_config(url: str, **overrides: Any) -> TicketSystemConfig:
    return TicketSystemConfig(kind="rt", url=url, fields=FIELDS, **overrides)


@pytest.fixture
def rt_target(rt_server: RtServer) -> Iterator[TicketTarget]:
    server = rt_server
    sim = server.sim
    sim.faults.reset()
    sleeps: list[float] = []
    made: list[RtTickets] = []

    def make(**overrides: Any) -> RtTickets:
        url = overrides.pop("url", server.url)
        token = overrides.pop("token", server.token)
        settings = HttpSettings(base_url=url, auth={"Authorization": f"token {token}"})
        adapter = RtTickets("rt", make_config(url, **overrides), settings, sleep=sleeps.append)
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
        number = sim.seed(
            subject=title,
            content=with_block(description, request, via_fields),
            requestor=requester,
            fields=rt_fields(request, subscription, via_fields),
        )
        return str(number)

    def set_approval(number: str, state: str, approver: str) -> None:
        sim.set_field(int(number), "Approval", [state])
        sim.set_field(int(number), "Approver", [approver])

    try:
        yield TicketTarget(
            name="rt",
            system=make(),
            seed=seed,
            set_approval=set_approval,
            comments=lambda n: [(text, kind == "Comment") for kind, text in sim.messages(int(n))],
            attachments=lambda n: sim.files(int(n)),
            native_status=lambda n: sim.status(int(n)),
            add_comments=lambda n, count: sim.add_messages(int(n), count, author="carol"),
            faults=sim.faults,
            make=make,
            sleeps=sleeps,
            extra={"sim": sim, "requestless": True},
        )
    finally:
        sim.faults.reset()
        for adapter in made:
            adapter.close()
