"""Errors as HTTP answers: the exception tree decides the status; the body says what and how to fix it."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from remotehands import redaction
from remotehands.errors import (
    ActionFailed,
    BadInput,
    NotAuthenticated,
    NotPermitted,
    RemoteHandsError,
    RetryableError,
    TargetBusy,
    TicketNotFound,
    UnknownTarget,
)

log = logging.getLogger(__name__)


def status_of(exc: RemoteHandsError) -> int:
    """401 unauthenticated, 403 not permitted, 409 target busy, 404 unknown ticket/host, 400 bad input,
    503 a system we depend on is down (retry), 502 equipment failed, 500 a bug."""
    if isinstance(exc, NotAuthenticated):
        return 401
    if isinstance(exc, TargetBusy):
        return 409
    if isinstance(exc, NotPermitted):
        return 403
    if isinstance(exc, TicketNotFound | UnknownTarget):
        return 404
    if isinstance(exc, BadInput):
        return 400
    if isinstance(exc, RetryableError):
        return 503
    if isinstance(exc, ActionFailed):
        return 502
    return 500


def error_body(exc: RemoteHandsError) -> dict[str, str | None]:
    return {"error": redaction.redact(exc.message), "fix": exc.fix, "type": type(exc).__name__}


def install(app: FastAPI) -> None:
    """Register the handlers: our errors by type; anything else is a logged 500 without details."""

    async def on_ours(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RemoteHandsError)
        status = status_of(exc)
        if status >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse(error_body(exc), status_code=status, headers=headers)

    async def on_other(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s: internal error", request.method, request.url.path)
        return JSONResponse(
            {
                "error": "internal error in remotehands; the server log has the details",
                "type": "InternalError",
            },
            status_code=500,
        )

    app.add_exception_handler(RemoteHandsError, on_ours)
    app.add_exception_handler(Exception, on_other)
