"""Run an ASGI app (a ticket system simulator, or remotehands' own server) on 127.0.0.1 in a thread.

Every simulator shares the fault switches here: answer the next N calls with 429 and a ``Retry-After``,
or with 503, so each adapter's rate-limit handling is tested at the wire.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse, Response


@dataclass
class Faults:
    """Fault switches shared by a simulator's handlers. ``requests`` counts every call received."""

    throttle_next: int = 0
    retry_after: str = "1"
    fail_next: int = 0
    requests: int = 0
    throttled: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def throttle(self, count: int, retry_after: str = "1") -> None:
        with self.lock:
            self.throttle_next, self.retry_after = count, retry_after

    def fail(self, count: int) -> None:
        with self.lock:
            self.fail_next = count

    def reset(self) -> None:
        """Disarm every fault and zero every counter, as a fresh ``Faults()``."""
        with self.lock:
            self.throttle_next = self.fail_next = self.requests = self.throttled = 0
            self.retry_after = "1"

    def take(self) -> Response | None:
        """The fault to answer this request with, if one is armed."""
        with self.lock:
            self.requests += 1
            if self.throttle_next > 0:
                self.throttle_next -= 1
                self.throttled += 1
                return JSONResponse(
                    {"error": "rate limited"}, status_code=429, headers={"Retry-After": self.retry_after}
                )
            if self.fail_next > 0:
                self.fail_next -= 1
                return JSONResponse({"error": "simulated outage"}, status_code=503)
        return None


def fault_middleware(
    faults: Faults,
) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    async def middleware(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if not request.url.path.startswith("/_sim"):
            fault = faults.take()
            if fault is not None:
                return fault
        return await call_next(request)

    return middleware


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ServerThread:
    """uvicorn serving ``app`` on 127.0.0.1 in a daemon thread; ``url`` once started."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=host,
                port=self.port,
                log_level="warning",
                lifespan="auto",
                timeout_graceful_shutdown=5,  # an open event stream must not hold the stop
            )
        )
        self._thread = threading.Thread(target=self._run, name=f"http-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        asyncio.run(self.server.serve())

    def start(self, timeout: float = 10.0) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on {self.url} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)
