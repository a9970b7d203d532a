"""The public status page, no login: ``GET /status`` (HTML, refreshes itself every 30 s) and ``GET
/status.json`` (Statuspage's summary shape). See ``remotehands.status.summary`` for what is shown and what
never is."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from remotehands.server.console import templates
from remotehands.server.state import ServerState
from remotehands.status import summary

router = APIRouter(tags=["status"])
NO_STORE = {"Cache-Control": "no-store"}


def _now_summary(request: Request) -> summary.Summary:
    state: ServerState = request.app.state.rh
    rt = state.runtime
    return summary.summary(rt.db, sorted(rt.inventory().sites))


@router.get("/status.json", summary="Per site status, incidents and maintenance (public)")
async def status_json(request: Request) -> JSONResponse:
    result = await run_in_threadpool(_now_summary, request)
    return JSONResponse(summary.as_json(result), headers=NO_STORE)


@router.get("/status", response_class=HTMLResponse, summary="The public status page")
async def status_page(request: Request) -> Any:
    result = await run_in_threadpool(_now_summary, request)
    return templates.TemplateResponse(
        request, "status.html", {"summary": result, "states": summary.STATES}, headers=NO_STORE
    )
