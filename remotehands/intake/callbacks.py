"""Per-job callbacks: an installer or agent working for a job (a reimage, #5) reports back over
``POST /callbacks/{job}`` with a token that belongs to that job alone. The report is stored (redacted) and
a waiting job is woken at once instead of at the end of its wait."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from remotehands import redaction
from remotehands.db import Database
from remotehands.errors import BadInput, NotAuthenticated, NotPermitted
from remotehands.intake.tables import JobCallback
from remotehands.jobs.states import TERMINAL, JobState
from remotehands.jobs.tables import Job

MAX_BYTES = 64 * 1024


def issue_token(db: Database, job_id: int) -> str:
    """A new callback token for ``job_id`` (replacing any earlier one). Returned once; only its hash is kept,
    and it is registered with the redactor so it never reaches a log or a ticket."""
    token = secrets.token_urlsafe(32)
    redaction.register(token)
    with db.session() as s:
        job = s.get(Job, job_id)
        if job is None:
            raise BadInput(f"no job {job_id}")
        job.callback_sha256 = hashlib.sha256(token.encode()).hexdigest()
    return token


def receive(db: Database, job_id: int, token: str | None, body: bytes) -> None:
    """Store a callback for ``job_id`` and wake the job if it waits.

    Raises ``NotAuthenticated`` for a missing or wrong token (or an unknown job: the answer does not tell
    which), ``BadInput`` for a body that is not a JSON object or is larger than 64 KiB."""
    if not token:
        raise NotAuthenticated("no callback token", fix="send the job's token as 'Authorization: Bearer ...'")
    wanted = hashlib.sha256(token.encode()).hexdigest()
    if len(body) > MAX_BYTES:
        raise BadInput(f"the callback body is {len(body)} bytes, more than {MAX_BYTES}")
    try:
        payload: Any = json.loads(body or b"{}")
    except ValueError:
        raise BadInput("the callback body is not JSON", fix="send a JSON object") from None
    if not isinstance(payload, dict):
        raise BadInput("the callback body is not a JSON object", fix="send a JSON object")
    stamp = datetime.now(UTC)
    with db.session() as s:
        job = s.get(Job, job_id, with_for_update=True)
        if job is None or not job.callback_sha256 or not hmac.compare_digest(job.callback_sha256, wanted):
            raise NotAuthenticated(f"no callback is expected for job {job_id} with this token")
        if JobState(job.state) in TERMINAL:
            raise NotPermitted(
                f"job {job_id} has ended ({job.state}); it takes no more reports",
                fix="an installer started for an ended job must stop: boot the host from its disk",
            )
        s.add(JobCallback(job_id=job_id, payload=redaction.redact_data(payload), received_at=stamp))
        if job.state == JobState.WAITING.value:
            job.next_run_at = stamp


def still_wanted(db: Database, job_id: int, token: str | None) -> bool:
    """Whether job ``job_id`` (authenticated by its token) is still under way, so its installer may go on:
    an installer asks before it erases anything (``GET /callbacks/{job}``), and one booted from a stale
    boot entry after its job ended stops. Raises ``NotAuthenticated`` like ``receive``."""
    if not token:
        raise NotAuthenticated("no callback token", fix="send the job's token as 'Authorization: Bearer ...'")
    wanted = hashlib.sha256(token.encode()).hexdigest()
    with db.session() as s:
        job = s.get(Job, job_id)
        if job is None or not job.callback_sha256 or not hmac.compare_digest(job.callback_sha256, wanted):
            raise NotAuthenticated(f"no callback is expected for job {job_id} with this token")
        return JobState(job.state) not in TERMINAL


def callbacks_of(db: Database, job_id: int, *, after: int = 0) -> list[dict[str, Any]]:
    """Every callback received for ``job_id`` (with an id above ``after``), oldest first."""
    with db.session() as s:
        rows = s.execute(
            select(JobCallback)
            .where(JobCallback.job_id == job_id, JobCallback.id > after)
            .order_by(JobCallback.id)
        )
        return [
            {"id": r.id, "payload": r.payload, "received_at": r.received_at.isoformat()}
            for r in rows.scalars()
        ]


def last_id(db: Database, job_id: int) -> int:
    """The id of the newest callback of ``job_id`` (0 when none)."""
    with db.session() as s:
        found = s.execute(select(func.max(JobCallback.id)).where(JobCallback.job_id == job_id)).scalar()
        return int(found or 0)
