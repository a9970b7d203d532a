"""Scheduled maintenance windows per site: added, listed and removed by technicians
(``remotehands status maintenance add|list|remove``), shown on the public status page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from remotehands import audit
from remotehands.db import Database
from remotehands.errors import BadInput
from remotehands.inventory.models import Inventory
from remotehands.status.tables import MaintenanceWindow

TITLE_MAX = 200


@dataclass(frozen=True)
class Window:
    id: int
    site: str
    title: str
    starts_at: datetime
    ends_at: datetime
    created_by: str

    def state(self, at: datetime) -> str:
        """``scheduled``, ``in_progress`` or ``completed`` at ``at`` (the status page convention)."""
        if at < self.starts_at:
            return "scheduled"
        return "in_progress" if at < self.ends_at else "completed"


def now() -> datetime:
    return datetime.now(UTC)


def parse_time(value: str, field: str) -> datetime:
    """An ISO 8601 time (``2026-12-24T02:00Z``, ``2026-12-24 02:00+01:00``); without a zone it is UTC.
    Raises ``BadInput`` naming ``field``."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(
            f"{field}: {value!r} is not a time",
            fix=f"give {field} as ISO 8601, e.g. 2026-12-24T02:00Z (UTC) or 2026-12-24T03:00+01:00",
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def add(
    db: Database,
    inventory: Inventory,
    *,
    site: str,
    title: str,
    starts_at: datetime,
    ends_at: datetime,
    actor: str,
    at: datetime | None = None,
) -> Window:
    """Schedule a window on ``site``. Raises ``BadInput`` naming the field: an unknown site, an empty or
    long title, an end not after the start, or a window that has already ended."""
    if site not in inventory.sites:
        raise BadInput(
            f"--site: no site {site!r} in the inventory", fix="one of: " + ", ".join(sorted(inventory.sites))
        )
    title = title.strip()
    if not title or len(title) > TITLE_MAX:
        raise BadInput(
            f"--title: {len(title)} characters", fix=f"give a title of 1-{TITLE_MAX} characters; it is public"
        )
    if ends_at <= starts_at:
        raise BadInput(
            f"--end {ends_at.isoformat()} is not after --start {starts_at.isoformat()}",
            fix="give an end after the start",
        )
    if ends_at <= (at or now()):
        raise BadInput(
            f"--end {ends_at.isoformat()} has already passed", fix="schedule a window that ends in the future"
        )
    with db.session() as s:
        row = MaintenanceWindow(
            site=site,
            title=title,
            starts_at=starts_at,
            ends_at=ends_at,
            created_by=actor,
            created_at=now(),
        )
        s.add(row)
        s.flush()
        audit.append(
            s,
            actor,
            "maintenance.add",
            site,
            {"id": row.id, "title": title, "start": starts_at.isoformat(), "end": ends_at.isoformat()},
        )
        return _window(row)


def listing(db: Database, *, include_past: bool = False, at: datetime | None = None) -> list[Window]:
    """Windows in start order; without ``include_past`` only those not yet ended at ``at``."""
    with db.session() as s:
        query = select(MaintenanceWindow).order_by(MaintenanceWindow.starts_at, MaintenanceWindow.id)
        if not include_past:
            query = query.where(MaintenanceWindow.ends_at > (at or now()))
        return [_window(row) for row in s.execute(query).scalars()]


def remove(db: Database, window_id: int, *, actor: str) -> Window:
    """Remove window ``window_id``; raises ``BadInput`` when there is none."""
    with db.session() as s:
        row = s.get(MaintenanceWindow, window_id)
        if row is None:
            raise BadInput(
                f"no maintenance window {window_id}",
                fix="see the ids with: remotehands status maintenance list",
            )
        window = _window(row)
        s.delete(row)
        audit.append(s, actor, "maintenance.remove", window.site, {"id": window_id, "title": window.title})
        return window


def _window(row: MaintenanceWindow) -> Window:
    return Window(
        id=row.id,
        site=row.site,
        title=row.title,
        starts_at=_aware(row.starts_at),
        ends_at=_aware(row.ends_at),
        created_by=row.created_by,
    )


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)  # SQLite drops the zone
