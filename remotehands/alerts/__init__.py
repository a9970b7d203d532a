"""Alerts that open tickets (Alertmanager), severity rules, the SLA clock and escalation."""
