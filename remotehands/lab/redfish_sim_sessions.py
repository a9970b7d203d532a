"""The session service of the lab's Redfish service: one account, session tokens, and HTTP Basic.

``POST /redfish/v1/SessionService/Sessions`` with ``UserName``/``Password`` answers 201 with an
``X-Auth-Token`` and a ``Location``; DELETE of that location ends the session. ``who`` tells which session
(or ``basic``) a request is made under. Login and logout are command-log lines of the service (``bmc`` =
its name), as a session belongs to no system.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import secrets
import threading
from collections.abc import Callable
from email.message import Message
from typing import Any

from remotehands.lab.redfish_sim_http import Answer
from remotehands.lab.redfish_sim_system import base_fault

ROOT = "/redfish/v1"
SESSIONS = f"{ROOT}/SessionService/Sessions"


class SessionService:
    """Sessions of ``username``/``password``. Thread-safe. ``log(bmc, command, **fields)`` writes lines."""

    def __init__(
        self, username: str, password: str, log: Callable[..., None], service_name: str = "redfish"
    ) -> None:
        self.username = username
        self.password = password
        self.service_name = service_name
        self._log = log
        self._lock = threading.Lock()
        self._tokens: dict[str, str] = {}  # token -> session id
        self._counter = 0

    def drop(self) -> None:
        """Forget every session token: the next request with one is answered 401."""
        with self._lock:
            self._tokens.clear()

    def login(self, body: dict[str, Any]) -> Answer:
        """Answer a login POST; raises a 401 ``RedfishFault`` for wrong credentials."""
        user, password = body.get("UserName"), body.get("Password")
        if not (isinstance(user, str) and isinstance(password, str) and self._valid(user, password)):
            self._log(self.service_name, "session_login", user=str(user), status=401)
            raise base_fault(401, "ResourceAtUriUnauthorized", "The user name or password is not valid.")
        token = secrets.token_hex(16)
        with self._lock:
            self._counter += 1
            session_id = str(self._counter)
            self._tokens[token] = session_id
        self._log(self.service_name, "session_login", user=user, session=session_id, status=201)
        location = f"{SESSIONS}/{session_id}"
        payload = {"@odata.id": location, "Id": session_id, "Name": "User Session", "UserName": user}
        return 201, payload, {"X-Auth-Token": token, "Location": location}

    def who(self, headers: Message) -> str | None:
        """The session id (or ``basic``) the request is made under, or None when it has no valid credentials."""
        token = headers.get("X-Auth-Token")
        if token:
            with self._lock:
                return self._tokens.get(token)
        scheme, _, encoded = (headers.get("Authorization") or "").partition(" ")
        if scheme.lower() == "basic":
            with contextlib.suppress(binascii.Error, UnicodeDecodeError):
                user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
                if self._valid(user, password):
                    return "basic"
        return None

    def answer(self, method: str, parts: list[str], auth: str) -> Answer:
        """Answer a request under ``SessionService`` (``parts`` from there on) made under ``auth``."""
        if len(parts) == 1:
            _only(method, "GET")
            return 200, {"@odata.id": f"{ROOT}/SessionService", "Sessions": {"@odata.id": SESSIONS}}, {}
        if len(parts) == 2:
            _only(method, "GET")
            with self._lock:
                ids = sorted(self._tokens.values(), key=int)
            return (
                200,
                {"@odata.id": SESSIONS, "Members": [{"@odata.id": f"{SESSIONS}/{i}"} for i in ids]},
                {},
            )
        _only(method, "GET", "DELETE")
        session_id = parts[2]
        with self._lock:
            tokens = [t for t, s in self._tokens.items() if s == session_id]
            if method == "DELETE":
                for token in tokens:
                    del self._tokens[token]
        if not tokens:
            raise base_fault(404, "ResourceMissingAtURI", f"There is no session {session_id}.")
        if method == "GET":
            return (
                200,
                {"@odata.id": f"{SESSIONS}/{session_id}", "Id": session_id, "UserName": self.username},
                {},
            )
        self._log(self.service_name, "session_logout", session=session_id, by=auth, status=204)
        return 204, None, {}

    def _valid(self, user: str, password: str) -> bool:
        return hmac.compare_digest(user.encode(), self.username.encode()) & hmac.compare_digest(
            password.encode(), self.password.encode()
        )


def _only(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise base_fault(
            405, "OperationNotAllowed", f"{method} is not allowed here; use {', '.join(allowed)}."
        )
