"""Alerts open tickets (one per Alertmanager group), severity rules, the SLA clock, escalation and
remediation policies; through the server on 127.0.0.1 where an HTTP caller is involved."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import update

from remotehands.alerts.escalation import check_sla
from remotehands.alerts.settings import AlertSettings, RemediationPolicy, SeverityRule, SlaSettings
from remotehands.alerts.severity import severity_of
from remotehands.alerts.sla import breached, due_at
from remotehands.config import Settings
from remotehands.jobs import outbox, store
from remotehands.jobs.states import JobEvent
from remotehands.lab.process import LabInfo, read_outlet_log
from remotehands.lab.ticket_sims.harness import ServerThread
from remotehands.runtime import Runtime
from remotehands.server.app import create_app
from remotehands.tickets.base import Severity, TicketStatus, TicketType
from remotehands.tickets.tables import TicketRow
from tests.conftest import job_state, open_ticket
from tests.test_server import wait_for

AMS = "Europe/Amsterdam"
TOKEN = "am-bearer-token-0123456789"
SLA = SlaSettings(holidays=(date(2026, 12, 25),))


def ams(*args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(AMS))  # type: ignore[misc]


@pytest.mark.parametrize(
    ("received", "severity", "due"),
    [
        (ams(2026, 11, 27, 23, 0), Severity.OUTAGE_MANY, ams(2026, 11, 28, 3, 0)),  # 4 h, even on Saturday
        (ams(2026, 11, 27, 15, 0), Severity.DEGRADED, ams(2026, 11, 30, 8, 0)),  # Friday -> Monday 08:00
        (ams(2026, 11, 30, 1, 0), Severity.FALSE_ALARM, ams(2026, 12, 1, 8, 0)),  # Monday 01:00 -> Tuesday
        (ams(2026, 12, 24, 9, 0), Severity.REDUNDANCY_LOST, ams(2026, 12, 28, 8, 0)),  # holiday + weekend
        (ams(2026, 3, 27, 12, 0), Severity.DEGRADED, ams(2026, 3, 30, 8, 0)),  # across the DST change
    ],
)
def test_sla_due_times(received: datetime, severity: Severity, due: datetime) -> None:
    got = due_at(received.astimezone(UTC), severity, AMS, SLA)
    assert got == due.astimezone(UTC)
    assert got.tzinfo == UTC


def test_sla_is_breached_only_without_a_timely_response() -> None:
    due = datetime(2026, 1, 1, 8, tzinfo=UTC)
    assert breached(due, None, now=due + timedelta(seconds=1))
    assert not breached(due, None, now=due - timedelta(seconds=1))
    assert not breached(due, due - timedelta(minutes=5), now=due + timedelta(days=1))
    assert breached(due, due + timedelta(minutes=5))


def test_severity_rules_first_match_wins_with_regex_values() -> None:
    settings = AlertSettings(
        severity_rules=(
            SeverityRule(match={"severity": "critical", "scope": "site"}, severity=1),
            SeverityRule(match={"severity": "~crit.*"}, severity=2),
        ),
        default_severity=4,
    )
    assert severity_of({"severity": "critical", "scope": "site"}, settings)[0] == Severity.OUTAGE_MANY
    assert severity_of({"severity": "critical"}, settings)[0] == Severity.OUTAGE_ONE
    sev, why = severity_of({"severity": "warning"}, settings)
    assert sev == Severity.REDUNDANCY_LOST and "default" in why


def notification(
    group: str, *alerts: tuple[str, str, dict[str, str]], status: str = "firing"
) -> dict[str, object]:
    """An Alertmanager v4 notification: alerts as (alertname, status, extra labels)."""
    return {
        "version": "4",
        "groupKey": group,
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "remotehands",
        "groupLabels": {"alertname": alerts[0][0]},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": [
            {
                "status": st,
                "labels": {"alertname": name, **labels},
                "annotations": {"summary": f"{name} on {labels.get('host', '?')}"},
                "startsAt": "2026-11-26T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://127.0.0.1:9090/graph",
                "fingerprint": f"fp-{name}-{labels.get('host', '')}",
            }
            for name, st, labels in alerts
        ],
    }


@pytest.fixture
def alert_server(
    tmp_path, lab: LabInfo, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[httpx.Client, Runtime]]:
    monkeypatch.setenv("RH_TEST_AM_TOKEN", TOKEN)
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'rh.db'}",
        inventory=lab.inventory_dir,
        log_file=tmp_path / "rh.log",
        lease_seconds=30,
        alertmanager_token="env:RH_TEST_AM_TOKEN",
        alerts=AlertSettings(
            remediation=(
                RemediationPolicy(
                    name="hung-macs",
                    alert="HostDown",
                    kinds=("mac-mini",),
                    action="power.cycle",
                    params={"off_seconds": 0.2},
                    window_minutes=60,
                ),
            )
        ),
    )
    rt = Runtime(settings)
    thread = ServerThread(create_app(rt)).start()
    try:
        with httpx.Client(
            base_url=thread.url, timeout=10, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as client:
            yield client, rt
    finally:
        thread.stop()
        rt.db.dispose()


def test_an_alert_group_sent_twice_and_by_both_ha_peers_makes_one_ticket(alert_server) -> None:
    client, rt = alert_server
    body = notification(
        '{}:{alertname="DiskDegraded"}',
        ("DiskDegraded", "firing", {"host": "esx-02", "severity": "critical"}),
    )
    # Both Alertmanagers of an HA pair send the group at the same moment, then one re-sends it.
    results: list[httpx.Response] = []
    threads = [
        threading.Thread(target=lambda: results.append(client.post("/alerts/alertmanager", json=body)))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.append(client.post("/alerts/alertmanager", json=body))
    assert [r.status_code for r in results] == [202, 202, 202]
    assert sorted(r.json()["outcome"] for r in results) == ["opened", "unchanged", "unchanged"]
    ticket_id = results[0].json()["ticket"]
    assert {r.json()["ticket"] for r in results} == {ticket_id}
    tickets = rt.tickets.queue()
    assert [t.id for t in tickets if t.type is TicketType.MONITORING_ALERT] == [ticket_id]
    ticket = rt.tickets.get(ticket_id)
    assert ticket.severity == Severity.OUTAGE_ONE  # critical without scope=site: Sev2 by the default rules
    assert ticket.site == "lab1"
    assert ticket.sla_due_at is not None
    assert abs((ticket.sla_due_at - ticket.received_at) - timedelta(hours=4)) < timedelta(seconds=1)
    assert "severity rule 2" in ticket.description
    resolved = notification(
        '{}:{alertname="DiskDegraded"}',
        ("DiskDegraded", "resolved", {"host": "esx-02", "severity": "critical"}),
        status="resolved",
    )
    assert client.post("/alerts/alertmanager", json=resolved).json()["outcome"] == "resolved"
    assert any("Alert group resolved" in c.body for c in rt.tickets.comments(ticket_id))


def test_alerts_need_the_bearer_token_and_a_v4_payload(alert_server) -> None:
    client, rt = alert_server
    body = notification("g", ("X", "firing", {"host": "esx-02"}))
    assert httpx.post(f"{client.base_url}/alerts/alertmanager", json=body).status_code == 401
    wrong = client.post("/alerts/alertmanager", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    bad = client.post("/alerts/alertmanager", json={**body, "version": "3"})
    assert bad.status_code == 400 and "version" in bad.json()["error"]
    assert rt.tickets.queue() == []


def test_a_remediation_policy_cycles_a_hung_mac_once_per_window(alert_server, lab: LabInfo) -> None:
    client, rt = alert_server
    start = len(read_outlet_log(lab.log_path, lab.macs["mac-01"]))
    down = notification("g-mac", ("HostDown", "firing", {"host": "mac-01", "severity": "critical"}))
    answer = client.post("/alerts/alertmanager", json=down).json()
    ticket_id = answer["ticket"]
    [done] = answer["remediation"]
    assert done["done"] == "job" and done["policy"] == "hung-macs"
    wait_for(lambda: job_state(rt, done["job"]) == "succeeded", timeout=60)
    ticket = rt.tickets.get(ticket_id)
    assert ticket.approver == "policy:hung-macs"
    commands = [e["command"] for e in read_outlet_log(lab.log_path, lab.macs["mac-01"])[start:]]
    assert commands == ["outlet_off", "outlet_on"]
    wait_for(lambda: any("POLICY-APPROVED" in c.body for c in rt.tickets.comments(ticket_id)))
    # The Mac goes down again within the hour: no second cycle, a technician is called instead.
    again = client.post(
        "/alerts/alertmanager", json=notification("g-mac-2", ("HostDown", "firing", {"host": "mac-01"}))
    ).json()
    assert [r["done"] for r in again["remediation"]] == ["escalated"]
    second = rt.tickets.get(again["ticket"])
    assert second.escalation_level == 1 and second.assignee_group == "dc-shift-leads"
    assert len(read_outlet_log(lab.log_path, lab.macs["mac-01"])[start:]) == 2


def test_a_breached_sla_escalates_once(rt: Runtime) -> None:
    ticket_id = open_ticket(rt, "esx-03", approver=None, severity=Severity.DEGRADED)
    assert check_sla(rt) == []
    with rt.db.session() as s:  # the clock: the ticket's response time passed an hour ago
        s.execute(update(TicketRow).values(sla_due_at=datetime.now(UTC) - timedelta(hours=1)))
    assert check_sla(rt) == [ticket_id]
    assert check_sla(rt) == []
    ticket = rt.tickets.get(ticket_id)
    assert ticket.escalation_level == 1
    assert ticket.status is TicketStatus.NEEDS_ATTENTION
    assert any("SLA breached" in c.body for c in rt.tickets.comments(ticket_id))


def test_a_job_that_needs_an_operator_escalates_its_ticket(rt: Runtime) -> None:
    ticket_id = open_ticket(rt, "esx-04")
    [job_id] = store.create_jobs_for_ticket(rt.db, rt.tickets.get(ticket_id), "bob", "test")
    with rt.db.session() as s:
        job = store.get_job(s, job_id, lock=True)
        store.transition(s, job, JobEvent.START)
        store.finish(s, job, JobEvent.ESCALATE, "the cycle may have been sent twice; check the host")
    outbox.deliver(rt.db, rt.ticket_system)
    ticket = rt.tickets.get(ticket_id)
    assert ticket.escalation_level == 1
    trail = [c.body for c in rt.tickets.comments(ticket_id)]
    assert any(b.startswith("ESCALATED to level 1, assigned to dc-shift-leads") for b in trail)


def test_the_queue_shows_sla_due_and_breaches(rt: Runtime, cli) -> None:
    ticket_id = open_ticket(rt, "esx-05", approver=None, severity=Severity.OUTAGE_MANY)
    code, out, _ = cli("tickets", "queue", "--json")
    [row] = [r for r in json.loads(out) if r["id"] == ticket_id]
    assert row["sla_breached"] is False and row["sla_due_at"]
    with rt.db.session() as s:
        s.execute(update(TicketRow).values(sla_due_at=datetime.now(UTC) - timedelta(minutes=1)))
    code, out, _ = cli("tickets", "queue")
    assert code == 0 and "BREACHED" in out
