"""What the console pages show, as plain data built from the library (no HTTP here)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from remotehands.alerts.sla import breached
from remotehands.jobs import store
from remotehands.jobs.states import TERMINAL
from remotehands.jobs.tables import Job
from remotehands.jobs.views import job_dict
from remotehands.runtime import Runtime
from remotehands.server.tokens import Caller
from remotehands.tickets.base import Ticket

SENSITIVE = "[sensitive: needs the reveal permission]"
# What a succeeded job says about its host's power afterwards.
POWER_AFTER = {"power.on": "on", "power.cycle": "on", "power.off": "off", "power.soft_off": "off"}


@dataclass(frozen=True)
class QueueRow:
    ticket: Ticket
    sla: str  # breached | met | open | -
    approval: str

    @property
    def title(self) -> str:
        """The queue never shows a sensitive ticket's title (the ticket page does, with reveal)."""
        return SENSITIVE if self.ticket.sensitive else self.ticket.title


def queue(
    rt: Runtime, who: Caller, *, site: str | None = None, severity: int | None = None
) -> list[QueueRow]:
    """Open tickets, Sev1 first then oldest (the builtin queue's order), optionally of one site/severity."""
    rows = []
    at = datetime.now(UTC)
    for ticket in rt.tickets.queue():
        if site and ticket.site != site:
            continue
        if severity and int(ticket.severity) != severity:
            continue
        if breached(ticket.sla_due_at, ticket.responded_at, at):
            sla = "breached"
        elif ticket.responded_at is not None:
            sla = "met"
        else:
            sla = "open" if ticket.sla_due_at else "-"
        approval = f"approved by {ticket.approver}" if ticket.approver else "awaiting approval"
        rows.append(QueueRow(ticket, sla, approval))
    return rows


def ticket_page(rt: Runtime, who: Caller, ticket_id: str) -> dict[str, Any]:
    """A ticket with its trail, attachments and jobs (with steps); content of a sensitive ticket only with
    the reveal permission."""
    reveal = who.may("reveal")
    ticket = rt.tickets.get(ticket_id, reveal=reveal)
    hidden = ticket.sensitive and not reveal
    jobs = []
    with rt.db.session() as s:
        for job in store.jobs_of_ticket(rt.db, ticket.id):
            jobs.append(job_dict(store.get_job(s, job.id), store.steps_of(s, job.id)))
    return {
        "ticket": ticket,
        "hidden": hidden,
        "params": None if hidden or ticket.request is None else ticket.request.params,
        "comments": rt.tickets.comments(ticket.id, reveal=reveal),
        "attachments": [] if hidden else rt.tickets.attachments(ticket.id),
        "jobs": jobs,
        "approval": rt.tickets.approval(ticket.id),
    }


def job_page(rt: Runtime, job_id: int) -> dict[str, Any]:
    """A job with its steps (durations in seconds) and whether it can still change."""
    with rt.db.session() as s:
        job = store.get_job(s, job_id)
        data = job_dict(job, store.steps_of(s, job_id))
        data["updated_at"] = store.aware(job.updated_at)
        data["active"] = job.state not in TERMINAL
        last = data["steps"][-1] if data["steps"] else None
        data["awaiting_confirmation"] = (
            job.state == "waiting"
            and last is not None
            and last["status"] == "waiting"
            and "technician to confirm" in last["result"]
        )
        data["version"] = (
            f"{job.state}:{job.step_index}:{store.aware(job.updated_at).timestamp()}:"
            + ",".join(f"{st['index']}.{st['attempt']}.{st['status']}" for st in data["steps"])
        )
    return data


def job_attachments(rt: Runtime, who: Caller, job: dict[str, Any]) -> list[Any] | None:
    """The attachments of a job's ticket (diffs, session logs), when it lives in the builtin system; None
    when they are hidden (a sensitive ticket, no reveal permission)."""
    if job["ticket_system"] != rt.tickets.name:
        return []
    if rt.tickets.get(job["ticket"], reveal=False).sensitive and not who.may("reveal"):
        return None
    return list(rt.tickets.attachments(job["ticket"]))


@dataclass(frozen=True)
class FleetRow:
    host: str
    kind: str
    power: str  # on | off | unknown: from the host's last job that tells
    last_job: dict[str, Any] | None


def fleet(rt: Runtime) -> dict[str, dict[str, list[FleetRow]]]:
    """Per site and rack, each host with its last known power state and its last job."""
    inventory = rt.inventory()
    last: dict[str, Job] = {}
    power: dict[str, str] = {}
    with rt.db.session() as s:
        for job in s.execute(select(Job).order_by(Job.id)).scalars():
            last[job.target] = job
            if job.state == "succeeded":
                known = POWER_AFTER.get(job.action) or (job.data or {}).get("power_before")
                if job.action.startswith("reimage"):
                    known = "on"
                if known in ("on", "off"):
                    power[job.target] = str(known)
        out: dict[str, dict[str, list[FleetRow]]] = {}
        for name in sorted(inventory.hosts):
            host = inventory.hosts[name]
            latest = last.get(name)
            row = FleetRow(
                name,
                str(getattr(host.kind, "value", host.kind)),
                power.get(name, "unknown"),
                job_dict(latest) if latest is not None else None,
            )
            out.setdefault(str(host.site), {}).setdefault(str(host.rack or "-"), []).append(row)
    return out
