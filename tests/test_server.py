"""The server on 127.0.0.1: signed webhooks make jobs once, bad signatures make none, roles hold."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import select

from remotehands.config import Settings
from remotehands.intake import callbacks, webhooks
from remotehands.intake.signatures import sign_generic
from remotehands.intake.tables import WebhookDelivery
from remotehands.jobs import store
from remotehands.jobs.tables import Job
from remotehands.lab.process import LabInfo
from remotehands.lab.ticket_sims.harness import ServerThread
from remotehands.runtime import Runtime
from remotehands.server import tokens
from remotehands.server.app import create_app
from tests.conftest import job_state, mark, open_ticket

SECRET = "whsec-test-0123456789abcdef"


@dataclass
class Server:
    url: str
    rt: Runtime
    client: httpx.Client

    def webhook(
        self,
        ticket_id: str,
        *,
        delivery: str,
        stamp: int | None = None,
        secret: str = SECRET,
        provider: str = "builtin",
    ) -> httpx.Response:
        body = json.dumps({"ticket_id": ticket_id, "event": "ticket.approved"}).encode()
        stamp = int(time.time()) if stamp is None else stamp
        headers = {
            "Content-Type": "application/json",
            "X-RH-Timestamp": str(stamp),
            "X-RH-Delivery": delivery,
            "X-RH-Signature": sign_generic(secret.encode(), body, stamp),
        }
        return self.client.post(f"/webhooks/{provider}", content=body, headers=headers)

    def token(self, name: str, role: str) -> dict[str, str]:
        return {"Authorization": "Bearer " + tokens.create(self.rt.db, name, role, created_by="test")}


@pytest.fixture
def server(tmp_path, lab: LabInfo, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    monkeypatch.setenv("RH_TEST_WEBHOOK_SECRET", SECRET)
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'rh.db'}",
        inventory=lab.inventory_dir,
        log_file=tmp_path / "rh.log",
        lease_seconds=30,
        builtin_webhook_secret="env:RH_TEST_WEBHOOK_SECRET",
    )
    rt = Runtime(settings)
    thread = ServerThread(create_app(rt)).start()
    try:
        with httpx.Client(base_url=thread.url, timeout=10) as client:
            yield Server(thread.url, rt, client)
    finally:
        thread.stop()
        rt.db.dispose()


def wait_for(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def jobs_of(rt: Runtime, ticket_id: str) -> list[Job]:
    return store.jobs_of_ticket(rt.db, ticket_id)


def test_health_openapi_and_metrics(server: Server) -> None:
    assert server.client.get("/healthz").json()["status"] == "ok"
    paths = server.client.get("/openapi.json").json()["paths"]
    for path in (
        "/webhooks/{provider}",
        "/callbacks/{job_id}",
        "/api/jobs",
        "/api/tickets/{ticket_id}/approve",
    ):
        assert path in paths
    text = server.client.get("/metrics").text
    assert "remotehands_outbox_pending" in text
    assert "remotehands_webhooks_total" in text or "# HELP remotehands_webhooks" in text


def test_a_signed_webhook_sent_ten_times_makes_one_job_that_runs(server: Server, lab: LabInfo) -> None:
    host = "esx-05"
    before = mark(lab, host)
    ticket_id = open_ticket(server.rt, host)
    answers = [server.webhook(ticket_id, delivery="dlv-1") for _ in range(10)]
    assert [a.status_code for a in answers] == [202] * 10
    assert [a.json()["duplicate"] for a in answers] == [False] + [True] * 9
    jobs = wait_for(lambda: jobs_of(server.rt, ticket_id))
    wait_for(lambda: job_state(server.rt, jobs[0].id) == "succeeded", timeout=60)
    # A new delivery of the same request (the ticket system re-sends, or our own comment triggered an
    # "updated" webhook) is recognised as the same work.
    assert server.webhook(ticket_id, delivery="dlv-2").status_code == 202
    wait_for(lambda: webhooks.deliveries(server.rt, ticket_id)[0]["state"] == "duplicate")
    assert len(jobs_of(server.rt, ticket_id)) == 1
    assert len(before.commands("cycle")) == 1  # the BMC received exactly one cycle
    with server.rt.db.session() as s:
        stored = (
            s.execute(select(WebhookDelivery).where(WebhookDelivery.ticket_id == ticket_id)).scalars().all()
        )
    assert sorted(d.delivery_id for d in stored) == ["dlv-1", "dlv-2"]


def test_bad_signature_and_stale_timestamp_are_refused_with_a_reason(server: Server) -> None:
    ticket_id = open_ticket(server.rt, "esx-06")
    forged = server.webhook(ticket_id, delivery="x-1", secret="not-the-secret")
    assert forged.status_code == 401
    assert "signature does not match" in forged.json()["error"]
    stale = server.webhook(ticket_id, delivery="x-2", stamp=int(time.time()) - 3600)
    assert stale.status_code == 401
    assert re.search(r"is 360\d s from now, more than the 300 s allowed", stale.json()["error"])
    unsigned = server.client.post("/webhooks/builtin", content=b'{"ticket_id": "RH-1"}')
    assert unsigned.status_code == 401
    assert "X-RH-Timestamp" in unsigned.json()["error"]
    assert server.client.post("/webhooks/nosuch", content=b"{}").status_code == 404
    assert webhooks.deliveries(server.rt) == []
    assert SECRET not in forged.text + stale.text


def test_an_unapproved_ticket_gets_a_comment_and_no_job(server: Server) -> None:
    ticket_id = open_ticket(server.rt, "esx-06", approver=None)
    assert server.webhook(ticket_id, delivery="u-1").status_code == 202
    wait_for(lambda: webhooks.deliveries(server.rt, ticket_id)[0]["state"] == "unapproved")
    assert jobs_of(server.rt, ticket_id) == []
    comments = [c.body for c in server.rt.tickets.comments(ticket_id)]
    assert any("once this ticket is approved" in c for c in comments)
    # Approved later, the next delivery makes the job.
    server.rt.tickets.approve(ticket_id, "bob")
    server.webhook(ticket_id, delivery="u-2")
    wait_for(lambda: jobs_of(server.rt, ticket_id))


def test_an_invalid_body_is_refused_before_anything_is_stored(server: Server) -> None:
    stamp = int(time.time())
    body = b'{"event": "x"}'
    headers = {
        "X-RH-Timestamp": str(stamp),
        "X-RH-Delivery": "b-1",
        "X-RH-Signature": sign_generic(SECRET.encode(), body, stamp),
    }
    answer = server.client.post("/webhooks/builtin", content=body, headers=headers)
    assert answer.status_code == 400
    assert "ticket_id" in answer.json()["error"]
    assert webhooks.deliveries(server.rt) == []


def test_roles_decide_who_may_approve_and_run(server: Server) -> None:
    tech = server.token("carol", "technician")
    approver = server.token("bob", "approver")
    ticket_id = open_ticket(server.rt, "esx-07", approver=None)
    assert server.client.get("/api/jobs").status_code == 401
    assert server.client.get("/api/jobs", headers={"Authorization": "Bearer rht_nope"}).status_code == 401
    refused = server.client.post(f"/api/tickets/{ticket_id}/approve", headers=tech)
    assert refused.status_code == 403
    assert "approver" in refused.json()["fix"]
    assert server.client.post(f"/api/tickets/{ticket_id}/run", headers=approver).status_code == 403
    assert server.client.post(f"/api/tickets/{ticket_id}/run", headers=tech).status_code == 403  # unapproved
    assert (
        server.client.post(f"/api/tickets/{ticket_id}/approve", headers=approver).json()["approver"] == "bob"
    )
    run = server.client.post(f"/api/tickets/{ticket_id}/run", headers=tech)
    assert run.status_code == 200
    job_id = run.json()["jobs"][0]
    shown = server.client.get(f"/api/jobs/{job_id}", headers=tech).json()
    assert shown["ticket"] == ticket_id
    assert server.client.get("/api/jobs/999999", headers=tech).status_code == 400
    wait_for(lambda: job_state(server.rt, job_id) == "succeeded", timeout=60)


def test_a_job_callback_needs_that_jobs_token_and_is_stored_redacted(server: Server) -> None:
    ticket_id = open_ticket(server.rt, "esx-08")
    approval = server.rt.tickets.approval(ticket_id)
    [job_id] = store.create_jobs_for_ticket(
        server.rt.db, server.rt.tickets.get(ticket_id), approval.approver, "t"
    )
    token = callbacks.issue_token(server.rt.db, job_id)
    body = {"stage": "installer-started", "note": f"token {token} seen"}
    assert server.client.post(f"/callbacks/{job_id}", json=body).status_code == 401
    wrong = server.client.post(f"/callbacks/{job_id}", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    ok = server.client.post(f"/callbacks/{job_id}", json=body, headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 202
    [got] = callbacks.callbacks_of(server.rt.db, job_id)
    assert got["payload"]["stage"] == "installer-started"
    assert token not in json.dumps(got)
    with server.rt.db.session() as s:
        stored = s.get(Job, job_id)
        assert stored is not None and stored.callback_sha256 and token not in stored.callback_sha256


@pytest.mark.parametrize("stamp", ["99999999999999999999", "\u00b9", "-5", "1e9"])
def test_a_webhook_timestamp_that_is_not_epoch_seconds_is_refused_not_a_crash(
    server: Server, stamp: str
) -> None:
    body = b'{"ticket_id": "RH-1"}'
    digits = "".join(c for c in stamp if c.isascii() and c.isdigit()) or "0"
    headers = {
        "X-RH-Timestamp": stamp,
        "X-RH-Delivery": "t-1",
        "X-RH-Signature": sign_generic(SECRET.encode(), body, int(digits)),
    }
    answer = server.client.post(
        "/webhooks/builtin", content=body, headers={k: v.encode("latin-1") for k, v in headers.items()}
    )
    assert answer.status_code == 401
    assert "X-RH-Timestamp" in answer.json()["error"]


@pytest.mark.parametrize("ticket", ["RH-99999999999999999999999", "RH-\u2460", "\u00b2", "RH-\u0663"])
def test_ticket_ids_that_are_not_ascii_numbers_are_not_found(server: Server, ticket: str) -> None:
    tech = server.token("carol", "technician")
    answer = server.client.get(f"/api/tickets/{ticket}", headers=tech)
    assert answer.status_code == 404
    assert "is not a builtin ticket id" in answer.json()["error"]


def test_two_unapproved_tickets_with_the_same_request_each_get_their_comment(server: Server) -> None:
    first = open_ticket(server.rt, "esx-02", approver=None)
    second = open_ticket(server.rt, "esx-02", approver=None)
    server.webhook(first, delivery="same-1")
    server.webhook(second, delivery="same-2")
    for ticket_id in (first, second):
        wait_for(lambda t=ticket_id: webhooks.deliveries(server.rt, t)[0]["state"] == "unapproved")
        assert any("once this ticket is approved" in c.body for c in server.rt.tickets.comments(ticket_id))
