"""A Zendesk Support simulator, after Zendesk's public Ticketing API documentation.

It serves what the adapter uses: show and update a ticket (with the ``users`` sideload), list a ticket's
comments (cursor pagination with ``page[size]`` up to 100, ``meta.has_more``/``after_cursor`` and
``links.next``; offset pagination without it), show a user, and upload a file for a later comment. Basic
auth is ``{e-mail}/token`` with the API token; errors have Zendesk's shapes (``{"error": "Couldn't
authenticate you"}``, ``{"error": "RecordNotFound", "description": "Not found"}``, ``RecordInvalid`` with
per-field ``details``). A closed ticket refuses every update; ``new`` is accepted only while a ticket is
new. Tests seed and inspect it through its methods, not over HTTP.
"""

from __future__ import annotations

import base64
import mimetypes
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, Response

from remotehands.lab.ticket_sims.harness import Faults, fault_middleware

STATUSES = ("new", "open", "pending", "hold", "solved", "closed")
PAGE_MAX = 100
START = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


@dataclass
class _Ticket:
    id: int
    subject: str
    description: str
    status: str
    priority: str | None
    requester_id: int
    created: datetime
    updated: datetime
    tags: list[str]
    custom: dict[int, Any]
    comments: list[dict[str, Any]] = field(default_factory=list)


def _time(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _cursor(index: int) -> str:
    return base64.urlsafe_b64encode(f"i{index}".encode()).decode().rstrip("=")


def _uncursor(cursor: str) -> int | None:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        return int(text[1:]) if text.startswith("i") else None
    except (ValueError, UnicodeDecodeError):
        return None


def _invalid(field_name: str, message: str) -> JSONResponse:
    return JSONResponse(
        {
            "error": "RecordInvalid",
            "description": "Record validation errors",
            "details": {field_name: [{"description": message, "error": "InvalidValue"}]},
        },
        status_code=422,
    )


class ZendeskSim:
    """In-memory Zendesk Support behind one lock. ``app`` is the ASGI app; ``uploads_received`` counts
    files uploaded."""

    def __init__(self, *, user: str, token: str, agent: str = "Remote Hands") -> None:
        self.user, self.token = user, token
        self.faults = Faults()
        self.uploads_received = 0
        self.sideload_users = True  # False: ignore ?include=users, as for an account without sideloading
        self._lock = threading.Lock()
        self._tickets: dict[int, _Ticket] = {}
        self._users: dict[int, dict[str, Any]] = {}
        self._uploads: dict[str, list[dict[str, Any]]] = {}
        self._ticks = 0
        self._ids = 1000
        self.agent_id = self._user_id(agent, role="agent")
        self.app = self._build_app()

    # -- seeding and inspecting (direct calls, no HTTP) -----------------------------------------------

    def create_ticket(
        self,
        *,
        subject: str,
        description: str = "",
        requester: str = "alice",
        priority: str | None = "high",
        status: str = "new",
        tags: tuple[str, ...] = (),
        fields: dict[int, Any] | None = None,
    ) -> str:
        """A ticket as an end user raises it: the description is its first, public comment."""
        with self._lock:
            requester_id = self._user_id(requester)
            now = self._now()
            ticket = _Ticket(
                id=len(self._tickets) + 1,
                subject=subject,
                description=description,
                status=status,
                priority=priority,
                requester_id=requester_id,
                created=now,
                updated=now,
                tags=list(tags),
                custom=dict(fields or {}),
            )
            self._add_comment(ticket, description or subject, True, requester_id, [])
            self._tickets[ticket.id] = ticket
            return str(ticket.id)

    def set_field(self, ticket_id: str, field_id: int, value: Any) -> None:
        with self._lock:
            self._tickets[int(ticket_id)].custom[field_id] = value

    def add_comment(self, ticket_id: str, body: str, *, public: bool = True, author: str = "carol") -> None:
        with self._lock:
            self._add_comment(self._tickets[int(ticket_id)], body, public, self._user_id(author), [])

    def comments(self, ticket_id: str) -> list[tuple[str, bool]]:
        """(body, internal) of every comment, oldest first."""
        with self._lock:
            return [(c["body"], not c["public"]) for c in self._tickets[int(ticket_id)].comments]

    def attachments(self, ticket_id: str) -> list[tuple[str, bytes]]:
        with self._lock:
            return [
                (a["file_name"], a["data"])
                for c in self._tickets[int(ticket_id)].comments
                for a in c["attachments"]
            ]

    def status(self, ticket_id: str) -> str:
        with self._lock:
            return self._tickets[int(ticket_id)].status

    def set_status(self, ticket_id: str, status: str) -> None:
        if status not in STATUSES:
            raise ValueError(status)
        with self._lock:
            self._tickets[int(ticket_id)].status = status

    # -- internals -------------------------------------------------------------------------------------

    def _now(self) -> datetime:
        self._ticks += 1
        return START + timedelta(seconds=self._ticks)

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    def _user_id(self, name: str, role: str = "end-user") -> int:
        for user_id, user in self._users.items():
            if user["name"] == name:
                return user_id
        user_id = self._next_id()
        email = f"{name.lower().replace(' ', '.')}@example.com"
        self._users[user_id] = {"id": user_id, "name": name, "email": email, "role": role}
        return user_id

    def _add_comment(
        self, ticket: _Ticket, body: str, public: bool, author_id: int, attachments: list[dict[str, Any]]
    ) -> None:
        ticket.comments.append(
            {
                "id": self._next_id(),
                "body": body,
                "public": public,
                "author_id": author_id,
                "attachments": attachments,
                "created": self._now(),
            }
        )
        ticket.updated = self._now()

    def _ticket_json(self, ticket: _Ticket, base: str) -> dict[str, Any]:
        custom = [{"id": k, "value": v} for k, v in ticket.custom.items()]
        return {
            "id": ticket.id,
            "url": f"{base}/api/v2/tickets/{ticket.id}.json",
            "subject": ticket.subject,
            "raw_subject": ticket.subject,
            "description": ticket.description,
            "status": ticket.status,
            "priority": ticket.priority,
            "type": "incident",
            "requester_id": ticket.requester_id,
            "submitter_id": ticket.requester_id,
            "assignee_id": None,
            "tags": list(ticket.tags),
            "custom_fields": custom,
            "fields": custom,
            "created_at": _time(ticket.created),
            "updated_at": _time(ticket.updated),
        }

    @staticmethod
    def _attachment_json(att: dict[str, Any], base: str) -> dict[str, Any]:
        return {
            "id": att["id"],
            "file_name": att["file_name"],
            "content_type": att["content_type"],
            "content_url": f"{base}/attachments/token/{att['token']}/?name={att['file_name']}",
            "size": len(att["data"]),
            "inline": False,
            "deleted": False,
        }

    def _comment_json(self, comment: dict[str, Any], base: str) -> dict[str, Any]:
        return {
            "id": comment["id"],
            "type": "Comment",
            "author_id": comment["author_id"],
            "body": comment["body"],
            "plain_body": comment["body"],
            "public": comment["public"],
            "attachments": [self._attachment_json(a, base) for a in comment["attachments"]],
            "created_at": _time(comment["created"]),
        }

    def _authorized(self, request: Request) -> bool:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            login, _, token = base64.b64decode(encoded).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return secrets.compare_digest(login, f"{self.user}/token") and secrets.compare_digest(
            token, self.token
        )

    def _update(self, ticket: _Ticket, changes: dict[str, Any]) -> JSONResponse | None:
        """Apply a ticket update; a validation error response, or None once applied."""
        if ticket.status == "closed":
            return _invalid("status", "Status: closed prevents ticket update")
        status = changes.get("status")
        if status is not None and (status not in STATUSES or (status == "new" and ticket.status != "new")):
            return _invalid("status", f"Status: {status} is not valid for this ticket")
        comment = changes.get("comment")
        if comment is not None and not isinstance(comment, dict):
            return _invalid("comment", "Comment: is invalid")
        if comment is not None and not str(comment.get("body") or comment.get("html_body") or "").strip():
            return _invalid("comment", "Comment: cannot be blank")
        for entry in changes.get("custom_fields") or []:
            ticket.custom[int(entry["id"])] = entry.get("value")
        if comment is not None:
            attachments = [a for token in comment.get("uploads") or [] for a in self._uploads.pop(token, [])]
            body = str(comment.get("body") or comment.get("html_body"))
            self._add_comment(ticket, body, bool(comment.get("public", True)), self.agent_id, attachments)
        if status is not None:
            ticket.status = status
        ticket.updated = self._now()
        return None

    def _build_app(self) -> FastAPI:
        app = FastAPI(title="Zendesk Support simulator")

        async def auth(request: Request, call_next: Any) -> Response:
            if not self._authorized(request):
                return JSONResponse({"error": "Couldn't authenticate you"}, status_code=401)
            response: Response = await call_next(request)
            return response

        app.middleware("http")(auth)
        app.middleware("http")(fault_middleware(self.faults))  # outermost: faults before auth

        missing = {"error": "RecordNotFound", "description": "Not found"}

        def base(request: Request) -> str:
            return str(request.base_url).rstrip("/")

        def find(ticket_id: str) -> _Ticket | None:
            return self._tickets.get(int(ticket_id)) if ticket_id.isdigit() else None

        @app.get("/api/v2/tickets/{ticket_id}.json")
        async def show_ticket(ticket_id: str, request: Request) -> Response:
            include = set((request.query_params.get("include") or "").split(","))
            with self._lock:
                ticket = find(ticket_id)
                if ticket is None:
                    return JSONResponse(missing, status_code=404)
                body: dict[str, Any] = {"ticket": self._ticket_json(ticket, base(request))}
                if "users" in include and self.sideload_users:
                    body["users"] = [dict(self._users[ticket.requester_id])]
                return JSONResponse(body)

        @app.put("/api/v2/tickets/{ticket_id}.json")
        async def update_ticket(ticket_id: str, request: Request) -> Response:
            payload = await request.json()
            changes = payload.get("ticket") if isinstance(payload, dict) else None
            if not isinstance(changes, dict):
                return JSONResponse({"error": "InvalidEndpoint", "description": "ticket is missing"}, 400)
            with self._lock:
                ticket = find(ticket_id)
                if ticket is None:
                    return JSONResponse(missing, status_code=404)
                refusal = self._update(ticket, changes)
                if refusal is not None:
                    return refusal
                audit = {"id": self._next_id(), "ticket_id": ticket.id, "created_at": _time(ticket.updated)}
                return JSONResponse({"ticket": self._ticket_json(ticket, base(request)), "audit": audit})

        @app.get("/api/v2/tickets/{ticket_id}/comments.json")
        async def list_comments(ticket_id: str, request: Request) -> Response:
            query = request.query_params
            with self._lock:
                ticket = find(ticket_id)
                if ticket is None:
                    return JSONResponse(missing, status_code=404)
                comments = [self._comment_json(c, base(request)) for c in ticket.comments]
            here = f"{base(request)}/api/v2/tickets/{ticket_id}/comments.json"
            if "page[size]" in query:
                size = max(1, min(int(query["page[size]"]), PAGE_MAX))
                after = query.get("page[after]")
                start = _uncursor(after) if after else 0
                if start is None:
                    return JSONResponse({"error": "InvalidPaginationParameter"}, status_code=400)
                chunk = comments[start : start + size]
                more = start + len(chunk) < len(comments)
                end = start + len(chunk)
                return JSONResponse(
                    {
                        "comments": chunk,
                        "meta": {
                            "has_more": more,
                            "after_cursor": _cursor(end),
                            "before_cursor": _cursor(start),
                        },
                        "links": {
                            "next": f"{here}?page[size]={size}&page[after]={_cursor(end)}" if more else None,
                            "prev": f"{here}?page[size]={size}&page[before]={_cursor(start)}",
                        },
                    }
                )
            page = max(1, int(query.get("page", "1")))
            per_page = max(1, min(int(query.get("per_page", str(PAGE_MAX))), PAGE_MAX))
            chunk = comments[(page - 1) * per_page : page * per_page]
            more = page * per_page < len(comments)
            return JSONResponse(
                {
                    "comments": chunk,
                    "next_page": f"{here}?page={page + 1}&per_page={per_page}" if more else None,
                    "previous_page": f"{here}?page={page - 1}&per_page={per_page}" if page > 1 else None,
                    "count": len(comments),
                }
            )

        @app.get("/api/v2/users/{user_id}.json")
        async def show_user(user_id: str) -> Response:
            with self._lock:
                user = self._users.get(int(user_id)) if user_id.isdigit() else None
                if user is None:
                    return JSONResponse(missing, status_code=404)
                return JSONResponse({"user": dict(user)})

        @app.post("/api/v2/uploads.json")
        async def upload(request: Request) -> Response:
            filename = request.query_params.get("filename")
            if not filename:
                return _invalid("filename", "Filename: cannot be blank")
            data = await request.body()
            with self._lock:
                token = request.query_params.get("token") or secrets.token_hex(12)
                att = {
                    "id": self._next_id(),
                    "file_name": filename,
                    "content_type": mimetypes.guess_type(filename)[0] or "application/octet-stream",
                    "data": data,
                    "token": secrets.token_hex(8),
                }
                self._uploads.setdefault(token, []).append(att)
                self.uploads_received += 1
                shown = [self._attachment_json(a, base(request)) for a in self._uploads[token]]
            expires = _time(START + timedelta(days=3, seconds=self._ticks))
            return JSONResponse(
                {
                    "upload": {
                        "token": token,
                        "expires_at": expires,
                        "attachment": shown[-1],
                        "attachments": shown,
                    }
                },
                status_code=201,
            )

        return app
