"""``/api/``: tickets and jobs for people and tools holding an API token (see ``server.tokens``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from remotehands.errors import BadInput
from remotehands.intake import callbacks, webhooks
from remotehands.inventory.models import PROVIDER
from remotehands.jobs import store
from remotehands.jobs.views import job_dict
from remotehands.server import tokens
from remotehands.server.state import ServerState
from remotehands.tickets.base import Severity, TaskRequest, TicketType
from remotehands.tickets.builtin import NewTicket
from remotehands.tickets.views import ticket_dict

router = APIRouter(prefix="/api", tags=["api"])


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.rh
    return state


async def caller(request: Request, authorization: Annotated[str | None, Header()] = None) -> tokens.Caller:
    state = _state(request)
    return await run_in_threadpool(tokens.authenticate, state.runtime.db, authorization)


Caller = Annotated[tokens.Caller, Depends(caller)]


class NewTicketBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=200)
    action: str = Field(min_length=1, max_length=64)
    targets: list[str] = Field(min_length=1, max_length=500)
    params: dict[str, Any] = Field(default_factory=dict)
    severity: int = Field(default=3, ge=1, le=5)
    type: TicketType = TicketType.REMOTE_HANDS
    customer: str = Field(default=PROVIDER, min_length=1, max_length=128)
    subscription: str = Field(default=PROVIDER, min_length=1, max_length=128)
    description: str = Field(default="", max_length=20000)
    sensitive: bool = False


@router.get("/tickets", summary="Open builtin tickets in working order")
def list_tickets(request: Request, who: Caller, all: bool = False) -> list[dict[str, object]]:
    who.require("read")
    return [ticket_dict(t) for t in _state(request).runtime.tickets.queue(include_done=all)]


@router.post("/tickets", status_code=201, summary="Open a builtin ticket (its requester is the caller)")
def create_ticket(request: Request, who: Caller, body: NewTicketBody) -> dict[str, str]:
    who.require("run")
    rt = _state(request).runtime
    try:
        task = TaskRequest(action=body.action, targets=tuple(body.targets), params=body.params)
    except ValueError as exc:
        raise BadInput(f"targets: {exc}", fix="list each host once") from None
    ticket_id = rt.tickets.create(
        NewTicket(
            type=body.type,
            severity=Severity(body.severity),
            title=body.title,
            requester=who.name,
            customer=body.customer,
            subscription=body.subscription,
            request=task,
            description=body.description,
            sensitive=body.sensitive,
        ),
        rt.inventory(),
    )
    return {"id": ticket_id}


@router.get("/tickets/{ticket_id}", summary="A builtin ticket with its trail and jobs")
def show_ticket(request: Request, who: Caller, ticket_id: str) -> dict[str, Any]:
    who.require("read")
    rt = _state(request).runtime
    reveal = who.may("reveal")
    data: dict[str, Any] = dict(ticket_dict(rt.tickets.get(ticket_id, reveal=reveal)))
    data["comments"] = [
        {"author": c.author, "body": c.body, "internal": c.internal, "at": c.at.isoformat()}
        for c in rt.tickets.comments(ticket_id, reveal=reveal)
    ]
    data["jobs"] = [job_dict(j) for j in store.jobs_of_ticket(rt.db, data["id"])]
    return data


@router.post("/tickets/{ticket_id}/approve", summary="Approve a builtin ticket as the caller")
def approve_ticket(request: Request, who: Caller, ticket_id: str) -> dict[str, str]:
    who.require("approve")
    _state(request).runtime.tickets.approve(ticket_id, who.name)
    return {"id": ticket_id, "approver": who.name}


@router.post("/tickets/{ticket_id}/revoke", summary="Withdraw a builtin ticket's approval")
def revoke_ticket(request: Request, who: Caller, ticket_id: str) -> dict[str, str]:
    who.require("approve")
    _state(request).runtime.tickets.revoke(ticket_id, who.name)
    return {"id": ticket_id, "status": "new"}


@router.post("/tickets/{ticket_id}/run", summary="Make the jobs of an approved builtin ticket")
def run_ticket(request: Request, who: Caller, ticket_id: str) -> dict[str, Any]:
    who.require("run")
    state = _state(request)
    rt = state.runtime
    ticket = rt.tickets.get(ticket_id)
    approval = rt.tickets.approval(ticket.id)
    ids = store.create_jobs_for_ticket(
        rt.db, ticket, approval.approver, f"api:{who.name}", inventory=rt.inventory()
    )
    state.wake()
    return {"ticket": ticket.id, "jobs": ids}


@router.get("/jobs", summary="Recent jobs")
def list_jobs(
    request: Request,
    who: Caller,
    active: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    who.require("read")
    return [job_dict(j) for j in store.list_jobs(_state(request).runtime.db, active_only=active, limit=limit)]


@router.get("/jobs/{job_id}", summary="A job with its steps and callbacks")
def show_job(request: Request, who: Caller, job_id: int) -> dict[str, Any]:
    who.require("read")
    db = _state(request).runtime.db
    _job_id(job_id)
    with db.session() as s:
        job = store.get_job(s, job_id)
        data = job_dict(job, store.steps_of(s, job_id))
        sensitive = job.sensitive
    # What an installer reported for a sensitive ticket's job is that ticket's content: reveal only.
    data["callbacks"] = (
        callbacks.callbacks_of(db, job_id)
        if not sensitive or who.may("reveal")
        else "[sensitive: reveal needed]"
    )
    return data


def _job_id(job_id: int) -> int:
    if job_id < 1 or job_id > 2**62:
        raise BadInput(f"no job {job_id}", fix="job ids are positive integers")
    return job_id


@router.post("/jobs/{job_id}/cancel", summary="Cancel a job (a running one stops at its next step)")
def cancel_job(request: Request, who: Caller, job_id: int) -> dict[str, Any]:
    who.require("cancel")
    state = store.request_cancel(_state(request).runtime.db, _job_id(job_id), f"api:{who.name}")
    _state(request).wake()
    return {"id": job_id, "state": state.value}


@router.post("/jobs/{job_id}/confirm", summary="Confirm a job's manual step was done")
def confirm_job(request: Request, who: Caller, job_id: int) -> dict[str, Any]:
    who.require("confirm")
    store.confirm_manual(_state(request).runtime.db, _job_id(job_id), who.name)
    _state(request).wake()
    return {"id": job_id, "confirmed_by": who.name}


@router.post("/jobs/{job_id}/retry", summary="Put a needs_operator job back in the queue")
def retry_job(request: Request, who: Caller, job_id: int) -> dict[str, Any]:
    who.require("run")
    state = store.request_retry(_state(request).runtime.db, _job_id(job_id), f"api:{who.name}")
    _state(request).wake()
    return {"id": job_id, "state": state.value}


@router.get("/webhooks", summary="Webhook deliveries received and what became of them")
def list_deliveries(request: Request, who: Caller, ticket: str | None = None) -> list[dict[str, Any]]:
    who.require("admin")
    return [dict(d) for d in webhooks.deliveries(_state(request).runtime, ticket)]
