"""Alertmanager webhook (version 4) -> tickets of type monitoring-alert.

One notification group (``groupKey``) is one ticket. A group sent again unchanged (a re-send, or the second
Alertmanager of an HA pair) changes nothing; new alerts in the group, or the group resolving, add a comment
to the same ticket. A group that fires again after its ticket was resolved opens a new ticket.

Severity comes from the label rules (``alerts.severity``); the most severe alert of the group decides. The
host is the first of ``host_labels`` whose value (without a ``:port``) names an inventory host or its
management address; its site sets the ticket's site and so the SLA clock's time zone.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.exc import IntegrityError

from remotehands.alerts import remediation
from remotehands.alerts.severity import severity_of
from remotehands.errors import InvalidRequest
from remotehands.inventory.models import PROVIDER, Host, Inventory
from remotehands.runtime import Runtime
from remotehands.tickets.base import Severity, TicketStatus, TicketType
from remotehands.tickets.builtin import NewTicket

REQUESTER = "alertmanager"


class AmAlert(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(min_length=1)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime
    endsAt: datetime | None = None
    generatorURL: str = ""
    fingerprint: str = ""

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "alert")

    @property
    def key(self) -> str:
        return (
            self.fingerprint
            or hashlib.sha256(json.dumps(self.labels, sort_keys=True).encode()).hexdigest()[:16]
        )


class AmNotification(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: Literal["4"]
    groupKey: str = Field(min_length=1)
    truncatedAlerts: int = 0
    status: Literal["firing", "resolved"]
    receiver: str = ""
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    alerts: list[AmAlert] = Field(min_length=1)


def parse(body: bytes) -> AmNotification:
    """The notification; raises ``InvalidRequest`` naming the field that is wrong."""
    try:
        return AmNotification.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidRequest(
            f"Alertmanager notification: {where}: {first['msg']}",
            fix="send Alertmanager's webhook payload (version 4)",
        ) from None


def host_of(alert: AmAlert, inventory: Inventory, labels: tuple[str, ...]) -> Host | None:
    """The inventory host an alert is about, by name or management address, if any."""
    by_address = {h.mgmt_address: h for h in inventory.hosts.values()}
    for label in labels:
        value = alert.labels.get(label)
        if not value:
            continue
        bare = value.rsplit(":", 1)[0] if value.count(":") == 1 else value
        for candidate in (value, bare, bare.split(".")[0]):
            if candidate in inventory.hosts:
                return inventory.hosts[candidate]
            if candidate in by_address:
                return by_address[candidate]
    return None


def _digest(note: AmNotification) -> str:
    state = sorted((a.key, a.status) for a in note.alerts)
    return hashlib.sha256(json.dumps([note.status, state]).encode()).hexdigest()


def _describe(note: AmNotification, hosts: dict[str, Host | None]) -> str:
    lines = [f"Alertmanager group {note.groupKey} ({note.status}), receiver {note.receiver or '-'}"]
    for alert in note.alerts:
        host = hosts.get(alert.key)
        summary = alert.annotations.get("summary") or alert.annotations.get("description") or ""
        labels = ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items()))
        lines.append(
            f"- [{alert.status}] {alert.name}"
            + (f" on {host.name}" if host else "")
            + (f": {summary}" if summary else "")
            + f" ({labels}; since {alert.startsAt.isoformat()})"
        )
    if note.truncatedAlerts:
        lines.append(f"({note.truncatedAlerts} more alerts were truncated by Alertmanager)")
    if note.externalURL:
        lines.append(f"Alertmanager: {note.externalURL}")
    return "\n".join(lines)


def receive(runtime: Runtime, body: bytes) -> dict[str, Any]:
    """Open or update the ticket of a notification group; returns what happened (for the 202 answer).

    Raises ``InvalidRequest`` for a payload that is not a version-4 notification."""
    note = parse(body)
    settings = runtime.settings.alerts
    inventory = runtime.inventory()
    tickets = runtime.tickets
    hosts = {a.key: host_of(a, inventory, settings.host_labels) for a in note.alerts}
    source_key = "alertmanager:" + hashlib.sha256(note.groupKey.encode()).hexdigest()[:40]
    digest = _digest(note)
    describe = _describe(note, hosts)

    existing = tickets.find_by_source(source_key)
    if existing is not None:
        ticket = tickets.get(existing, reveal=False)
        if ticket.status in (TicketStatus.RESOLVED, TicketStatus.CLOSED) and note.status == "firing":
            # Fired again after it was dealt with: a new ticket; the old one keeps its history.
            tickets.set_source(existing, f"{source_key}#{existing}", tickets.source_digest(existing))
            existing = None
        elif tickets.source_digest(existing) == digest:
            return {"ticket": existing, "outcome": "unchanged"}
        else:
            tickets.set_source(existing, source_key, digest)
            verb = "resolved" if note.status == "resolved" else "updated"
            # Keyed by the group's state: the second Alertmanager of an HA pair sending the same update at the
            # same moment writes nothing twice.
            tickets.comment(
                existing,
                f"Alert group {verb}:\n{describe}",
                author=REQUESTER,
                event_key=f"alert-{digest[:40]}",
            )
            outcome: dict[str, Any] = {"ticket": existing, "outcome": verb}
            if note.status == "firing":
                outcome["remediation"] = remediation.apply(runtime, existing, note.alerts, hosts)
            return outcome

    firing = [a for a in note.alerts if a.status == "firing"] or note.alerts
    ranked = sorted((severity_of(a.labels, settings) for a in firing), key=lambda sv: int(sv[0]))
    severity, why = ranked[0]
    site_label = note.commonLabels.get(settings.site_label) or firing[0].labels.get(settings.site_label, "")
    sites = {h.site for h in hosts.values() if h is not None}
    site = ",".join(sorted(sites)) or (site_label if site_label in inventory.sites else "")
    names = sorted({a.name for a in firing})
    on = sorted({h.name for h in hosts.values() if h is not None})
    title = f"[{'/'.join(names)}] " + (
        ", ".join(on) if on else note.commonLabels.get("instance", note.groupKey)
    )
    try:
        ticket_id = tickets.create(
            NewTicket(
                type=TicketType.MONITORING_ALERT,
                severity=severity,
                title=title[:200],
                requester=REQUESTER,
                customer=PROVIDER,
                subscription=PROVIDER,
                request=None,
                description=f"{describe}\n\nSeverity Sev{int(severity)} ({Severity(severity).meaning}) by {why}.",
                site=site,
                source_key=source_key,
                source_digest=digest,
            ),
            inventory,
        )
    except IntegrityError:
        # The other Alertmanager of an HA pair opened it a moment ago: this notification is that one.
        found = tickets.find_by_source(source_key)
        return {"ticket": found, "outcome": "unchanged"}
    outcome = {"ticket": ticket_id, "outcome": "opened", "severity": int(severity)}
    if note.status == "firing":
        outcome["remediation"] = remediation.apply(runtime, ticket_id, note.alerts, hosts)
    return outcome
