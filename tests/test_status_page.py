"""The public status page over HTTP (/status.json, /status) and its maintenance windows from the CLI: per site
Operational / Degraded / Outage from open Sev1/Sev2 tickets, nothing private on the page, bad input named."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from remotehands.lab.process import SITE
from remotehands.lab.ticket_sims.harness import ServerThread
from remotehands.runtime import Runtime
from remotehands.server.app import create_app
from remotehands.status import maintenance, summary
from remotehands.tickets.base import Severity, TicketStatus
from tests.conftest import open_ticket

PRIVATE = "Acme payroll cluster down, call Jane on +31 6 1234 5678"


@pytest.fixture
def client(rt: Runtime) -> Iterator[httpx.Client]:
    thread = ServerThread(create_app(rt, engine=False)).start()
    try:
        with httpx.Client(base_url=thread.url, timeout=10) as c:
            yield c
    finally:
        thread.stop()


def _site(client: httpx.Client) -> dict[str, object]:
    body = client.get("/status.json").json()
    [site] = [c for c in body["components"] if c["id"] == SITE]
    return {"status": site["status"], "indicator": body["status"]["indicator"], "body": body}


def test_status_page_follows_open_sev1_and_sev2_tickets_and_shows_nothing_private(
    rt: Runtime, client: httpx.Client
) -> None:
    assert _site(client)["status"] == "operational"
    assert _site(client)["indicator"] == "none"
    sev2 = open_ticket(rt, "esx-02", severity=Severity.OUTAGE_ONE, title=PRIVATE, approver=None)
    seen = _site(client)
    assert (seen["status"], seen["indicator"]) == ("partial_outage", "major")
    sev1 = open_ticket(rt, "esx-03", severity=Severity.OUTAGE_MANY, title=PRIVATE, approver=None)
    seen = _site(client)
    assert (seen["status"], seen["indicator"]) == ("major_outage", "critical")
    incidents = {i["id"]: i for i in seen["body"]["incidents"]}  # type: ignore[index]
    assert incidents[sev1]["status"] == "investigating" and incidents[sev1]["impact"] == "critical"
    assert incidents[sev1]["name"] == f"Outage for many customers at {SITE}"
    page = client.get("/status")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert "Outage" in page.text and sev1 in page.text
    for text in (json.dumps(seen["body"]), page.text):
        assert (
            "Acme" not in text and "Jane" not in text and "acme" not in text
        )  # title and customer stay private
    rt.tickets.set_status(sev1, TicketStatus.RESOLVED)
    seen = _site(client)
    assert seen["status"] == "partial_outage"  # the Sev2 is still open
    incidents = {i["id"]: i for i in seen["body"]["incidents"]}  # type: ignore[index]
    assert incidents[sev1]["status"] == "resolved" and incidents[sev1]["resolved_at"]
    rt.tickets.set_status(sev2, TicketStatus.CLOSED)
    assert _site(client)["status"] == "operational"
    # A Sev3 (degradation) does not change the public status.
    open_ticket(rt, "esx-04", severity=Severity.DEGRADED, approver=None)
    assert _site(client)["status"] == "operational"


def test_incidents_older_than_a_week_leave_the_status_page(rt: Runtime) -> None:
    ticket = open_ticket(rt, "esx-02", severity=Severity.OUTAGE_MANY, approver=None)
    rt.tickets.set_status(ticket, TicketStatus.RESOLVED)
    sites = [SITE]
    assert [i.ticket for i in summary.summary(rt.db, sites).incidents] == [ticket]
    later = datetime.now(UTC) + timedelta(days=summary.RECENT_DAYS, minutes=1)
    assert summary.summary(rt.db, sites, at=later).incidents == []


def test_status_page_maintenance_windows_from_the_cli(cli, rt: Runtime) -> None:
    start = datetime.now(UTC) - timedelta(minutes=5)
    end = start + timedelta(hours=2)
    code, out, err = cli(
        "status", "maintenance", "add", "--site", SITE, "--start", start.isoformat(), "--end", end.isoformat(),
        "--title", "Core switch firmware", "--json",
    )  # fmt: skip
    assert code == 0, err
    window_id = json.loads(out)["id"]
    code, out, _ = cli("status", "--json")
    body = json.loads(out)
    [listed] = body["scheduled_maintenances"]
    assert (listed["name"], listed["status"], listed["components"]) == (
        "Core switch firmware",
        "in_progress",
        [SITE],
    )
    [site] = [c for c in body["components"] if c["id"] == SITE]
    assert site["status"] == "under_maintenance"
    code, out, _ = cli("status", "maintenance", "list", "--json")
    assert code == 0 and [(w["id"], w["title"]) for w in json.loads(out)] == [
        (window_id, "Core switch firmware")
    ]
    code, out, _ = cli("status", "maintenance", "list")
    assert code == 0 and "in_progress" in out
    assert cli("status", "maintenance", "remove", str(window_id))[0] == 0
    assert maintenance.listing(rt.db, include_past=True) == []
    code, _, err = cli("status", "maintenance", "remove", str(window_id))
    assert code == 2 and f"no maintenance window {window_id}" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--site", "nowhere"], "--site: no site 'nowhere'"),
        (["--start", "next tuesday"], "--start: 'next tuesday' is not a time"),
        (["--end", "2020-01-01T00:00Z", "--start", "2019-12-31T00:00Z"], "--end 2020-01-01T00:00:00+00:00 has already passed"),
        (["--end", "2099-01-01T00:00Z", "--start", "2099-01-02T00:00Z"], "is not after --start"),
        (["--title", "  "], "--title: 0 characters"),
    ],
)  # fmt: skip
def test_status_page_maintenance_bad_input_is_named_and_stores_nothing(
    cli, rt: Runtime, flags: list[str], named: str
) -> None:
    given = {"--site": SITE, "--start": "2099-01-01T00:00Z", "--end": "2099-01-01T02:00Z", "--title": "x"}
    for flag, value in zip(flags[::2], flags[1::2], strict=True):
        given[flag] = value
    args = [part for pair in given.items() for part in pair]
    code, _, err = cli("status", "maintenance", "add", *args)
    assert code == 2 and named in err and "Traceback" not in err, err
    assert maintenance.listing(rt.db, include_past=True) == []
