"""Shared CLI pieces: the runtime, who the user is, ticket rendering."""

from __future__ import annotations

import getpass
import os

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
            t.request.action,
            ",".join(t.request.targets),
            t.title,
            t.received_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    return table


def print_table(table: SafeTable) -> None:
    console.print(table)
