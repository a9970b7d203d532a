"""A Jira Service Management Cloud simulator, after Atlassian's public REST documentation.

It serves what the adapter uses of the platform API v2 (issue, transitions, attachments) and of the JSM
API (request comments and approvals), with Basic auth (account e-mail + API token), Jira's error bodies
(``errorMessages``/``errors`` for the platform, ``errorMessage`` for JSM), JSM paging (``start``,
``limit`` capped at 50, ``isLastPage``), a service-request workflow with approvals, and the shared fault
switches. Tests seed and inspect it through its methods, not over HTTP.

Workflow: any status can move to any other, except that Closed is reached only from Resolved or Declined,
a Closed issue can only be reopened (to Waiting for support), and Declined is reached only by declining an
approval. Approving a request waiting for approval moves it to Waiting for support.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI, Request
from starlette.datastructures import UploadFile
from starlette.responses import JSONResponse, PlainTextResponse, Response

from remotehands.lab.ticket_sims.harness import Faults, fault_middleware

# The workflow's statuses: name, status category key, name of the transition into it.
WORKFLOW = (
    ("Waiting for approval", "new", "Request approval"),
    ("Waiting for support", "new", "Back to support"),
    ("In Progress", "indeterminate", "Start work"),
    ("Waiting for customer", "indeterminate", "Ask customer"),
    ("Under review", "indeterminate", "Review"),
    ("Escalated", "indeterminate", "Escalate"),
    ("Resolved", "done", "Resolve"),
    ("Closed", "done", "Close"),
    ("Declined", "done", "Decline"),
)
STATUSES = {name: category for name, category, _ in WORKFLOW}
TRANSITION_NAMES = {name: transition for name, _, transition in WORKFLOW}
NOT_FOUND = "Issue does not exist or you do not have permission to see it."
NOT_AUTHENTICATED = "You are not authenticated. Authentication required to perform this operation."
COMMENT_PAGE_MAX = 50
START = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


@dataclass
class _Issue:
    number: int
    key: str
    summary: str
    description: str
    status: str
    priority: str
    reporter: str
    created: datetime
    labels: list[str]
    custom: dict[str, Any] = field(default_factory=dict)
    comments: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    approvals: list[dict[str, Any]] = field(default_factory=list)


def _jira_time(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}+0000"


def _date_dto(when: datetime) -> dict[str, Any]:
    return {
        "iso8601": when.strftime("%Y-%m-%dT%H:%M:%S+0000"),
        "jira": _jira_time(when),
        "epochMillis": int(when.timestamp() * 1000),
    }


def _user(name: str) -> dict[str, Any]:
    return {
        "accountId": "5b10ac8d82e05b" + hashlib.sha256(name.encode()).hexdigest()[:10],
        "displayName": name,
        "emailAddress": f"{name.lower().replace(' ', '.')}@example.com",
        "active": True,
    }


def _platform_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"errorMessages": [message], "errors": {}}, status_code=status)


def transitions_from(status: str) -> list[str]:
    """The statuses the workflow lets an issue in ``status`` move to."""
    if status == "Closed":
        return ["Waiting for support"]
    targets = [s for s in STATUSES if s not in (status, "Declined")]
    if status not in ("Resolved", "Declined"):
        targets.remove("Closed")
    return targets


class JiraSim:
    """In-memory Jira Service Management: issues of one project, behind one lock. ``app`` is the ASGI app."""

    def __init__(self, *, user: str, token: str, project: str = "HW", agent: str = "Remote Hands") -> None:
        self.user, self.token, self.project, self.agent = user, token, project, agent
        self.faults = Faults()
        self._lock = threading.Lock()
        self._issues: dict[str, _Issue] = {}
        self._ticks = 0
        self._ids = 10000
        self.app = self._build_app()

    # -- seeding and inspecting (direct calls, no HTTP) -----------------------------------------------

    def create_issue(
        self,
        *,
        summary: str,
        description: str = "",
        reporter: str = "alice",
        priority: str = "High",
        labels: tuple[str, ...] = (),
        fields: dict[str, Any] | None = None,
        status: str = "Waiting for approval",
        approval: bool = True,
    ) -> str:
        """A new request; with ``approval`` it waits on a pending approval. Returns its key."""
        with self._lock:
            number = len(self._issues) + 1
            key, created = f"{self.project}-{number}", self._now()
            issue = _Issue(number, key, summary, description, status, priority, reporter, created, [*labels])
            issue.custom.update(fields or {})
            if approval:
                issue.approvals.append(self._new_approval("pending", None))
            self._issues[issue.key] = issue
            return issue.key

    def set_approval(self, key: str, decision: str, approver: str) -> None:
        """Decide the pending approval, or add a new one when none is pending (a new approval step)."""
        if decision not in ("approved", "declined", "pending"):
            raise ValueError(decision)
        with self._lock:
            issue = self._issues[key]
            pending = [a for a in issue.approvals if a["finalDecision"] == "pending"]
            if pending and decision != "pending":
                target = pending[-1]
                target["finalDecision"] = decision
                target["approvers"] = [{"approver": _user(approver), "approverDecision": decision}]
                target["completedDate"] = _date_dto(self._now())
            else:
                issue.approvals.append(self._new_approval(decision, approver or None))
            if issue.status == "Waiting for approval" and decision != "pending":
                issue.status = "Waiting for support" if decision == "approved" else "Declined"

    def add_comment(self, key: str, body: str, *, public: bool = True, author: str = "carol") -> None:
        with self._lock:
            self._add_comment(self._issues[key], body, public, author)

    def comments(self, key: str) -> list[tuple[str, bool]]:
        """(body, internal) of every comment, oldest first."""
        with self._lock:
            return [(c["body"], not c["public"]) for c in self._issues[key].comments]

    def attachments(self, key: str) -> list[tuple[str, bytes]]:
        with self._lock:
            return [(a["filename"], a["data"]) for a in self._issues[key].attachments]

    def status(self, key: str) -> str:
        with self._lock:
            return self._issues[key].status

    def set_status(self, key: str, status: str) -> None:
        if status not in STATUSES:
            raise ValueError(status)
        with self._lock:
            self._issues[key].status = status

    def set_field(self, key: str, name: str, value: Any) -> None:
        with self._lock:
            self._issues[key].custom[name] = value

    # -- internals -------------------------------------------------------------------------------------

    def _now(self) -> datetime:
        self._ticks += 1
        return START + timedelta(seconds=self._ticks)

    def _next_id(self) -> str:
        self._ids += 1
        return str(self._ids)

    def _new_approval(self, decision: str, approver: str | None) -> dict[str, Any]:
        approval: dict[str, Any] = {
            "id": self._next_id(),
            "name": "Please approve this request",
            "finalDecision": decision,
            "approvers": ([{"approver": _user(approver), "approverDecision": decision}] if approver else []),
            "createdDate": _date_dto(self._now()),
        }
        if decision != "pending":
            approval["completedDate"] = _date_dto(self._now())
        return approval

    def _add_comment(self, issue: _Issue, body: str, public: bool, author: str) -> dict[str, Any]:
        comment = {
            "id": self._next_id(),
            "body": body,
            "public": public,
            "author": _user(author),
            "created": self._now(),
        }
        issue.comments.append(comment)
        return comment

    def _find(self, key_or_id: str) -> _Issue | None:
        issue = self._issues.get(key_or_id.upper())
        if issue is None and key_or_id.isdigit():
            issue = next((i for i in self._issues.values() if str(10000 + i.number) == key_or_id), None)
        return issue

    def _issue_json(self, issue: _Issue, base: str, wanted: set[str] | None) -> dict[str, Any]:
        everything: dict[str, Any] = {
            "summary": issue.summary,
            "description": issue.description or None,
            "status": {
                "name": issue.status,
                "id": str(list(STATUSES).index(issue.status) + 1),
                "statusCategory": {"key": STATUSES[issue.status]},
            },
            "priority": {"name": issue.priority, "id": "2"},
            "reporter": _user(issue.reporter),
            "created": _jira_time(issue.created),
            "labels": list(issue.labels),
            "attachment": [self._attachment_json(a, base) for a in issue.attachments],
            **issue.custom,
        }
        fields = {k: v for k, v in everything.items() if wanted is None or k in wanted}
        issue_id = str(10000 + issue.number)
        return {
            "id": issue_id,
            "key": issue.key,
            "self": f"{base}/rest/api/2/issue/{issue_id}",
            "fields": fields,
        }

    @staticmethod
    def _attachment_json(att: dict[str, Any], base: str) -> dict[str, Any]:
        return {
            "id": att["id"],
            "filename": att["filename"],
            "size": len(att["data"]),
            "mimeType": att["mimeType"],
            "created": _jira_time(att["created"]),
            "author": _user(att["author"]),
            "content": f"{base}/rest/api/2/attachment/content/{att['id']}",
        }

    @staticmethod
    def _comment_json(comment: dict[str, Any]) -> dict[str, Any]:
        return {**comment, "created": _date_dto(comment["created"])}

    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, token = base64.b64decode(encoded).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return secrets.compare_digest(user, self.user) and secrets.compare_digest(token, self.token)

    def _build_app(self) -> FastAPI:
        app = FastAPI(title="Jira Service Management simulator")

        async def auth(request: Request, call_next: Any) -> Response:
            if not self._authorized(request):
                return _platform_error(401, NOT_AUTHENTICATED)
            response: Response = await call_next(request)
            return response

        app.middleware("http")(auth)
        app.middleware("http")(fault_middleware(self.faults))  # outermost: faults before auth

        def jsm_missing(key: str) -> JSONResponse:
            return JSONResponse(
                {
                    "errorMessage": f"The request '{key}' could not be found.",
                    "i18nErrorMessage": {"i18nKey": "sd.request.error.not.found", "parameters": [key]},
                },
                status_code=404,
            )

        def base(request: Request) -> str:
            return str(request.base_url).rstrip("/")

        @app.get("/rest/api/2/issue/{key}")
        async def get_issue(key: str, request: Request) -> Response:
            raw = request.query_params.get("fields")
            wanted = None if not raw or raw in ("*all", "*navigable") else set(raw.split(","))
            with self._lock:
                issue = self._find(key)
                if issue is None:
                    return _platform_error(404, NOT_FOUND)
                return JSONResponse(self._issue_json(issue, base(request), wanted))

        @app.get("/rest/api/2/issue/{key}/transitions")
        async def get_transitions(key: str) -> Response:
            with self._lock:
                issue = self._find(key)
                if issue is None:
                    return _platform_error(404, NOT_FOUND)
                return JSONResponse({"expand": "transitions", "transitions": self._transitions(issue)})

        @app.post("/rest/api/2/issue/{key}/transitions")
        async def do_transition(key: str, request: Request) -> Response:
            body = await request.json()
            wanted = str(((body or {}).get("transition") or {}).get("id") or "")
            with self._lock:
                issue = self._find(key)
                if issue is None:
                    return _platform_error(404, NOT_FOUND)
                match = [t for t in self._transitions(issue) if t["id"] == wanted]
                if not match:
                    return _platform_error(400, f"Transition id '{wanted}' is not valid for this issue.")
                issue.status = match[0]["to"]["name"]
            return Response(status_code=204)

        @app.post("/rest/api/2/issue/{key}/attachments")
        async def add_attachments(key: str, request: Request) -> Response:
            if request.headers.get("x-atlassian-token", "").lower() != "no-check":
                return PlainTextResponse("XSRF check failed", status_code=403)
            form = await request.form()
            files = [f for f in form.getlist("file") if isinstance(f, UploadFile)]
            if not files:
                return _platform_error(400, "No file was attached.")
            uploads = [(f.filename or "unnamed", f.content_type or "", await f.read()) for f in files]
            with self._lock:
                issue = self._find(key)
                if issue is None:
                    return _platform_error(404, NOT_FOUND)
                added = []
                for filename, mime, data in uploads:
                    att = {
                        "id": self._next_id(),
                        "filename": filename,
                        "mimeType": mime or "application/octet-stream",
                        "data": data,
                        "created": self._now(),
                        "author": self.agent,
                    }
                    issue.attachments.append(att)
                    added.append(self._attachment_json(att, base(request)))
            return JSONResponse(added)

        @app.get("/rest/servicedeskapi/request/{key}/approval")
        async def get_approvals(key: str, start: int = 0, limit: int = 50) -> Response:
            with self._lock:
                issue = self._find(key)
                if issue is None:
                    return jsm_missing(key)
                return JSONResponse(_page([dict(a) for a in issue.approvals], start, limit))

        @app.get("/rest/servicedeskapi/request/{key}/comment")
        async def get_comments(
            key: str, start: int = 0, limit: int = 50, public: bool = True, internal: bool = True
        ) -> Response:
            with self._lock:
                issue = self._find(key)
                if issue is None:
                    return jsm_missing(key)
                shown = [
                    self._comment_json(c)
                    for c in issue.comments
                    if (public and c["public"]) or (internal and not c["public"])
                ]
            return JSONResponse(_page(shown, start, limit))

        @app.post("/rest/servicedeskapi/request/{key}/comment")
        async def post_comment(key: str, request: Request) -> Response:
            body = await request.json()
            text = body.get("body") if isinstance(body, dict) else None
            if not isinstance(text, str) or not text.strip():
                return JSONResponse({"errorMessage": "The comment body cannot be empty."}, status_code=400)
            with self._lock:
                issue = self._find(key)
                if issue is None:
                    return jsm_missing(key)
                comment = self._add_comment(issue, text, bool(body.get("public", True)), self.agent)
                return JSONResponse(self._comment_json(comment), status_code=201)

        return app

    def _transitions(self, issue: _Issue) -> list[dict[str, Any]]:
        return [
            {
                "id": str(11 + 10 * list(STATUSES).index(target)),
                "name": "Reopen" if issue.status == "Closed" else TRANSITION_NAMES[target],
                "to": {"name": target, "statusCategory": {"key": STATUSES[target]}},
                "hasScreen": False,
            }
            for target in transitions_from(issue.status)
        ]


def _page(values: list[dict[str, Any]], start: int, limit: int) -> dict[str, Any]:
    start = max(0, start)
    limit = max(1, min(limit, COMMENT_PAGE_MAX))
    chunk = values[start : start + limit]
    return {
        "size": len(chunk),
        "start": start,
        "limit": limit,
        "isLastPage": start + len(chunk) >= len(values),
        "values": chunk,
        "_links": {},
    }
