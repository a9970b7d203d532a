"""HTTPS plumbing of the lab's Redfish service: a threading server that answers JSON, keeps connections alive.

Each accepted connection gets its own thread, which does the TLS handshake itself (a server that wraps its
listening socket handshakes in ``accept()``, so one slow client would hold up everyone). Responses are
written in one piece, with Nagle off, so a kept-alive request costs one TLS record each way and no
delayed-ACK stall. What to answer is the ``JsonService``'s business; this module only speaks HTTP/1.1.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import threading
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

log = logging.getLogger(__name__)

IDLE_SECONDS = 60.0  # a kept-alive connection idle this long is closed
HANDSHAKE_SECONDS = 10.0

# status, JSON body (None: empty; a list for APIs whose collections are arrays), extra headers
Answer = tuple[int, dict[str, Any] | list[Any] | None, dict[str, str]]


class JsonService(Protocol):
    """Answers one request whose body (if any) is a JSON object."""

    def answer(self, method: str, path: str, headers: Message, body: dict[str, Any] | None) -> Answer: ...


class TlsJsonServer(ThreadingHTTPServer):
    """Serves ``service`` over HTTPS on ``address``; ``serve_forever`` in a thread, then ``stop``."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], service: JsonService, tls: ssl.SSLContext) -> None:
        self.service = service
        self.tls = tls
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(HANDSHAKE_SECONDS)
        try:
            conn = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.debug("TLS handshake with %s failed: %s", client_address, exc)
            return
        with self._open_lock:
            self._open.add(conn)
        try:
            _Handler(conn, client_address, self)
        except OSError as exc:  # ssl.SSLError is an OSError: a client that went away
            log.debug("connection from %s ended: %s", client_address, exc)
        finally:
            with self._open_lock:
                self._open.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()

    def close_connections(self) -> None:
        """Shut down every open connection (their threads then end)."""
        with self._open_lock:
            conns = list(self._open)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("the lab's HTTPS server failed on a request from %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "remotehands-lab"
    disable_nagle_algorithm = True
    timeout = IDLE_SECONDS
    server: TlsJsonServer

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body: dict[str, Any] | None = None
        if raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
            if not isinstance(parsed, dict):
                problem = {
                    "error": {"code": "Base.1.16.MalformedJSON", "message": "The body is not a JSON object."}
                }
                self._send(400, problem, {})
                return
            body = parsed
        try:
            answer = self.server.service.answer(method, self.path, self.headers, body)
        except Exception:
            log.exception("the lab's Redfish service failed on %s %s", method, self.path)
            answer = (500, {"error": {"code": "Base.1.16.InternalError", "message": "simulator error"}}, {})
        self._send(*answer)

    def _send(self, status: int, payload: dict[str, Any] | list[Any] | None, extra: dict[str, str]) -> None:
        data = json.dumps(payload).encode() if payload is not None else b""
        lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", "OData-Version: 4.0"]
        if payload is not None:
            lines.append("Content-Type: application/json; charset=utf-8")
        lines += [f"{name}: {value}" for name, value in extra.items()]
        lines.append(f"Content-Length: {len(data)}")
        if self.close_connection:
            lines.append("Connection: close")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        """Requests go to the lab's command log; no line per request on stderr."""
