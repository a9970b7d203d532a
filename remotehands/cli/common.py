"""Shared CLI pieces: the runtime, who the user is, ticket rendering."""

from __future__ import annotations

import getpass
import os

from remotehands.alerts.sla import breached
from remotehands.cli.output import SafeTable, console
from remotehands.runtime import Runtime
from remotehands.tickets.base import Ticket


def runtime() -> Runtime:
    return Runtime()


def current_user() -> str:
    return os.environ.get("RH_USER") or getpass.getuser()


def ticket_table(tickets: list[Ticket], title: str) -> SafeTable:
    table = SafeTable(title=title)
    for col in ("id", "sev", "type", "status", "site", "customer", "action", "targets", "title", "received"):
        table.add_column(col)
    for t in tickets:
        table.add_row(
            t.id,
            f"Sev{int(t.severity)}",
            t.type.value,
            t.status.value,
            t.site,
            t.customer,
            t.request.action if t.request else "-",
            ",".join(t.request.targets) if t.request else "-",
            t.title,
            t.received_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    return table


def queue_table(tickets: list[Ticket]) -> SafeTable:
    """The work queue: what is due when, breaches first to the eye; fewer columns than the list."""
    table = SafeTable(title="queue (Sev1 first, then oldest)")
    table.add_column("id", no_wrap=True)
    table.add_column("sev", no_wrap=True)
    table.add_column("sla", no_wrap=True, min_width=8)
    table.add_column("due (UTC)", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("esc", no_wrap=True)
    table.add_column("site")
    table.add_column("title")
    for t in tickets:
        if breached(t.sla_due_at, t.responded_at):
            mark = "BREACHED"
        elif t.responded_at is not None:
            mark = "met"
        else:
            mark = "open" if t.sla_due_at else "-"
        table.add_row(
            t.id,
            f"Sev{int(t.severity)}",
            mark,
            t.sla_due_at.strftime("%m-%d %H:%M") if t.sla_due_at else "-",
            t.status.value,
            f"L{t.escalation_level}" if t.escalation_level else "-",
            t.site,
            t.title,
        )
    return table


def print_table(table: SafeTable) -> None:
    console.print(table)
