"""Routes that systems call: ticket webhooks and installer callbacks. Their callers authenticate by
signature (webhooks) or by the job's own token (callbacks), not with API tokens."""

from __future__ import annotations

import hmac
import time
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from remotehands import secrets
from remotehands.errors import NotAuthenticated, NotPermitted, RemoteHandsError, TicketNotFound
from remotehands.intake import callbacks, webhooks
from remotehands.intake.signatures import scheme_for
from remotehands.server.state import ServerState

router = APIRouter(tags=["intake"])


def _webhook_key(state: ServerState, provider: str) -> tuple[str, bytes]:
    """(kind, secret) of a provider; raises for an unknown provider or one without a webhook secret."""
    settings = state.runtime.settings
    if provider == "builtin":
        kind, reference = "builtin", settings.builtin_webhook_secret
        where = "builtin_webhook_secret"
    elif provider in settings.ticket_systems:
        config = settings.ticket_systems[provider]
        kind, reference = config.kind, config.webhook_secret
        where = f"ticket_systems.{provider}.webhook_secret"
    else:
        raise TicketNotFound(
            f"no ticket system named {provider!r}",
            fix="configured: " + ", ".join(["builtin", *sorted(settings.ticket_systems)]),
        )
    if not reference:
        raise NotAuthenticated(
            f"webhooks from {provider} are not accepted: {where} is not set",
            fix=f"set {where} to a reference to the key the webhook is signed with",
        )
    if reference not in state.secret_cache:
        state.secret_cache[reference] = secrets.resolve(reference, field=where).encode()
    return kind, state.secret_cache[reference]


@router.post(
    "/webhooks/{provider}",
    status_code=202,
    summary="Receive a signed webhook from a ticket system",
    responses={401: {"description": "bad or stale signature"}, 404: {"description": "unknown provider"}},
)
async def webhook(provider: str, request: Request) -> JSONResponse:
    """Verify the signature on the raw body, store the delivery, answer 202; the work happens after."""
    state: ServerState = request.app.state.rh
    started = time.perf_counter()
    body = await request.body()
    try:
        kind, secret = _webhook_key(state, provider)
        verified = scheme_for(kind)(
            request.headers, body, secret, datetime.now(UTC), state.runtime.settings.webhook_tolerance
        )
        ticket_id = webhooks.ticket_id_from(kind, body)
    except RemoteHandsError:
        state.metrics.webhooks.labels(
            provider if provider in state.known_systems() else "unknown", "rejected"
        ).inc()
        raise
    new, delivery = await state.accept(provider, verified.delivery_id, ticket_id)
    state.metrics.webhooks.labels(provider, "accepted" if new else "duplicate").inc()
    state.metrics.intake_seconds.observe(time.perf_counter() - started)
    if new:
        state.wake()
    return JSONResponse({"delivery": delivery, "ticket": ticket_id, "duplicate": not new}, status_code=202)


@router.post(
    "/callbacks/{job_id}",
    status_code=202,
    summary="An installer or agent reports for a job, with that job's token",
    responses={401: {"description": "no or wrong token"}},
)
async def callback(job_id: int, request: Request) -> JSONResponse:
    state: ServerState = request.app.state.rh
    auth = request.headers.get("Authorization", "")
    token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
    body = await request.body()
    if job_id < 1 or job_id > 2**62:
        raise NotPermitted("no such job", fix="use the URL the job handed out")
    await run_in_threadpool(callbacks.receive, state.runtime.db, job_id, token, body)
    state.wake()
    return JSONResponse({"job": job_id, "accepted": True}, status_code=202)


@router.get(
    "/callbacks/{job_id}",
    summary="An installer asks, with the job's token, whether its job still wants it to install",
    responses={401: {"description": "no or wrong token"}},
)
async def callback_wanted(job_id: int, request: Request) -> JSONResponse:
    state: ServerState = request.app.state.rh
    auth = request.headers.get("Authorization", "")
    token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
    if job_id < 1 or job_id > 2**62:
        raise NotPermitted("no such job", fix="use the URL the job handed out")
    wanted = await run_in_threadpool(callbacks.still_wanted, state.runtime.db, job_id, token)
    return JSONResponse({"job": job_id, "install": wanted})


def _alertmanager_token(state: ServerState) -> str:
    reference = state.runtime.settings.alertmanager_token
    if not reference:
        raise NotAuthenticated(
            "alerts are not accepted: alertmanager_token is not set",
            fix="set alertmanager_token to a reference to the bearer token Alertmanager sends "
            "(http_config.authorization.credentials in its receiver)",
        )
    if reference not in state.secret_cache:
        state.secret_cache[reference] = secrets.resolve(reference, field="alertmanager_token").encode()
    return state.secret_cache[reference].decode()


@router.post(
    "/alerts/alertmanager",
    status_code=202,
    summary="Alertmanager webhook (version 4): opens or updates a monitoring-alert ticket",
    responses={401: {"description": "no or wrong bearer token"}, 400: {"description": "not a v4 payload"}},
)
async def alertmanager(request: Request) -> JSONResponse:
    state: ServerState = request.app.state.rh
    expected = _alertmanager_token(state)
    auth = request.headers.get("Authorization", "")
    given = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise NotAuthenticated("no or wrong bearer token", fix="configure the receiver's credentials")
    body = await request.body()
    from remotehands.alerts import alertmanager as am

    outcome = await run_in_threadpool(am.receive, state.runtime, body)
    state.metrics.webhooks.labels("alertmanager", str(outcome.get("outcome"))).inc()
    state.wake()
    return JSONResponse(outcome, status_code=202)
