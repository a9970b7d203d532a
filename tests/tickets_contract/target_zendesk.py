"""Zendesk Support as a contract target: ``ZendeskTickets`` against the Zendesk simulator over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from remotehands.config import TicketSystemConfig
from remotehands.lab.ticket_sims.harness import ServerThread
from remotehands.lab.ticket_sims.zendesk import ZendeskSim
from remotehands.tickets.base import TaskRequest
from remotehands.tickets.extract import FieldMap
from remotehands.tickets.http import HttpSettings
from remotehands.tickets.zendesk import ZendeskTickets
from tests.tickets_contract.target import TicketTarget

FIXTURES = ["zendesk_target"]
HTTP_FIXTURES = ["zendesk_target"]
SUPPORT = ["zendesk_server"]

USER = "agent@example.com"
TOKEN = "zd-test-token-7b21"
ACTION, HOSTS, PARAMS, SUBSCRIPTION = 360000000101, 360000000102, 360000000103, 360000000104
APPROVAL, APPROVER = 360000000201, 360000000202
FIELDS = FieldMap(action=str(ACTION), hosts=str(HOSTS), params=str(PARAMS), subscription=str(SUBSCRIPTION))
OPTIONS = {"approval_field": str(APPROVAL), "approver_field": str(APPROVER)}


@pytest.fixture(scope="session")
def zendesk_server() -> Iterator[tuple[ZendeskSim, ServerThread]]:
    sim = ZendeskSim(user=USER, token=TOKEN)
    server = ServerThread(sim.app).start()
    yield sim, server
    server.stop()


def make_zendesk(
    url: str,
    sleeps: list[float],
    *,
    user: str = USER,
    token: str = TOKEN,
    basic: tuple[str, str] | None = None,
    **config: Any,
) -> ZendeskTickets:
    """A ``ZendeskTickets`` for the simulator at ``url``, authenticated as the registry does
    (``{user}/token`` + token) unless ``basic`` says otherwise; ``config`` overrides settings keys."""
    settings = TicketSystemConfig.model_validate(
        {"kind": "zendesk", "url": url, "user": user, "fields": FIELDS, "options": OPTIONS, **config}
    )
    http = HttpSettings(base_url=url, basic=basic or (f"{user}/token", token), timeout=5.0)
    return ZendeskTickets("zd", settings, http, sleep=sleeps.append)


def seed_zendesk(
    sim: ZendeskSim,
    request: TaskRequest | None = None,
    title: str = "Hung Mac",
    requester: str = "alice",
    subscription: str = "acme",
    via_fields: bool = True,
    description: str = "",
    **ticket: Any,
) -> str:
    """A ticket as a customer would raise it: the task in the mapped fields, or in a fenced block."""
    fields: dict[int, Any] = {SUBSCRIPTION: subscription, APPROVAL: "pending", APPROVER: None}
    if request is not None and via_fields:
        fields[ACTION] = request.action
        fields[HOSTS] = " ".join(request.targets)
        if request.params:
            fields[PARAMS] = yaml.safe_dump(request.params)
    elif request is not None:
        block = yaml.safe_dump(
            {"action": request.action, "hosts": list(request.targets), "params": request.params}
        )
        description = f"{description}\n\n```remotehands\n{block}```\n".lstrip()
    return sim.create_ticket(
        subject=title, description=description, requester=requester, fields=fields, **ticket
    )


def set_approval(sim: ZendeskSim, ticket_id: str, state: str, approver: str) -> None:
    """What an agent does in Zendesk: set the approval drop-down and write their name."""
    sim.set_field(ticket_id, APPROVAL, state)
    sim.set_field(ticket_id, APPROVER, approver)


@pytest.fixture
def zendesk_target(zendesk_server: tuple[ZendeskSim, ServerThread]) -> Iterator[TicketTarget]:
    sim, server = zendesk_server
    sim.faults.reset()
    sleeps: list[float] = []
    made: list[ZendeskTickets] = []

    def make(**overrides: Any) -> ZendeskTickets:
        url = overrides.pop("url", server.url)
        adapter = make_zendesk(url, sleeps, **overrides)
        made.append(adapter)
        return adapter

    def add_comments(ticket_id: str, n: int) -> None:
        for i in range(n):
            sim.add_comment(ticket_id, f"filler {i}", author="carol")

    yield TicketTarget(
        name="zendesk",
        system=make(),
        seed=lambda **kw: seed_zendesk(sim, **kw),
        set_approval=lambda ticket_id, state, approver: set_approval(sim, ticket_id, state, approver),
        comments=sim.comments,
        attachments=sim.attachments,
        native_status=sim.status,
        add_comments=add_comments,
        faults=sim.faults,
        make=make,
        sleeps=sleeps,
        extra={"sim": sim, "url": server.url},
    )
    for adapter in made:
        adapter.close()
    sim.faults.reset()
