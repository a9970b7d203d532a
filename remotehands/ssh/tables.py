"""Pinned SSH host keys: one row per host, replaced only by a reimage job (or a technician's pin)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from remotehands.db import Base


class HostKey(Base):
    __tablename__ = "host_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host: Mapped[str] = mapped_column(String(128), unique=True)
    key_type: Mapped[str] = mapped_column(String(64))
    key_base64: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(128))  # SHA256:..., as ssh-keygen -l prints it
    pinned_by: Mapped[str] = mapped_column(String(128))  # "job-12 (reimage)", "carol (ssh pin)"
    pinned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
