"""The status page and the operator console in headless Chromium (Debian's, driven by Playwright) against
``remotehands serve``'s app on 127.0.0.1 and the lab. Screenshots of each page are saved as artifacts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from remotehands.lab.process import SITE
from remotehands.lab.ticket_sims.harness import ServerThread
from remotehands.runtime import Runtime
from remotehands.server.app import create_app
from remotehands.tickets.base import Severity, TicketStatus
from tests.browser import screenshot
from tests.conftest import open_ticket


@pytest.fixture
def server(rt: Runtime) -> Iterator[str]:
    thread = ServerThread(create_app(rt, engine=False)).start()
    try:
        yield thread.url
    finally:
        thread.stop()


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
