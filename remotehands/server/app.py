"""The FastAPI application: ``create_app()`` builds it; ``remotehands serve`` runs it on uvicorn.

    POST /webhooks/{provider}    signed ticket webhooks (202; processed after)
    POST /callbacks/{job}        installers and agents reporting for a job, with the job's token
    /api/...                     tickets and jobs, for callers with an API token bound to a role
    GET  /metrics                Prometheus
    GET  /status, /status.json   the public site status page (no login)
    /console/...                 the operator console (log in with an API token; server.console)
    GET  /healthz                the database answers
    GET  /openapi.json           the API described

Handlers are thin: everything they do is a library call that the CLI makes too. With the ``local`` executor
the app also runs the jobs (``server.engine``); with ``celery`` the workers do.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from remotehands.runtime import Runtime
from remotehands.server import api_routes, errors, intake_routes
from remotehands.server.console import STATIC, console_routes, status_routes
from remotehands.server.engine import Engine
from remotehands.server.metrics import Metrics
from remotehands.server.state import ServerState


def create_app(runtime: Runtime | None = None, *, engine: bool = True) -> FastAPI:
    """The application. ``engine=False`` serves HTTP only (intake stored, nothing processed): for
    benchmarks and for a server in front of Celery workers that process elsewhere."""
    rt = runtime or Runtime()
    state = ServerState(runtime=rt, metrics=Metrics(rt))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(lambda: rt.db)  # migrate before the first request
        if engine:
            state.engine = Engine(rt, run_jobs=rt.settings.executor == "local")
            state.engine.start()
        try:
            yield
        finally:
            if state.writer is not None:
                await state.writer.close()
            if state.engine is not None:
                await run_in_threadpool(state.engine.stop)

    app = FastAPI(
        title="remotehands",
        summary="Approved tickets become verified, resumable jobs on datacenter equipment.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.rh = state
    errors.install(app)
    app.include_router(intake_routes.router)
    app.include_router(api_routes.router)
    app.include_router(status_routes.router)
    app.include_router(console_routes.router)
    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")

    @app.get("/healthz", tags=["ops"], summary="The server and its database answer")
    def healthz() -> JSONResponse:
        try:
            with rt.db.session() as s:
                s.execute(text("SELECT 1"))
        except Exception as exc:
            return JSONResponse({"status": "unhealthy", "db": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ok", "db": "ok", "executor": rt.settings.executor})

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics")
    def metrics(request: Request) -> Response:
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
