"""Settings of the alert intake, the SLA clock and escalation (tables in remotehands.toml):

[sla]
urgent_response_hours = 4             # Sev1 and Sev2: time to response
working_day_start = "08:00"           # Sev3-Sev5: due at this time on the next working day (site's zone)
working_days = ["mon", "tue", "wed", "thu", "fri"]
holidays = ["2026-12-25", "2026-12-26"]

[escalation]
groups = ["dc-shift-leads", "dc-managers"]   # level 1, level 2 (and beyond: the last)

[alerts]
default_severity = 3
host_labels = ["host", "instance", "nodename"]
[[alerts.severity_rules]]             # first match wins; values are exact, or regexes as "~^crit"
match = {severity = "critical", scope = "site"}
severity = 1
[[alerts.remediation]]                # a named alert on a host group may make a pre-approved job
name = "hung-macs"
alert = "HostDown"
kinds = ["mac-mini", "mac-studio", "mac-pro"]
action = "power.cycle"
window_minutes = 60                   # at most once per host in this window
"""

from __future__ import annotations

from datetime import date, time

from pydantic import BaseModel, ConfigDict, Field, field_validator

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class SlaSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    urgent_response_hours: float = Field(default=4.0, gt=0)
    working_day_start: time = time(8, 0)
    working_days: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri")
    holidays: tuple[date, ...] = ()

    @field_validator("working_days")
    @classmethod
    def _days(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [d for d in value if d.lower() not in DAYS]
        if bad or not value:
            raise ValueError(f"working days are some of {', '.join(DAYS)}; got {', '.join(bad) or 'none'}")
        return tuple(d.lower() for d in value)

    def weekdays(self) -> frozenset[int]:
        return frozenset(DAYS.index(d) for d in self.working_days)


class EscalationSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    groups: tuple[str, ...] = ("dc-shift-leads",)

    def group(self, level: int) -> str:
        return self.groups[min(level, len(self.groups)) - 1] if self.groups else ""


class SeverityRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    match: dict[str, str] = Field(min_length=1)
    severity: int = Field(ge=1, le=5)


class RemediationPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    alert: str = Field(min_length=1)  # alertname
    hosts: tuple[str, ...] = ()  # host name globs
    kinds: tuple[str, ...] = ()  # host kinds
    action: str = "power.cycle"
    params: dict[str, object] = Field(default_factory=dict)
    window_minutes: int = Field(default=60, ge=1)


def _default_rules() -> tuple[SeverityRule, ...]:
    return (
        SeverityRule(match={"severity": "critical", "scope": "site"}, severity=1),
        SeverityRule(match={"severity": "critical"}, severity=2),
        SeverityRule(match={"severity": "~^(warning|major)$"}, severity=3),
        SeverityRule(match={"severity": "~^(redundancy|minor)$"}, severity=4),
        SeverityRule(match={"severity": "~^(info|none)$"}, severity=5),
    )


class AlertSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    default_severity: int = Field(default=3, ge=1, le=5)
    host_labels: tuple[str, ...] = ("host", "instance", "nodename")
    site_label: str = "site"
    severity_rules: tuple[SeverityRule, ...] = Field(default_factory=_default_rules)
    remediation: tuple[RemediationPolicy, ...] = ()
