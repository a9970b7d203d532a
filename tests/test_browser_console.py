"""The status page and the operator console in headless Chromium (Debian's, driven by Playwright) against
``remotehands serve``'s app on 127.0.0.1 and the lab. Screenshots of each page are saved as artifacts
(``tests/browser.py``)."""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from playwright.sync_api import expect

from remotehands.config import Settings
from remotehands.jobs import store
from remotehands.jobs.executor import LocalExecutor
from remotehands.lab.process import SITE, LabInfo, start_lab, stop_lab
from remotehands.lab.ticket_sims.harness import ServerThread, free_port
from remotehands.reimage.settings import ImageConfig, ReimageSettings
from remotehands.runtime import Runtime
from remotehands.server import tokens
from remotehands.server.app import create_app
from remotehands.tickets.base import Severity, TicketStatus, parse_builtin_id
from remotehands.tickets.tables import TicketRow
from tests.browser import screenshot
from tests.conftest import job_state, open_ticket

ESXI = ImageConfig(os="esxi", version="8.0.3", build="24022510", iso_url="https://repo.lab/esxi-8.0u3.iso")


@pytest.fixture
def server(app_url: str) -> str:
    return app_url


def login(page: Any, url: str, rt: Runtime, name: str, role: str) -> None:
    page.goto(f"{url}/console/login")
    page.fill("input[name=token]", tokens.create(rt.db, name, role, created_by="test"))
    page.click("button[type=submit]")
    expect(page.locator("#who")).to_have_text(f"{name} ({role})")


def test_status_page_in_the_browser_turns_to_outage_on_a_sev1_and_back_when_it_resolves(
    rt: Runtime, server: str, page
) -> None:
    page.goto(f"{server}/status")
    row = page.locator(f"#site-{SITE}")
    expect(row).to_have_attribute("data-state", "operational")
    expect(page.locator("#overall")).to_have_text("All sites operational")
    screenshot(page, "status-operational")
    ticket = open_ticket(rt, "esx-03", severity=Severity.OUTAGE_MANY, approver=None, title="private words")
    page.reload()
    expect(row).to_have_attribute("data-state", "outage")
    expect(row.locator(".pill")).to_have_text("Outage")
    expect(page.locator(f"#incident-{ticket}")).to_contain_text(f"Outage for many customers at {SITE}")
    expect(page.locator("body")).not_to_contain_text("private words")
    screenshot(page, "status-outage")
    rt.tickets.set_status(ticket, TicketStatus.RESOLVED)
    page.reload()
    expect(row).to_have_attribute("data-state", "operational")
    expect(page.locator(f"#incident-{ticket}")).to_contain_text("resolved")
    screenshot(page, "status-resolved")


def test_console_queue_orders_by_severity_then_age_and_filters(rt: Runtime, server: str, page) -> None:
    page.goto(f"{server}/console/")
    expect(page).to_have_url(re.compile(r"/console/login$"))  # no login, no queue
    screenshot(page, "console-login")
    sev3_old = open_ticket(rt, "esx-01", severity=Severity.DEGRADED, approver=None)
    sev1 = open_ticket(rt, "esx-02", severity=Severity.OUTAGE_MANY, approver=None)
    sev2 = open_ticket(rt, "esx-03", severity=Severity.OUTAGE_ONE)
    sev1_new = open_ticket(rt, "esx-04", severity=Severity.OUTAGE_MANY, approver=None)
    with rt.db.session() as s:  # sev2's response was due a minute ago and nobody answered
        s.get(TicketRow, parse_builtin_id(sev2)).sla_due_at = datetime.now(UTC) - timedelta(minutes=1)
    login(page, server, rt, "tina", "technician")
    rows = page.locator("#queue tr.ticket")
    expect(rows).to_have_count(4)
    assert [rows.nth(i).get_attribute("data-ticket") for i in range(4)] == [sev1, sev1_new, sev2, sev3_old]
    expect(page.locator(f"tr[data-ticket='{sev2}']")).to_contain_text("approved by bob")
    expect(page.locator(f"tr[data-ticket='{sev1}']")).to_contain_text("awaiting approval")
    expect(page.locator(f"tr[data-ticket='{sev2}']")).to_have_class(re.compile(r"\bsla-breached\b"))
    expect(page.locator(f"tr[data-ticket='{sev2}'] .state-breached")).to_have_text("breached")
    expect(page.locator("tr.sla-breached")).to_have_count(1)
    screenshot(page, "console-queue")
    page.select_option("select[name=severity]", "1")
    page.click("form.filters button")
    expect(rows).to_have_count(2)
    assert [rows.nth(i).get_attribute("data-ticket") for i in range(2)] == [sev1, sev1_new]


def test_console_technician_cannot_approve_and_sensitive_content_needs_reveal(
    rt: Runtime, server: str, browser
) -> None:
    ticket = open_ticket(rt, "esx-05", approver=None, sensitive=True, title="Payroll cluster of Acme")
    tech = browser.new_context()
    try:
        page = tech.new_page()
        login(page, server, rt, "tina", "technician")
        page.goto(f"{server}/console/tickets/{ticket}")
        expect(page.locator("#approval")).to_have_text("awaiting approval")
        expect(page.locator("#approve")).to_have_count(0)  # no button for a technician
        expect(page.locator("#ticket-title")).to_contain_text("sensitive")
        expect(page.locator("body")).not_to_contain_text("Payroll")
        screenshot(page, "console-ticket-technician")
        # Posting the approval anyway (with a valid CSRF token) is refused, naming the role that may.
        csrf = page.locator("form.who input[name=csrf]").get_attribute("value")
        refused = page.request.post(f"{server}/console/tickets/{ticket}/approve", form={"csrf": csrf})
        assert refused.status == 403
        assert "tina (technician) may not approve" in refused.text()
        # Without the CSRF token nothing happens either.
        assert page.request.post(f"{server}/console/tickets/{ticket}/approve", form={}).status == 401
        assert not rt.tickets.approval(ticket).approved
    finally:
        tech.close()
    boss = browser.new_context()
    try:
        page = boss.new_page()
        login(page, server, rt, "ada", "admin")
        page.goto(f"{server}/console/tickets/{ticket}")
        expect(page.locator("#ticket-title")).to_have_text("Payroll cluster of Acme")  # admin may reveal
        page.click("#approve")
        expect(page.locator("#approval")).to_contain_text("approved by ada")
        screenshot(page, "console-ticket-admin")
    finally:
        boss.close()
    assert rt.tickets.approval(ticket).approver == "ada"


# -- live job pages against jobs that run ------------------------------------------------------------------


@dataclass
class Site:
    url: str
    rt: Runtime
    lab: LabInfo


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A lab of its own (a reimage changes a host's key): esx-01 reimages over PXE, esx-02 has manual power;
    the server answers the installer's callbacks; the test runs the jobs with a local executor."""
    where = tmp_path_factory.mktemp("console-lab")
    lab = start_lab(where / "lab", hosts=2, redfish=0, macs=0, cycle_delay=0.5)
    inventory = where / "inventory"
    shutil.copytree(lab.inventory_dir, inventory)
    data = yaml.safe_load((inventory / "hosts.yml").read_text())
    data["all"]["children"][SITE]["children"][f"{SITE}_r1"]["hosts"]["esx-02"]["power"] = {"type": "manual"}
    (inventory / "hosts.yml").write_text(yaml.safe_dump(data))
    port = free_port("127.0.0.1")
    rt = Runtime(
        Settings(
            db_url=f"sqlite:///{where / 'rh.db'}",
            inventory=inventory,
            log_file=where / "rh.log",
            lease_seconds=30,
            images={"esxi-8u3": ESXI},
            reimage=ReimageSettings(
                callback_url=f"http://127.0.0.1:{port}",
                install_config_dir=Path(str(lab.install_dir)),
                install_deadline_minutes=2,
                callback_deadline_minutes=2,
            ),
        )
    )
    thread = ServerThread(create_app(rt, engine=False), port=port).start()
    try:
        yield Site(thread.url, rt, lab)
    finally:
        thread.stop()
        rt.db.dispose()
        stop_lab(where / "lab")


def _job(rt: Runtime, host: str, action: str, **params: object) -> int:
    ticket_id = open_ticket(rt, host, action=action, severity=Severity.DEGRADED, params=params)
    [job_id] = store.create_jobs_for_ticket(
        rt.db, rt.tickets.get(ticket_id), "bob", "test", inventory=rt.inventory()
    )
    return job_id


class Running:
    """A local executor running the site's jobs in a thread until stopped."""

    def __init__(self, rt: Runtime) -> None:
        self.executor = LocalExecutor(rt, poll=0.05)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.executor.run_until, args=(self.stop.is_set,), daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)
        self.executor.shutdown()


def test_console_job_page_follows_a_lab_reimage_live_without_a_reload(site: Site, page) -> None:
    job_id = _job(site.rt, "esx-01", "reimage", image="esxi-8u3")
    login(page, site.url, site.rt, "tina", "technician")
    page.goto(f"{site.url}/console/jobs/{job_id}")
    state = page.locator("#job-state")
    expect(state).to_have_attribute("data-state", "queued")
    expect(page.locator("tr.step")).to_have_count(0)
    page.evaluate("window.notReloaded = true")
    with Running(site.rt):
        expect(page.locator("tr.step").first).to_be_visible()  # steps appear while it runs
        expect(state).to_have_attribute("data-state", "succeeded", timeout=60_000)
    assert page.evaluate("window.notReloaded") is True  # the same page, updated over server-sent events
    assert int(page.locator("#live").get_attribute("data-updates")) >= 2
    expect(page.locator("#live")).to_have_attribute("data-done", "true")
    with site.rt.db.session() as s:
        names = [st.name for st in store.steps_of(s, job_id) if st.status == "done"]
    shown = page.locator("tr.step-done td:nth-child(2)").all_text_contents()
    assert shown == names and len(names) >= 5
    expect(page.locator("#cancel")).to_have_count(0)  # an ended job has no buttons
    screenshot(page, "console-job-reimage")


def test_console_confirm_and_cancel_buttons_drive_manual_jobs(site: Site, page) -> None:
    login(page, site.url, site.rt, "tina", "technician")
    with Running(site.rt):
        confirmed = _job(site.rt, "esx-02", "power.cycle")
        page.goto(f"{site.url}/console/jobs/{confirmed}")
        expect(page.locator("#confirm")).to_be_visible(timeout=30_000)  # shown live once it waits
        screenshot(page, "console-job-waiting")
        page.click("#confirm")
        expect(page.locator("#job-state")).to_have_attribute("data-state", "succeeded", timeout=30_000)
        cancelled = _job(site.rt, "esx-02", "power.cycle")
        page.goto(f"{site.url}/console/jobs/{cancelled}")
        expect(page.locator("#confirm")).to_be_visible(timeout=30_000)
        page.click("#cancel")
        expect(page.locator("#job-state")).to_have_attribute("data-state", "cancelled", timeout=30_000)
    assert job_state(site.rt, confirmed) == "succeeded" and job_state(site.rt, cancelled) == "cancelled"
    with site.rt.db.session() as s:
        assert store.get_job(s, confirmed).confirmed_by == "tina"
        ticket_id = store.get_job(s, confirmed).ticket_id
    site.rt.tickets.attach(ticket_id, "session-log.txt", b"esx-02# show run\nhostname esx-02 <ok>\n")
    page.goto(f"{site.url}/console/jobs/{confirmed}")
    page.click("#attachments a")
    expect(page.locator("body")).to_contain_text("hostname esx-02 <ok>")  # served as text, not HTML
    page.goto(f"{site.url}/console/fleet")
    expect(page.locator("#host-esx-02")).to_contain_text("cancelled")
    screenshot(page, "console-fleet")
