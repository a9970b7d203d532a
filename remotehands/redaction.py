"""Masks every resolved secret value wherever text leaves the process.

Secret values are registered here by ``remotehands.secrets`` at the moment they are resolved, so the
redactor knows exactly the values to hide (not patterns that might miss one). ``redact`` is applied to log
records (``RedactingFilter``), to ticket comments and attachments (the outbox), to step results stored in
the database, and to exception messages (``RemoteHandsError.__str__``).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

MASK = "***"
# Short values (a 1-3 character "password") would mask ordinary words; they are refused at resolution time.
MIN_SECRET_LENGTH = 4

_lock = threading.Lock()
_secrets: set[str] = set()


def register(value: str) -> None:
    """Remember ``value`` as a secret so every later ``redact`` masks it."""
    if len(value) < MIN_SECRET_LENGTH:
        return
    with _lock:
        _secrets.add(value)


def redact(text: str) -> str:
    """Return ``text`` with every registered secret value replaced by ``***`` (longest first)."""
    if not _secrets or not text:
        return text
    with _lock:
        values = sorted(_secrets, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


def redact_bytes(data: bytes) -> bytes:
    """Bytes version of ``redact`` for attachments."""
    if not _secrets:
        return data
    with _lock:
        values = sorted(_secrets, key=len, reverse=True)
    for value in values:
        data = data.replace(value.encode(), MASK.encode())
    return data


def redact_data(value: Any) -> Any:
    """``value`` (nested dicts, lists, strings) with every string redacted, before it is encoded as JSON:
    once encoded, a secret holding a quote, a backslash or non-ASCII text is escaped and would not match."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_data(k): redact_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_data(v) for v in value]
    return value


def forget_all() -> None:
    """Drop every registered secret (tests only)."""
    with _lock:
        _secrets.clear()


class RedactingFilter(logging.Filter):
    """A logging filter that renders the record's message, redacts it and drops the args."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = redact(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install_record_factory() -> None:
    """Redact every log record as it is created, before any handler (or pytest's caplog) sees it.

    A filter on one handler changes the shared record only when that handler runs, after handlers before
    it have already written the raw text; the record factory runs first, for every logger. Idempotent."""
    current = logging.getLogRecordFactory()
    if getattr(current, "remotehands_redacting", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = current(*args, **kwargs)
        _FILTER.filter(record)
        return record

    factory.remotehands_redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


_FILTER = RedactingFilter()
install_record_factory()
