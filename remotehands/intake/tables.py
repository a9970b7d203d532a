"""Intake tables: every webhook delivery received, and the API tokens of the server's callers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from remotehands.db import Base


class WebhookDelivery(Base):
    """One webhook as received: stored (durably) before the 202, processed after. The unique
    (system, delivery_id) makes a re-sent delivery a no-op."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("system", "delivery_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    system: Mapped[str] = mapped_column(String(32))
    delivery_id: Mapped[str] = mapped_column(String(128))
    ticket_id: Mapped[str] = mapped_column(String(64), index=True)
    # received | jobs | duplicate | unapproved | invalid | refused | failed
    state: Mapped[str] = mapped_column(String(16), index=True)
    outcome: Mapped[str] = mapped_column(Text, default="")
    job_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ApiToken(Base):
    """A caller of the API: a name (who, for the audit log), a role, and the SHA-256 of its token. The token
    itself is shown once, when made, and never stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class JobCallback(Base):
    """What an installer or agent reported for a job through ``POST /callbacks/{job}`` (redacted)."""

    __tablename__ = "job_callbacks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(Integer, index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
