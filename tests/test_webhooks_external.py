"""Signed Jira and Zendesk webhooks through the server on 127.0.0.1, against the ticket systems'
simulators: one job per request, approval read at the source (and revoked mid-job), the trail written back
coalesced, and a ticket system outage that loses nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select

from remotehands.config import Settings, TicketSystemConfig
from remotehands.intake import webhooks
from remotehands.intake.signatures import sign_jira, sign_zendesk
from remotehands.jobs import outbox, store
from remotehands.jobs.tables import OutboxEvent
from remotehands.lab.process import LabInfo
from remotehands.lab.ticket_sims.harness import ServerThread
from remotehands.lab.ticket_sims.jira import JiraSim
from remotehands.lab.ticket_sims.zendesk import ZendeskSim
from remotehands.runtime import Runtime
from remotehands.server.app import create_app
from remotehands.tickets.base import TaskRequest
from tests.conftest import job_state
from tests.test_server import wait_for
from tests.tickets_contract import target_jira as tj
from tests.tickets_contract import target_zendesk as tz

SETTLED = ("succeeded", "failed", "cancelled", "needs_operator")
JIRA_SECRET = "jira-webhook-secret-1a2b3c"
ZD_SECRET = "zendesk-webhook-secret-4d5e6f"


@dataclass
class World:
    client: httpx.Client
    rt: Runtime
    jira: JiraSim
    jira_server: ServerThread
    zendesk: ZendeskSim

    def jira_webhook(self, key: str, delivery: str) -> httpx.Response:
        body = json.dumps(
            {
                "timestamp": int(time.time() * 1000),
                "webhookEvent": "jira:issue_updated",
                "issue": {"key": key},
            }
        ).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature": sign_jira(JIRA_SECRET.encode(), body),
            "X-Atlassian-Webhook-Identifier": delivery,
        }
        return self.client.post("/webhooks/jira", content=body, headers=headers)

    def zendesk_webhook(self, ticket_id: str, delivery: str) -> httpx.Response:
        body = json.dumps({"ticket_id": ticket_id, "event": "approval changed"}).encode()
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        headers = {
            "Content-Type": "application/json",
            "X-Zendesk-Webhook-Signature": sign_zendesk(ZD_SECRET.encode(), body, stamp),
            "X-Zendesk-Webhook-Signature-Timestamp": stamp,
            "X-Zendesk-Webhook-Invocation-Id": delivery,
        }
        return self.client.post("/webhooks/zendesk", content=body, headers=headers)


@pytest.fixture
def world(tmp_path, lab: LabInfo, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    # The coalescing window is a clock: shortened so a test does not wait ten seconds for the trail (a
    # lab power cycle takes 2-3 s, so its comments still fall into one or two windows).
    monkeypatch.setattr(outbox, "COALESCE", timedelta(seconds=4))
    for name, value in {
        "RH_T_JIRA_TOKEN": tj.TOKEN,
        "RH_T_JIRA_WH": JIRA_SECRET,
        "RH_T_ZD_TOKEN": tz.TOKEN,
        "RH_T_ZD_WH": ZD_SECRET,
    }.items():
        monkeypatch.setenv(name, value)
    jira = JiraSim(user=tj.USER, token=tj.TOKEN)
    zendesk = ZendeskSim(user=tz.USER, token=tz.TOKEN)
    jira_server = ServerThread(jira.app).start()
    zendesk_server = ServerThread(zendesk.app).start()
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'rh.db'}",
        inventory=lab.inventory_dir,
        log_file=tmp_path / "rh.log",
        lease_seconds=30,
        ticket_systems={
            "jira": TicketSystemConfig(
                kind="jira",
                url=jira_server.url,
                user=tj.USER,
                token="env:RH_T_JIRA_TOKEN",
                webhook_secret="env:RH_T_JIRA_WH",
                fields=tj.FIELDS,
            ),
            "zendesk": TicketSystemConfig(
                kind="zendesk",
                url=zendesk_server.url,
                user=tz.USER,
                token="env:RH_T_ZD_TOKEN",
                webhook_secret="env:RH_T_ZD_WH",
                fields=tz.FIELDS,
                options=tz.OPTIONS,
            ),
        },
    )
    rt = Runtime(settings)
    app = ServerThread(create_app(rt)).start()
    try:
        with httpx.Client(base_url=app.url, timeout=10) as client:
            yield World(client, rt, jira, jira_server, zendesk)
    finally:
        app.stop()
        jira_server.stop()
        zendesk_server.stop()
        rt.db.dispose()


def cycle(host: str, **params: object) -> TaskRequest:
    return TaskRequest(action="power.cycle", targets=(host,), params=params)


def test_signed_jira_and_zendesk_webhooks_each_make_one_job_and_write_the_trail_back(world: World) -> None:
    key = tj.seed_jira(world.jira, request=cycle("esx-01"))
    world.jira.set_approval(key, "approved", "bob")
    # Two protocols at once (IPMI and Redfish): the two jobs run side by side.
    zd = tz.seed_zendesk(world.zendesk, request=cycle("rf-01"), via_fields=False)
    tz.set_approval(world.zendesk, zd, "approved", "bob")
    for _ in range(3):  # re-sent deliveries
        assert world.jira_webhook(key, "jira-dlv-1").status_code == 202
        assert world.zendesk_webhook(zd, "zd-dlv-1").status_code == 202
    jira_jobs = wait_for(lambda: store.jobs_of_ticket(world.rt.db, key))
    zd_jobs = wait_for(lambda: store.jobs_of_ticket(world.rt.db, zd))
    assert len(jira_jobs) == len(zd_jobs) == 1
    assert (jira_jobs[0].ticket_system, zd_jobs[0].ticket_system) == ("jira", "zendesk")
    for job in (jira_jobs[0], zd_jobs[0]):
        wait_for(lambda job=job: job_state(world.rt, job.id) in SETTLED, timeout=60)
        with world.rt.db.session() as s:
            done = store.get_job(s, job.id)
            assert done.state == "succeeded", done.reason
    # The trail reaches each system: internal comments, coalesced (fewer comments than steps), resolved.
    wait_for(lambda: world.jira.status(key) == "Resolved", timeout=30)
    wait_for(lambda: world.zendesk.status(zd) == "solved", timeout=30)
    ours = [(b, internal) for b, internal in world.jira.comments(key) if "[remotehands:" in b]
    assert ours and all(internal is False or internal is True for _, internal in ours)
    assert all(internal for _, internal in ours)
    with world.rt.db.session() as s:
        events = s.execute(
            select(OutboxEvent.id).where(OutboxEvent.ticket_id == key, OutboxEvent.kind == "comment")
        ).all()
    assert len(events) >= 5
    assert len(ours) <= 2  # step comments written close together arrive as one
    assert any("succeeded" in b for b, _ in ours)
    assert any("succeeded" in b for b, _ in world.zendesk.comments(zd))


def test_an_unapproved_external_ticket_gets_a_comment_and_no_job(world: World) -> None:
    key = tj.seed_jira(world.jira, request=cycle("esx-03"))
    assert world.jira_webhook(key, "jira-u-1").status_code == 202
    wait_for(lambda: webhooks.deliveries(world.rt, key)[0]["state"] == "unapproved")
    assert store.jobs_of_ticket(world.rt.db, key) == []
    assert any("once this ticket is approved" in b for b, _ in world.jira.comments(key))


def test_an_invalid_request_gets_a_comment_that_says_what_is_wrong(world: World) -> None:
    key = tj.seed_jira(
        world.jira, request=None, description="```remotehands\naction: power.cycle\nhsots: [esx-03]\n```"
    )
    world.jira.set_approval(key, "approved", "bob")
    world.jira_webhook(key, "jira-i-1")
    wait_for(lambda: webhooks.deliveries(world.rt, key)[0]["state"] == "invalid")
    [comment] = [b for b, _ in world.jira.comments(key) if "cannot act" in b]
    assert "hsots" in comment
    assert store.jobs_of_ticket(world.rt.db, key) == []


def test_a_new_request_on_the_same_ticket_is_new_work(world: World) -> None:
    key = tj.seed_jira(world.jira, request=cycle("esx-04"))
    world.jira.set_approval(key, "approved", "bob")
    world.jira_webhook(key, "jira-n-1")
    [first] = wait_for(lambda: store.jobs_of_ticket(world.rt.db, key))
    wait_for(lambda: job_state(world.rt, first.id) == "succeeded", timeout=60)
    world.jira.set_field(key, tj.HOSTS, ["esx-03"])  # the customer asks for another host on the same ticket
    world.jira_webhook(key, "jira-n-2")
    jobs = wait_for(lambda: [j for j in store.jobs_of_ticket(world.rt.db, key) if j.target == "esx-03"])
    assert len(store.jobs_of_ticket(world.rt.db, key)) == 2
    wait_for(lambda: job_state(world.rt, jobs[0].id) == "succeeded", timeout=60)


def test_approval_declined_in_jira_mid_job_cancels_it(world: World, lab: LabInfo) -> None:
    key = tj.seed_jira(world.jira, request=cycle("mac-01", off_seconds=3))
    world.jira.set_approval(key, "approved", "bob")
    world.jira_webhook(key, "jira-r-1")
    [job] = wait_for(lambda: store.jobs_of_ticket(world.rt.db, key))

    def dwelling() -> bool:
        with world.rt.db.session() as s:
            current = store.get_job(s, job.id)
            return current.state == "waiting" and "stays off" in (current.reason or "")

    wait_for(dwelling, timeout=30)
    world.jira.set_approval(key, "declined", "bob")
    wait_for(lambda: job_state(world.rt, job.id) == "cancelled", timeout=30)
    wait_for(lambda: any("no longer approved" in b for b, _ in world.jira.comments(key)), timeout=30)
    # Leave the lab Mac on for later tests.
    from remotehands.bmc.base import PowerAction, perform_and_confirm

    driver = world.rt.power_driver(world.rt.inventory().host("mac-01"))
    try:
        perform_and_confirm(driver, PowerAction.ON, timeout=10)
    finally:
        driver.close()


def test_a_ticket_system_outage_loses_nothing(world: World) -> None:
    key = tj.seed_jira(world.jira, request=cycle("esx-06"))
    world.jira.set_approval(key, "approved", "bob")
    world.jira_webhook(key, "jira-o-1")
    [job] = wait_for(lambda: store.jobs_of_ticket(world.rt.db, key))
    port = world.jira_server.port
    world.jira_server.stop()  # Jira goes away: the trail cannot be written (nor approval re-read)

    def failed_deliveries() -> list[object]:
        with world.rt.db.session() as s:
            return list(
                s.execute(
                    select(OutboxEvent.id).where(OutboxEvent.ticket_id == key, OutboxEvent.last_error != "")
                ).all()
            )

    wait_for(failed_deliveries, timeout=40)
    assert outbox.pending(world.rt.db, key) > 0
    world.jira_server = ServerThread(world.jira.app, port=port).start()
    wait_for(lambda: job_state(world.rt, job.id) == "succeeded", timeout=90)
    wait_for(lambda: outbox.pending(world.rt.db, key) == 0, timeout=60)
    ours = [b for b, _ in world.jira.comments(key) if "[remotehands:" in b]
    assert any("succeeded" in b for b in ours)
    assert world.jira.status(key) == "Resolved"
