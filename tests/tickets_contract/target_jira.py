"""Jira Service Management as a contract target: ``JiraTickets`` against the Jira simulator over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from remotehands.config import TicketSystemConfig
from remotehands.lab.ticket_sims.harness import ServerThread
from remotehands.lab.ticket_sims.jira import JiraSim
from remotehands.tickets.base import TaskRequest
from remotehands.tickets.extract import FieldMap
from remotehands.tickets.http import HttpSettings
from remotehands.tickets.jira import JiraTickets
from tests.tickets_contract.target import TicketTarget

FIXTURES = ["jira_target"]
HTTP_FIXTURES = ["jira_target"]
SUPPORT = ["jira_server"]

USER = "remotehands@example.com"
TOKEN = "jira-test-token-4f9c"
ACTION, HOSTS, PARAMS, SUBSCRIPTION = (f"customfield_{n}" for n in (10050, 10051, 10052, 10053))
FIELDS = FieldMap(action=ACTION, hosts=HOSTS, params=PARAMS, subscription=SUBSCRIPTION)


@pytest.fixture(scope="session")
def jira_server() -> Iterator[tuple[JiraSim, ServerThread]]:
    sim = JiraSim(user=USER, token=TOKEN)
    server = ServerThread(sim.app).start()
    yield sim, server
    server.stop()


def make_jira(
    url: str,
    sleeps: list[float],
    *,
    user: str = USER,
    token: str = TOKEN,
    **config: Any,
) -> JiraTickets:
    """A ``JiraTickets`` for the simulator at ``url``; ``config`` overrides ``TicketSystemConfig`` keys."""
    settings = TicketSystemConfig.model_validate(
        {"kind": "jira", "url": url, "user": user, "fields": FIELDS, **config}
    )
    http = HttpSettings(base_url=url, basic=(user, token), timeout=5.0)
    return JiraTickets("jsm", settings, http, sleep=sleeps.append)


def seed_jira(
    sim: JiraSim,
    request: TaskRequest | None = None,
    title: str = "Hung Mac",
    requester: str = "alice",
    subscription: str = "acme",
    via_fields: bool = True,
    description: str = "",
    **issue: Any,
) -> str:
    """A request as a customer would raise it: the task in the mapped fields, or in a fenced block."""
    fields: dict[str, Any] = {SUBSCRIPTION: {"value": subscription, "id": "10100"}}
    if request is not None and via_fields:
        fields[ACTION] = {"value": request.action, "id": "10200"}
        fields[HOSTS] = list(request.targets)
        if request.params:
            fields[PARAMS] = yaml.safe_dump(request.params)
    elif request is not None:
        block = yaml.safe_dump(
            {"action": request.action, "hosts": list(request.targets), "params": request.params}
        )
        description = f"{description}\n\n```remotehands\n{block}```\n".lstrip()
    return sim.create_issue(
        summary=title, description=description, reporter=requester, fields=fields, **issue
    )


@pytest.fixture
def jira_target(jira_server: tuple[JiraSim, ServerThread]) -> Iterator[TicketTarget]:
    sim, server = jira_server
    sim.faults.reset()
    sleeps: list[float] = []
    made: list[JiraTickets] = []

    def make(**overrides: Any) -> JiraTickets:
        url = overrides.pop("url", server.url)
        adapter = make_jira(url, sleeps, **overrides)
        made.append(adapter)
        return adapter

    def add_comments(key: str, n: int) -> None:
        for i in range(n):
            sim.add_comment(key, f"filler {i}", author="carol")

    yield TicketTarget(
        name="jira",
        system=make(),
        seed=lambda **kw: seed_jira(sim, **kw),
        set_approval=sim.set_approval,
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
