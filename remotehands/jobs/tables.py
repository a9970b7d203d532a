"""Job, step-journal and outbox tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from remotehands.db import Base


class Job(Base):
    """One action on one target, created from a ticket."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_system: Mapped[str] = mapped_column(String(32))
    ticket_id: Mapped[str] = mapped_column(String(64), index=True)
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(128), index=True)
    # Equal to ``target`` while the job is active, NULL after: the UNIQUE constraint is the per-target lock,
    # enforced by the database on SQLite and PostgreSQL alike (NULLs never collide).
    active_target: Mapped[str | None] = mapped_column(String(128), unique=True, nullable=True)
    site: Mapped[str] = mapped_column(String(64), default="")
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # what steps hand to later steps
    state: Mapped[str] = mapped_column(String(32), index=True)
    step_index: Mapped[int] = mapped_column(Integer, default=0)
    purpose: Mapped[str] = mapped_column(String(200), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    sensitive: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deadline_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    next_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True, index=True)
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    # A technician's confirmation of a manual step (``remotehands jobs confirm``); its own column so a
    # worker committing ``data`` can never overwrite it.
    confirmed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # What was asked (tickets.extract.request_key): the same request on the same ticket is the same work.
    request_key: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # SHA-256 of the job's callback token (POST /callbacks/{job}); the token is handed to the installer.
    callback_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # celery executor: when the job was last sent to its site's queue and the ``next_run_at`` it was sent
    # for; one dispatcher among a site's workers wins each send (a conditional UPDATE), not one per worker.
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    dispatched_for: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class JobStep(Base):
    """The step journal: ``started`` is committed before a step acts, ``done`` after, with its outbox event."""

    __tablename__ = "job_steps"
    __table_args__ = (UniqueConstraint("job_id", "idx", "attempt"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    idx: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    # started | waiting | done | retry | failed | reconciled
    status: Mapped[str] = mapped_column(String(16))
    baseline: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    result: Mapped[str] = mapped_column(Text, default="")
    owner: Mapped[str] = mapped_column(String(128), default="")
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class OutboxEvent(Base):
    """A job event waiting to be written to its ticket: a comment, a status change or an attachment."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"), nullable=True, index=True)
    ticket_system: Mapped[str] = mapped_column(String(32))
    ticket_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # comment | status | attach | escalate
    body: Mapped[str] = mapped_column(Text, default="")  # comment text, status value or attachment name
    payload: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    sensitive: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str] = mapped_column(Text, default="")
    # Set on a ticket's oldest undelivered event while one deliverer delivers that ticket's events.
    claimed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    claim_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # On the first event of a coalesced run: the ids of the run, recorded before it is sent.
    batch_ids: Mapped[list[int] | None] = mapped_column(JSON, nullable=True)


class DeviceSlot(Base):
    """When a shared device (a PDU strip) may next be switched: outlets are staggered against inrush.

    Claimed by a conditional UPDATE, so the stagger holds across threads, processes and machines."""

    __tablename__ = "device_slots"

    device: Mapped[str] = mapped_column(String(128), primary_key=True)
    next_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
