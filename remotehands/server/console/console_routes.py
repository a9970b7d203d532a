"""The operator console under ``/console``: log in with an API token, then the queue, a ticket, a job (live
over server-sent events, with cancel and confirm buttons for the roles allowed to), the fleet.

Every page reads through the same library calls as ``/api`` and the CLI, with the caller's role from
``server.tokens``; every form posts the session's CSRF token and is checked for a same-origin ``Origin``.
Errors render as a page naming what went wrong and the fix (``errors.install``); a request without a
valid login is sent to the login page.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import quote

import anyio
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from remotehands.errors import BadInput, NotAuthenticated
from remotehands.jobs import store
from remotehands.server.console import sessions, templates, views
from remotehands.server.state import ServerState

router = APIRouter(prefix="/console", tags=["console"], include_in_schema=False)
HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
}


def _rt(request: Request) -> Any:
    state: ServerState = request.app.state.rh
    return state.runtime


async def login_of(request: Request) -> sessions.Login:
    return await run_in_threadpool(sessions.lookup, _rt(request).db, request.cookies.get(sessions.COOKIE))


Who = Annotated[sessions.Login, Depends(login_of)]


def page(request: Request, name: str, who: sessions.Login | None, **context: Any) -> HTMLResponse:
    response: HTMLResponse = templates.TemplateResponse(
        request, name, {"who": who, **context}, headers=HEADERS
    )
    return response


def _same_origin(request: Request) -> None:
    origin = request.headers.get("origin")
    if origin is not None and origin.rstrip("/") != str(request.base_url).rstrip("/"):
        raise NotAuthenticated("the form came from another site", fix="use the console's own pages")


def _posted(request: Request, who: sessions.Login, csrf: str | None) -> None:
    _same_origin(request)
    who.check_csrf(csrf)


# -- login -------------------------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> HTMLResponse:
    return page(request, "login.html", None, error=None)


@router.post("/login")
def login(request: Request, token: Annotated[str, Form()] = "") -> Response:
    _same_origin(request)
    try:
        sid = sessions.start(_rt(request).db, token)
    except NotAuthenticated as exc:
        return page(request, "login.html", None, error=exc.message)
    response = RedirectResponse("/console/", status_code=303)
    response.set_cookie(
        sessions.COOKIE,
        sid,
        max_age=int(sessions.LIFETIME.total_seconds()),
        path="/console",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
def logout(request: Request, who: Who, csrf: Annotated[str | None, Form()] = None) -> Response:
    _posted(request, who, csrf)
    sessions.end(_rt(request).db, request.cookies.get(sessions.COOKIE))
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(sessions.COOKIE, path="/console")
    return response


# -- pages -------------------------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def queue_page(
    request: Request,
    who: Who,
    site: Annotated[str | None, Query(max_length=64)] = None,
    severity: Annotated[int | None, Query(ge=1, le=5)] = None,
) -> HTMLResponse:
    who.caller.require("read")
    rt = _rt(request)
    rows = views.queue(rt, who.caller, site=site or None, severity=severity)
    sites = sorted(rt.inventory().sites)
    return page(request, "queue.html", who, rows=rows, sites=sites, site=site, severity=severity)


@router.get("/tickets/{ticket_id}", response_class=HTMLResponse)
def ticket_page(request: Request, who: Who, ticket_id: str) -> HTMLResponse:
    who.caller.require("read")
    return page(request, "ticket.html", who, **views.ticket_page(_rt(request), who.caller, ticket_id))


@router.post("/tickets/{ticket_id}/approve")
def approve(
    request: Request, who: Who, ticket_id: str, csrf: Annotated[str | None, Form()] = None
) -> Response:
    _posted(request, who, csrf)
    who.caller.require("approve")
    _rt(request).tickets.approve(ticket_id, who.caller.name)
    return RedirectResponse(f"/console/tickets/{quote(ticket_id)}", status_code=303)


@router.get("/tickets/{ticket_id}/attachments/{name}")
def attachment(request: Request, who: Who, ticket_id: str, name: str) -> Response:
    """An attachment (a diff, a session log; redacted when stored) as plain text in the browser."""
    who.caller.require("read")
    rt = _rt(request)
    if rt.tickets.get(ticket_id, reveal=False).sensitive:
        who.caller.require("reveal")
    content = rt.tickets.attachment_content(ticket_id, name)
    return PlainTextResponse(content.decode("utf-8", "replace"), headers=HEADERS)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, who: Who, job_id: int) -> HTMLResponse:
    who.caller.require("read")
    if job_id < 1 or job_id > 2**62:
        raise BadInput(f"no job {job_id}", fix="job ids are positive integers")
    rt = _rt(request)
    job = views.job_page(rt, job_id)
    return page(request, "job.html", who, job=job, attachments=views.job_attachments(rt, who.caller, job))


@router.post("/jobs/{job_id}/cancel")
def cancel(request: Request, who: Who, job_id: int, csrf: Annotated[str | None, Form()] = None) -> Response:
    _posted(request, who, csrf)
    who.caller.require("cancel")
    store.request_cancel(_rt(request).db, job_id, f"console:{who.caller.name}")
    return RedirectResponse(f"/console/jobs/{job_id}", status_code=303)


@router.post("/jobs/{job_id}/confirm")
def confirm(request: Request, who: Who, job_id: int, csrf: Annotated[str | None, Form()] = None) -> Response:
    _posted(request, who, csrf)
    who.caller.require("confirm")
    store.confirm_manual(_rt(request).db, job_id, who.caller.name)
    return RedirectResponse(f"/console/jobs/{job_id}", status_code=303)


@router.get("/fleet", response_class=HTMLResponse)
def fleet_page(request: Request, who: Who) -> HTMLResponse:
    who.caller.require("read")
    return page(request, "fleet.html", who, sites=views.fleet(_rt(request)))


# -- live job updates --------------------------------------------------------------------------------------

STREAM_S = 300.0  # a stream ends after this; the browser reconnects (EventSource does by itself)
POLL_S = 0.5


async def _job_to_follow(request: Request, who: Who, job_id: int) -> int:
    """Checked before the stream starts, so an unknown job or a missing permission is an HTTP error."""
    who.caller.require("read")
    await run_in_threadpool(views.job_page, _rt(request), job_id)
    return job_id


@router.get("/jobs/{job_id}/events", response_class=EventSourceResponse)
async def job_events(
    request: Request, who: Who, job_id: Annotated[int, Depends(_job_to_follow)]
) -> AsyncIterator[ServerSentEvent]:
    """Server-sent events for a job page: ``steps`` (the steps table and state, as HTML rendered by the same
    template as the page) whenever the job changed, then ``done`` once it ended."""
    rt = _rt(request)
    seen: str | None = None
    deadline = anyio.current_time() + STREAM_S
    while anyio.current_time() < deadline:
        job = await run_in_threadpool(views.job_page, rt, job_id)
        if job["version"] != seen:
            seen = job["version"]
            fragment = templates.get_template("_job_live.html").render(job=job, who=who)
            yield ServerSentEvent(raw_data=fragment, event="steps")
        if not job["active"]:
            yield ServerSentEvent(raw_data=job["state"], event="done")
            return
        await anyio.sleep(POLL_S)
