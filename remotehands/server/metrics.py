"""``/metrics``: counters kept by the server plus gauges read from the database at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from remotehands.intake.tables import WebhookDelivery
from remotehands.jobs.tables import Job, OutboxEvent
from remotehands.runtime import Runtime


class DatabaseCollector(Collector):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[GaugeMetricFamily]:
        jobs = GaugeMetricFamily("remotehands_jobs", "Jobs by state", labels=["state"])
        pending = GaugeMetricFamily("remotehands_outbox_pending", "Ticket events not yet delivered")
        intake = GaugeMetricFamily(
            "remotehands_webhook_deliveries", "Webhook deliveries by state", labels=["state"]
        )
        with self.runtime.db.session() as s:
            for state, count in s.execute(select(Job.state, func.count()).group_by(Job.state)):
                jobs.add_metric([state], count)
            pending.add_metric(
                [], s.execute(select(func.count()).where(OutboxEvent.delivered_at.is_(None))).scalar_one()
            )
            for state, count in s.execute(
                select(WebhookDelivery.state, func.count()).group_by(WebhookDelivery.state)
            ):
                intake.add_metric([state], count)
        yield jobs
        yield pending
        yield intake


class Metrics:
    """One registry per app, so two apps in one process (tests) never share counters."""

    def __init__(self, runtime: Runtime) -> None:
        self.registry = CollectorRegistry()
        self.webhooks = Counter(
            "remotehands_webhooks",
            "Webhooks received, by ticket system and result",
            ["system", "result"],
            registry=self.registry,
        )
        self.intake_seconds = Histogram(
            "remotehands_webhook_intake_seconds",
            "Time to verify, dedup and store one webhook",
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        self.registry.register(DatabaseCollector(runtime))
