"""The hash-chained audit log detects changed, removed and reordered entries."""

from __future__ import annotations

from sqlalchemy import delete, select, update

from remotehands import audit
from remotehands.audit import AuditEntry


def _entries(rt, n):
    with rt.db.session() as s:
        for i in range(n):
            audit.append(s, "alice", "test.event", f"thing-{i}", {"i": i})


def test_intact_chain_verifies(rt):
    _entries(rt, 5)
    with rt.db.session() as s:
        verdict = audit.verify(s)
    assert verdict.ok and verdict.entries == 5


def test_changed_entry_is_detected(rt):
    _entries(rt, 5)
    with rt.db.session() as s:
        s.execute(update(AuditEntry).where(AuditEntry.id == 3).values(actor="mallory"))
    with rt.db.session() as s:
        verdict = audit.verify(s)
    assert not verdict.ok and verdict.first_bad_id == 3 and "changed" in verdict.reason


def test_removed_entry_is_detected(rt):
    _entries(rt, 5)
    with rt.db.session() as s:
        s.execute(delete(AuditEntry).where(AuditEntry.id == 2))
    with rt.db.session() as s:
        verdict = audit.verify(s)
    assert not verdict.ok and verdict.first_bad_id == 3


def test_truncated_tail_is_detected(rt):
    _entries(rt, 5)
    with rt.db.session() as s:
        last = s.execute(select(AuditEntry.id).order_by(AuditEntry.id.desc())).scalar()
        s.execute(delete(AuditEntry).where(AuditEntry.id == last))
    with rt.db.session() as s:
        verdict = audit.verify(s)
    assert not verdict.ok and "removed" in verdict.reason
