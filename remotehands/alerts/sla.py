"""The SLA clock: when a ticket is due a response.

Sev1 and Sev2 (an outage) are due ``urgent_response_hours`` after they arrive, day or night. Sev3 to Sev5
are due at the start of the next working day in the site's time zone: weekends (days not in
``working_days``) and the configured holidays are skipped. A ticket is *breached* when it had no response
by then (a response: approval, or a comment from someone other than its requester).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from remotehands.alerts.settings import SlaSettings
from remotehands.tickets.base import Severity


def due_at(received_at: datetime, severity: Severity, zone: str, sla: SlaSettings) -> datetime:
    """When a ticket of ``severity`` received at ``received_at`` at a site in ``zone`` is due (UTC)."""
    received = received_at if received_at.tzinfo else received_at.replace(tzinfo=UTC)
    if severity <= Severity.OUTAGE_ONE:
        return (received + timedelta(hours=sla.urgent_response_hours)).astimezone(UTC)
    tz = ZoneInfo(zone)
    day = received.astimezone(tz).date() + timedelta(days=1)
    workdays = sla.weekdays()
    holidays = set(sla.holidays)
    for _ in range(366):
        if day.weekday() in workdays and day not in holidays:
            break
        day += timedelta(days=1)
    return datetime.combine(day, sla.working_day_start, tzinfo=tz).astimezone(UTC)


def breached(due: datetime | None, responded: datetime | None, now: datetime | None = None) -> bool:
    """True when the response came after ``due``, or has not come and ``due`` has passed."""
    if due is None:
        return False
    due = due if due.tzinfo else due.replace(tzinfo=UTC)
    if responded is not None:
        responded = responded if responded.tzinfo else responded.replace(tzinfo=UTC)
        return responded > due
    return (now or datetime.now(UTC)) > due
