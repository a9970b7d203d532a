"""Schema fuzzing of the server on 127.0.0.1: no operation of /openapi.json answers a 5xx to what it generates.

The schema is loaded from the running server (uvicorn in a thread, fresh SQLite database, the lab's
inventory), every generated request carries an admin API token, and Schemathesis's examples, coverage and
fuzzing phases run with a fixed seed and a small example budget, so the file stays well under a minute and
a failure reproduces. The database holds one ticket with a job and one webhook delivery, so the list and
show operations serialise real rows and the fuzzer can reuse real ids. The app runs without its engine:
nothing generated here ever reaches equipment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig

from remotehands.config import Settings
from remotehands.intake import webhooks
from remotehands.jobs import store
from remotehands.lab.process import LabInfo
from remotehands.lab.ticket_sims.harness import ServerThread
from remotehands.runtime import Runtime
from remotehands.server import tokens
from remotehands.server.app import create_app
from tests.conftest import open_ticket

SECRET = "whsec-fuzz-0123456789abcdef"
HOST = "esx-03"
SEED = 20240611
MAX_EXAMPLES = 25  # per operation, fuzzing phase; examples and coverage phases add their own few
# Ticket ids at the edges of parsing: zero, negative, beyond 64 bits, and digits that are not ASCII
# (``str.isdigit()`` is true for all three of the last, ``int()`` takes only the Arabic-Indic one).
EDGE_TICKET_IDS = ("RH-0", "-1", "RH-" + "9" * 30, "\u00b2", "RH-\u2460", "RH-\u0663")

pytestmark = pytest.mark.slow


@pytest.fixture
def api_schema(
    request: pytest.FixtureRequest, tmp_path, lab: LabInfo, monkeypatch: pytest.MonkeyPatch
) -> Iterator[schemathesis.BaseSchema]:
    # Schemathesis 4.32's fixture loader reads and rewrites ``Node._nodeid`` (to name each operation's
    # subtest); pytest 9 keeps the id elsewhere and has no such attribute. Give it one.
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid
    monkeypatch.setenv("RH_TEST_WEBHOOK_SECRET", SECRET)
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'rh.db'}",
        inventory=lab.inventory_dir,
        log_file=tmp_path / "rh.log",
        lease_seconds=30,
        builtin_webhook_secret="env:RH_TEST_WEBHOOK_SECRET",
    )
    rt = Runtime(settings)
    ticket_id = open_ticket(rt, HOST)
    [job_id] = store.create_jobs_for_ticket(rt.db, rt.tickets.get(ticket_id), "bob", "fuzz-setup")
    webhooks.accept(rt, "builtin", "fuzz-delivery-1", ticket_id)
    token = tokens.create(rt.db, "fuzzer", "admin", created_by="test")
    thread = ServerThread(create_app(rt, engine=False)).start()
    try:
        config = SchemathesisConfig.from_dict(
            {
                "seed": SEED,
                "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
            }
        )
        schema = schemathesis.openapi.from_url(f"{thread.url}/openapi.json", config=config, timeout=10)
        # Every call, whatever was generated for the operations' Authorization header, is the admin's.
        schema.config.update(base_url=thread.url, headers={"Authorization": f"Bearer {token}"})
        subscription = rt.inventory().host(HOST).subscription
        owner = {"customer": rt.inventory().customer_of(subscription), "subscription": subscription}
        schema.hook(steered(ticket_id, job_id, owner))
        yield schema
    finally:
        thread.stop()
        rt.db.dispose()


def steered(ticket_id: str, job_id: int, owner: dict[str, str]) -> Callable[..., st.SearchStrategy[Any]]:
    """A ``flatmap_case`` hook. A third of the generated cases stay as generated; a third name the stored
    ticket and job, the ``builtin`` webhook provider, and a new ticket's real action, target, customer and
    subscription, so the fuzzer gets past "not found" into the handlers' real work; a third give an id
    parser's boundary cases as the ticket id. The other fields stay generated."""

    def steer(case: schemathesis.Case[Any], how: str, edge_id: str) -> schemathesis.Case[Any]:
        params = case.path_parameters or {}
        if how == "edge" and "ticket_id" in params:
            params["ticket_id"] = edge_id
        elif how == "real":
            if "ticket_id" in params:
                params["ticket_id"] = ticket_id
            if "job_id" in params:
                params["job_id"] = job_id
            if "provider" in params:
                params["provider"] = "builtin"
            if case.operation.label == "POST /api/tickets" and isinstance(case.body, dict):
                case.body.update(targets=[HOST], action="power.cycle", **owner)
        return case

    def flatmap_case(
        context: schemathesis.HookContext, case: schemathesis.Case[Any]
    ) -> st.SearchStrategy[Any]:
        picks = st.tuples(st.sampled_from(("generated", "real", "edge")), st.sampled_from(EDGE_TICKET_IDS))
        return picks.map(lambda pick: steer(case, *pick))

    return flatmap_case


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
def test_no_operation_answers_5xx_to_schema_generated_requests(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate(checks=[not_a_server_error], timeout=10)


def test_the_fuzzer_reaches_the_api_as_admin(api_schema: schemathesis.BaseSchema) -> None:
    """Guard against a vacuous pass: the loaded schema has the intake, API and ops routes, and the token
    the fuzzer sends is accepted (otherwise every /api call would stop at 401)."""
    paths = set(api_schema.raw_schema["paths"])
    for path in (
        "/webhooks/{provider}",
        "/callbacks/{job_id}",
        "/api/tickets",
        "/api/jobs/{job_id}",
        "/healthz",
    ):
        assert path in paths
    answer = httpx.get(
        f"{api_schema.config.base_url}/api/webhooks",
        headers=dict(api_schema.config.headers or {}),
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    assert [d["delivery_id"] for d in answer.json()] == ["fuzz-delivery-1"]
