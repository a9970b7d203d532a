"""Errors as HTTP answers: the exception tree decides the status; the body says what and how to fix it."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

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


TITLES = {400: "Bad request", 401: "Not logged in", 403: "Not permitted", 404: "Not found", 409: "Busy"}


def console_error(request: Request, exc: RemoteHandsError | None, status: int) -> Response:
    """A console error as a page (what went wrong and the fix); without a valid login, the login page."""
    from remotehands.server.console import templates

    if status == 401 and request.method == "GET" and not request.url.path.endswith("/events"):
        return RedirectResponse("/console/login", status_code=303)
    message = (
        redaction.redact(exc.message) if exc is not None else "internal error; the server log has the details"
    )
    context = {
        "who": None,
        "status": status,
        "title": TITLES.get(status, "Error"),
        "message": message,
        "fix": exc.fix if exc is not None else None,
    }
    response: Response = templates.TemplateResponse(request, "error.html", context, status_code=status)
    return response


def install(app: FastAPI) -> None:
    """Register the handlers: our errors by type; anything else is a logged 500 without details."""

    async def on_ours(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RemoteHandsError)
        status = status_of(exc)
        if status >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, exc)
        if request.url.path.startswith("/console"):
            return console_error(request, exc, status)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse(error_body(exc), status_code=status, headers=headers)

    async def on_other(request: Request, exc: Exception) -> Response:
        log.exception("%s %s: internal error", request.method, request.url.path)
        if request.url.path.startswith("/console"):
            return console_error(request, None, 500)
        return JSONResponse(
            {
                "error": "internal error in remotehands; the server log has the details",
                "type": "InternalError",
            },
            status_code=500,
        )

    app.add_exception_handler(RemoteHandsError, on_ours)
    app.add_exception_handler(Exception, on_other)
