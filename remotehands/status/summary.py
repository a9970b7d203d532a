"""What the public status page shows, computed from the database at one moment.

Per site: **Outage** while a Sev1 ticket (outage for many customers) is open there, **Degraded** while a
Sev2 (outage for one customer) is, otherwise **Operational**; maintenance windows in progress or to come;
and incidents: the Sev1/Sev2 tickets open now or resolved within ``RECENT_DAYS``. Only public facts leave:
the site, the impact, times and the ticket's id. A ticket's title, customer and request never do (a
sensitive ticket's title is ciphertext anyway), so an incident is named by its severity's meaning.

The JSON (``/status.json``) follows the shape of Atlassian Statuspage's summary (``page``, ``status`` with
an ``indicator``, ``components``, ``incidents``, ``scheduled_maintenances``), one component per site.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select

from remotehands.db import Database
from remotehands.status import maintenance
from remotehands.tickets.base import Severity, TicketStatus, format_builtin_id
from remotehands.tickets.tables import TicketRow

RECENT_DAYS = 7
CLOSED = (TicketStatus.RESOLVED.value, TicketStatus.CLOSED.value)
# A site's state: label on the page, Statuspage component status, page indicator.
STATES = {
    "operational": ("Operational", "operational", "none"),
    "degraded": ("Degraded", "partial_outage", "major"),
    "outage": ("Outage", "major_outage", "critical"),
}
_RANK = ["operational", "degraded", "outage"]
_IMPACT = {Severity.OUTAGE_MANY: "outage", Severity.OUTAGE_ONE: "degraded"}


@dataclass(frozen=True)
class Incident:
    ticket: str
    site: str
    impact: str  # outage | degraded
    name: str
    started_at: datetime
    resolved_at: datetime | None


@dataclass(frozen=True)
class SiteStatus:
    name: str
    state: str  # operational | degraded | outage
    open_incidents: int
    in_maintenance: bool

    @property
    def label(self) -> str:
        return STATES[self.state][0]


@dataclass(frozen=True)
class Summary:
    at: datetime
    sites: list[SiteStatus]
    incidents: list[Incident]
    maintenance: list[maintenance.Window]

    @property
    def state(self) -> str:
        """The worst site's state."""
        return max((site.state for site in self.sites), key=_RANK.index, default="operational")

    @property
    def description(self) -> str:
        worst = self.state
        if worst == "outage":
            return "Major outage at " + ", ".join(s.name for s in self.sites if s.state == "outage")
        if worst == "degraded":
            return "Degraded at " + ", ".join(s.name for s in self.sites if s.state == "degraded")
        if any(site.in_maintenance for site in self.sites):
            return "All sites operational; maintenance in progress"
        return "All sites operational"


def summary(db: Database, sites: list[str], *, at: datetime | None = None) -> Summary:
    """The status of ``sites`` (the inventory's) at ``at`` (now)."""
    at = at or datetime.now(UTC)
    since = at - timedelta(days=RECENT_DAYS)
    severe = [int(Severity.OUTAGE_MANY), int(Severity.OUTAGE_ONE)]
    with db.session() as s:
        rows = s.execute(
            select(
                TicketRow.id,
                TicketRow.site,
                TicketRow.severity,
                TicketRow.status,
                TicketRow.received_at,
                TicketRow.updated_at,
            )
            .where(
                TicketRow.severity.in_(severe),
                or_(TicketRow.status.not_in(CLOSED), TicketRow.updated_at >= since),
            )
            .order_by(TicketRow.received_at.desc(), TicketRow.id.desc())
        ).all()
    incidents = [
        Incident(
            ticket=format_builtin_id(row.id),
            site=row.site,
            impact=_IMPACT[Severity(row.severity)],
            name=Severity(row.severity).meaning.capitalize(),
            started_at=_aware(row.received_at),
            resolved_at=_aware(row.updated_at) if row.status in CLOSED else None,
        )
        for row in rows
    ]
    windows = maintenance.listing(db, at=at)
    names = list(dict.fromkeys([*sites, *(i.site for i in incidents if i.resolved_at is None and i.site)]))
    statuses = []
    for name in names:
        open_here = [i for i in incidents if i.site == name and i.resolved_at is None]
        state = max((i.impact for i in open_here), key=_RANK.index, default="operational")
        busy = any(w.site == name and w.state(at) == "in_progress" for w in windows)
        statuses.append(SiteStatus(name, state, len(open_here), busy))
    return Summary(at=at, sites=statuses, incidents=incidents, maintenance=windows)


def as_json(result: Summary, page_name: str = "remotehands") -> dict[str, Any]:
    """``result`` in the shape of Statuspage's ``summary.json``."""
    stamp = _iso(result.at)
    return {
        "page": {"name": page_name, "updated_at": stamp, "time_zone": "Etc/UTC"},
        "status": {"indicator": STATES[result.state][2], "description": result.description},
        "components": [
            {
                "id": site.name,
                "name": site.name,
                "status": "under_maintenance"
                if site.state == "operational" and site.in_maintenance
                else STATES[site.state][1],
                "label": site.label,
                "open_incidents": site.open_incidents,
                "updated_at": stamp,
            }
            for site in result.sites
        ],
        "incidents": [
            {
                "id": incident.ticket,
                "name": f"{incident.name} at {incident.site}",
                "status": "resolved" if incident.resolved_at else "investigating",
                "impact": "critical" if incident.impact == "outage" else "major",
                "created_at": _iso(incident.started_at),
                "resolved_at": _iso(incident.resolved_at) if incident.resolved_at else None,
                "components": [incident.site],
            }
            for incident in result.incidents
        ],
        "scheduled_maintenances": [
            {
                "id": str(window.id),
                "name": window.title,
                "status": window.state(result.at),
                "impact": "maintenance",
                "scheduled_for": _iso(window.starts_at),
                "scheduled_until": _iso(window.ends_at),
                "components": [window.site],
            }
            for window in result.maintenance
        ],
    }


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
