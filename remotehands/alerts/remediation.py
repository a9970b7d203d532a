"""Remediation policies: a named alert on a named group of hosts may make a pre-approved job, e.g. HostDown
on a Mac -> power.cycle, at most once per host per window. The ticket says it was policy-approved and by
which policy; a host the policy already acted on within the window is left to a technician (escalated),
because cycling it again would only hide a real fault."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from remotehands.alerts.settings import RemediationPolicy
from remotehands.errors import RemoteHandsError
from remotehands.inventory.models import Host
from remotehands.jobs import store
from remotehands.jobs.tables import Job
from remotehands.runtime import Runtime
from remotehands.tickets.base import TaskRequest

if TYPE_CHECKING:
    from remotehands.alerts.alertmanager import AmAlert


def covers(policy: RemediationPolicy, alert_name: str, host: Host) -> bool:
    """True when ``policy`` is for this alert and this host is in its group."""
    if policy.alert != alert_name:
        return False
    by_name = any(fnmatchcase(host.name, pattern) for pattern in policy.hosts)
    by_kind = str(host.kind) in policy.kinds
    return by_name or by_kind


def acted_recently(runtime: Runtime, policy: RemediationPolicy, host: str) -> datetime | None:
    """When ``policy`` last made a job for ``host`` within its window, if it did."""
    cutoff = datetime.now(UTC) - timedelta(minutes=policy.window_minutes)
    with runtime.db.session() as s:
        last = s.execute(
            select(Job.created_at)
            .where(Job.created_by == f"policy:{policy.name}", Job.target == host, Job.created_at >= cutoff)
            .order_by(Job.created_at.desc())
        ).scalar()
    return last


def apply(
    runtime: Runtime, ticket_id: str, alerts: Sequence[AmAlert], hosts: Mapping[str, Host | None]
) -> list[dict[str, Any]]:
    """Act on the firing alerts of a ticket that a policy covers; returns what was done per host."""
    policies = runtime.settings.alerts.remediation
    if not policies:
        return []
    tickets = runtime.tickets
    chosen: dict[str, RemediationPolicy] = {}
    for alert in alerts:
        host = hosts.get(alert.key)
        if alert.status != "firing" or host is None or host.name in chosen:
            continue
        for policy in policies:
            if covers(policy, alert.name, host):
                chosen[host.name] = policy
                break
    results: list[dict[str, Any]] = []
    by_policy: dict[str, list[str]] = {}
    for host_name, policy in chosen.items():
        last = acted_recently(runtime, policy, host_name)
        if last is not None:
            reason = (
                f"policy {policy.name} already ran {policy.action} on {host_name} at "
                f"{store.aware(last).isoformat(timespec='seconds')}; not repeated within "
                f"{policy.window_minutes} min, a technician should look"
            )
            tickets.escalate(ticket_id, reason, event_key=f"policy-{policy.name}-{host_name}-{ticket_id}")
            results.append({"host": host_name, "policy": policy.name, "done": "escalated", "reason": reason})
        else:
            by_policy.setdefault(policy.name, []).append(host_name)
    for name, host_names in by_policy.items():
        policy = next(p for p in policies if p.name == name)
        results.extend(_start(runtime, ticket_id, policy, host_names))
    return results


def _start(
    runtime: Runtime, ticket_id: str, policy: RemediationPolicy, hosts: list[str]
) -> list[dict[str, Any]]:
    tickets = runtime.tickets
    request = TaskRequest(action=policy.action, targets=tuple(hosts), params=dict(policy.params))
    approver = f"policy:{policy.name}"
    try:
        current = tickets.get(ticket_id)
        if current.request is None:
            tickets.set_request(ticket_id, request, runtime.inventory())
        elif current.request != request:
            raise RemoteHandsError(f"{ticket_id} already asks for {current.request.action}")
        if current.approver is None:
            tickets.approve(ticket_id, approver)
        tickets.comment(
            ticket_id,
            f"POLICY-APPROVED: remediation policy {policy.name} ({policy.alert} on this host group -> "
            f"{policy.action}, at most once per host per {policy.window_minutes} min) runs {policy.action} "
            f"on {', '.join(hosts)}.",
            event_key=f"policy-approved-{policy.name}-{ticket_id}",
        )
        job_ids = store.create_jobs_for_ticket(
            runtime.db, tickets.get(ticket_id), approver, approver, inventory=runtime.inventory()
        )
    except RemoteHandsError as exc:
        reason = f"policy {policy.name} could not run {policy.action} on {', '.join(hosts)}: {exc}"
        tickets.escalate(ticket_id, reason, event_key=f"policy-failed-{policy.name}-{ticket_id}")
        return [{"host": h, "policy": policy.name, "done": "escalated", "reason": reason} for h in hosts]
    return [
        {"host": h, "policy": policy.name, "done": "job", "job": j}
        for h, j in zip(hosts, job_ids, strict=False)
    ]
