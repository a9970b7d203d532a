"""Append-only, hash-chained audit log.

Every entry stores the SHA-256 of the previous entry's hash plus its own canonical content, so changing,
deleting or reordering any row breaks the chain from there on; ``verify`` finds the first broken row.
Appends are serialized on a single ``audit_head`` row (row lock on PostgreSQL, ``BEGIN IMMEDIATE`` on
SQLite), and ``prev_hash`` is UNIQUE so a fork can never be committed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from remotehands import redaction
from remotehands.db import Base

GENESIS = "0" * 64


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[str] = mapped_column(String(40))  # ISO text: hashed exactly as stored
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(128))
    detail: Mapped[str] = mapped_column(Text, default="{}")
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hash: Mapped[str] = mapped_column(String(64))


def _digest(prev: str, ts: str, actor: str, action: str, subject: str, detail: str) -> str:
    canonical = json.dumps([prev, ts, actor, action, subject, detail], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def append(
    session: Session, actor: str, action: str, subject: str, detail: dict[str, Any] | None = None
) -> None:
    """Append one entry inside the caller's transaction (it commits or rolls back with the caller's work)."""
    head = session.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update()).scalar_one_or_none()
    if head is None:
        head = AuditHead(id=1, hash=GENESIS)
        session.add(head)
        session.flush()
    ts = datetime.now(UTC).isoformat()
    text = json.dumps(redaction.redact_data(detail or {}), sort_keys=True, default=str)
    digest = _digest(head.hash, ts, actor, action, subject, text)
    session.add(
        AuditEntry(
            ts=ts, actor=actor, action=action, subject=subject, detail=text, prev_hash=head.hash, hash=digest
        )
    )
    head.hash = digest
    session.flush()


@dataclass(frozen=True)
class Verdict:
    ok: bool
    entries: int
    first_bad_id: int | None
    reason: str


def verify(session: Session) -> Verdict:
    """Walk the chain from the first entry; report the first row whose hash or link does not match."""
    prev = GENESIS
    count = 0
    for entry in session.execute(select(AuditEntry).order_by(AuditEntry.id)).scalars():
        count += 1
        if entry.prev_hash != prev:
            return Verdict(
                False,
                count,
                entry.id,
                f"entry {entry.id} does not follow the entry before it (a row was removed or reordered)",
            )
        expected = _digest(prev, entry.ts, entry.actor, entry.action, entry.subject, entry.detail)
        if expected != entry.hash:
            return Verdict(False, count, entry.id, f"entry {entry.id} was changed after it was written")
        prev = entry.hash
    head = session.get(AuditHead, 1)
    if head is not None and head.hash != prev:
        return Verdict(
            False,
            count,
            None,
            "the newest entries were removed (the chain head does not match the last entry)",
        )
    return Verdict(True, count, None, f"{count} entries, chain intact")
