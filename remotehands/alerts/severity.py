"""Severity of an alert from its labels: the first matching rule wins, else the default.

A rule matches when every label it names has the value given; a value starting with ``~`` is a regular
expression matched against the whole label value."""

from __future__ import annotations

import re
from collections.abc import Mapping

from remotehands.alerts.settings import AlertSettings, SeverityRule
from remotehands.tickets.base import Severity


def _matches(rule: SeverityRule, labels: Mapping[str, str]) -> bool:
    for name, wanted in rule.match.items():
        value = labels.get(name)
        if value is None:
            return False
        if wanted.startswith("~"):
            if not re.fullmatch(wanted[1:], value):
                return False
        elif value != wanted:
            return False
    return True


def severity_of(labels: Mapping[str, str], settings: AlertSettings) -> tuple[Severity, str]:
    """(severity, why): the rule that decided it, for the ticket."""
    for i, rule in enumerate(settings.severity_rules, 1):
        if _matches(rule, labels):
            shown = ", ".join(f"{k}={v}" for k, v in rule.match.items())
            return Severity(rule.severity), f"severity rule {i} ({shown})"
    return Severity(settings.default_severity), "no severity rule matched: the default"
