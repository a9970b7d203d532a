"""A ServiceNow instance as far as remotehands uses it: the Table API and the Attachment API.

Built from ServiceNow's public REST API documentation:

* ``GET /api/now/table/{table}`` with ``sysparm_query`` (an encoded query: ``a=b^cINx,y``),
  ``sysparm_limit``/``sysparm_offset`` paging, a ``Link`` header (first/prev/next/last, absolute URLs) and
  ``X-Total-Count``; ``sysparm_display_value`` ``false`` (values; a reference is ``{link, value}``),
  ``true`` (display strings) or ``all`` (``{display_value, value[, link]}`` per field).
* ``GET``/``PATCH /api/now/table/{table}/{sys_id}``; journal fields (``work_notes``, ``comments``) written
  by a PATCH land in ``sys_journal_field``. Resolving or closing an incident without ``close_code`` and
  ``close_notes`` fails the data policy (403), as on a stock instance.
* ``POST /api/now/attachment/file?table_name=&table_sys_id=&file_name=`` (raw body), ``GET
  /api/now/attachment`` (metadata, ``size_bytes`` as a string), ``GET /api/now/attachment/{sys_id}/file``.
* Basic authentication; errors as ``{"error": {"message", "detail"}, "status": "failure"}``.

The test side seeds and inspects state through plain methods (``seed``, ``set_approval``, ``journal``,
``attachment_files``, ``state``, ``add_work_notes``), never through HTTP.
"""

from __future__ import annotations

import base64
import itertools
import secrets
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from remotehands.lab.ticket_sims.harness import Faults, fault_middleware

DEFAULT_PAGE = 20  # small, so listings span pages (a real instance allows up to 10000)

CHOICES: dict[str, dict[str, str]] = {
    "state": {
        "1": "New",
        "2": "In Progress",
        "3": "On Hold",
        "6": "Resolved",
        "7": "Closed",
        "8": "Canceled",
    },
    "priority": {
        "1": "1 - Critical",
        "2": "2 - High",
        "3": "3 - Moderate",
        "4": "4 - Low",
        "5": "5 - Planning",
    },
    "approval": {
        "not requested": "Not Yet Requested",
        "requested": "Requested",
        "approved": "Approved",
        "rejected": "Rejected",
    },
}
RESOLVING_STATES = {"6", "7"}
TABLES = ("incident", "sys_user", "sys_journal_field", "sysapproval_approver")


@dataclass(frozen=True)
class Ref:
    """A reference field: the referenced record's table and sys_id, and its display value."""

    table: str
    sys_id: str
    display: str


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")


def error(status: int, message: str, detail: str | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "detail": detail}, "status": "failure"}, status_code=status
    )


def matches(record: dict[str, Any], query: str) -> bool:
    """An encoded query of ``field=value``, ``field!=value`` and ``fieldINa,b`` terms joined by ``^``."""
    for term in filter(None, query.split("^")):
        if term.startswith("ORDERBY"):
            continue
        if "!=" in term:
            name, value = term.split("!=", 1)
            if raw(record.get(name)) == value:
                return False
        elif "=" in term:
            name, value = term.split("=", 1)
            if raw(record.get(name)) != value:
                return False
        elif "IN" in term:
            name, values = term.split("IN", 1)
            if raw(record.get(name)) not in values.split(","):
                return False
    return True


def raw(value: Any) -> str:
    if isinstance(value, Ref):
        return value.sys_id
    return "" if value is None else str(value)


class ServiceNowSim:
    """An in-memory ServiceNow instance; ``app`` is its ASGI application."""

    def __init__(self, *, password: str, user: str = "rh.integration") -> None:
        self.user, self.password = user, password
        self.faults = Faults()
        self._lock = threading.Lock()
        self._tables: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in TABLES}
        self._files: dict[str, dict[str, Any]] = {}
        self._numbers = itertools.count(10001)
        self.app = FastAPI(title="servicenow-sim")
        self.app.middleware("http")(self._auth)
        self.app.middleware("http")(fault_middleware(self.faults))
        self._routes()

    # -- the test side ----------------------------------------------------------------------------

    def seed(
        self,
        *,
        short_description: str,
        description: str = "",
        caller: str = "alice",
        priority: str = "3",
        fields: dict[str, str] | None = None,
        table: str = "incident",
    ) -> str:
        """Create a record (state New, approval not requested); returns its number (INC0010001)."""
        with self._lock:
            number = f"INC{next(self._numbers):07d}"
            record: dict[str, Any] = {
                "number": number,
                "short_description": short_description,
                "description": description,
                "state": "1",
                "approval": "not requested",
                "priority": priority,
                "caller_id": self._user(caller),
                "opened_at": stamp(),
                "close_code": "",
                "close_notes": "",
                **(fields or {}),
            }
            self._insert(table, record)
            return number

    def set_approval(self, number: str, state: str, approver: str) -> None:
        """``approved`` / ``rejected`` / ``requested``: the record's approval field and an approver row."""
        with self._lock:
            record = self._by_number(number)
            record["approval"] = state
            if state in ("approved", "rejected"):
                self._insert(
                    "sysapproval_approver",
                    {
                        "sysapproval": Ref("incident", record["sys_id"], number),
                        "approver": self._user(approver),
                        "state": state,
                    },
                )

    def journal(self, number: str) -> list[tuple[str, str]]:
        """``(element, value)`` of every journal entry of the record, oldest first."""
        with self._lock:
            sys_id = self._by_number(number)["sys_id"]
            rows = self._tables["sys_journal_field"].values()
            return [(r["element"], r["value"]) for r in rows if r["element_id"] == sys_id]

    def add_work_notes(self, number: str, count: int, author: str = "carol") -> None:
        """``count`` work notes from a person (``filler 0`` ...), to make the journal span pages."""
        with self._lock:
            sys_id = self._by_number(number)["sys_id"]
            for i in range(count):
                self._journal(sys_id, "work_notes", f"filler {i}", author)

    def attachment_files(self, number: str) -> list[tuple[str, bytes]]:
        """``(file name, bytes)`` of every file attached to the record, oldest first."""
        with self._lock:
            sys_id = self._by_number(number)["sys_id"]
            return [(f["file_name"], f["data"]) for f in self._files.values() if f["table_sys_id"] == sys_id]

    def state(self, number: str) -> str:
        """The record's ``state`` value (``"6"`` for Resolved)."""
        with self._lock:
            return str(self._by_number(number)["state"])

    def record(self, number: str) -> dict[str, Any]:
        """A copy of the stored record (values; references as ``Ref``)."""
        with self._lock:
            return dict(self._by_number(number))

    # -- storage (call with the lock held) --------------------------------------------------------

    def _insert(self, table: str, record: dict[str, Any]) -> dict[str, Any]:
        now = stamp()
        record = {"sys_id": secrets.token_hex(16), "sys_created_on": now, "sys_updated_on": now, **record}
        self._tables[table][record["sys_id"]] = record
        return record

    def _user(self, name: str) -> Ref:
        for row in self._tables["sys_user"].values():
            if row["user_name"] == name:
                return Ref("sys_user", row["sys_id"], name)
        row = self._insert("sys_user", {"user_name": name, "name": name})
        return Ref("sys_user", row["sys_id"], name)

    def _by_number(self, number: str) -> dict[str, Any]:
        for table in self._tables.values():
            for row in table.values():
                if row.get("number") == number:
                    return row
        raise KeyError(number)

    def _journal(self, sys_id: str, element: str, value: str, author: str) -> None:
        self._insert(
            "sys_journal_field",
            {
                "element_id": sys_id,
                "element": element,
                "value": value,
                "name": "incident",
                "sys_created_by": author,
            },
        )

    # -- HTTP -------------------------------------------------------------------------------------

    async def _auth(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        header = request.headers.get("authorization", "")
        expected = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        if not secrets.compare_digest(header.encode(), f"Basic {expected}".encode()):
            return error(401, "User Not Authenticated", "Required to provide Auth information")
        return await call_next(request)

    def _routes(self) -> None:
        app = self.app
        app.get("/api/now/table/{table}")(self._list)
        app.get("/api/now/table/{table}/{sys_id}")(self._get)
        app.patch("/api/now/table/{table}/{sys_id}")(self._patch)
        app.put("/api/now/table/{table}/{sys_id}")(self._patch)
        app.get("/api/now/attachment")(self._list_files)
        app.post("/api/now/attachment/file")(self._upload)
        app.get("/api/now/attachment/{sys_id}/file")(self._download)

    def _display(self, record: dict[str, Any], mode: str, base: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in record.items():
            label = CHOICES.get(name, {}).get(str(value), value)
            if isinstance(value, Ref):
                link = f"{base}/api/now/table/{value.table}/{value.sys_id}"
                full = {"display_value": value.display, "value": value.sys_id, "link": link}
                out[name] = {"all": full, "true": value.display}.get(
                    mode, {"link": link, "value": value.sys_id}
                )
            elif mode == "all":
                out[name] = {"display_value": label, "value": value}
            else:
                out[name] = label if mode == "true" else value
        return out

    def _page(
        self, request: Request, rows: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], dict[str, str]]:
        params = request.query_params
        try:
            limit = max(1, int(params.get("sysparm_limit", DEFAULT_PAGE)))
            offset = max(0, int(params.get("sysparm_offset", 0)))
        except ValueError:
            limit, offset = DEFAULT_PAGE, 0
        total = len(rows)
        base = str(request.base_url).rstrip("/") + request.url.path

        def link(at: int) -> str:
            query = {k: v for k, v in params.items() if k not in ("sysparm_offset", "sysparm_limit")}
            return f"{base}?{urlencode({**query, 'sysparm_limit': limit, 'sysparm_offset': at})}"

        rels = [(0, "first")]
        if offset > 0:
            rels.append((max(0, offset - limit), "prev"))
        if offset + limit < total:
            rels.append((offset + limit, "next"))
        rels.append((max(0, (total - 1) // limit * limit), "last"))
        headers = {"X-Total-Count": str(total)}
        if total > limit:
            headers["Link"] = ",".join(f'<{link(at)}>;rel="{rel}"' for at, rel in rels)
        return rows[offset : offset + limit], headers

    async def _list(self, table: str, request: Request) -> Response:
        if table not in self._tables:
            return error(400, f"Invalid table {table}")
        query = request.query_params.get("sysparm_query", "")
        mode = request.query_params.get("sysparm_display_value", "false").lower()
        base = str(request.base_url).rstrip("/")
        with self._lock:
            rows = [r for r in self._tables[table].values() if matches(r, query)]
            page, headers = self._page(request, rows)
            result = [self._display(r, mode, base) for r in page]
        return JSONResponse({"result": result}, headers=headers)

    async def _get(self, table: str, sys_id: str, request: Request) -> Response:
        mode = request.query_params.get("sysparm_display_value", "false").lower()
        with self._lock:
            record = self._tables.get(table, {}).get(sys_id)
            if record is None:
                return error(
                    404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval"
                )
            return JSONResponse({"result": self._display(record, mode, str(request.base_url).rstrip("/"))})

    async def _patch(self, table: str, sys_id: str, request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return error(400, "Exception while reading request", "The payload is not valid JSON.")
        if not isinstance(body, dict):
            return error(400, "Exception while reading request", "The payload is not a JSON object.")
        with self._lock:
            record = self._tables.get(table, {}).get(sys_id)
            if record is None:
                return error(
                    404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval"
                )
            updated = {
                **record,
                **{k: str(v) for k, v in body.items() if k not in ("work_notes", "comments")},
            }
            if (
                table == "incident"
                and str(updated.get("state")) in RESOLVING_STATES
                and not (updated.get("close_code") and updated.get("close_notes"))
            ):
                return error(
                    403,
                    "Operation Failed",
                    "Data Policy Exception: \n The following fields are mandatory: Resolution code, Resolution notes",
                )
            for element in ("work_notes", "comments"):
                if body.get(element):
                    self._journal(sys_id, element, str(body[element]), self.user)
            updated["sys_updated_on"] = stamp()
            record.update(updated)
            return JSONResponse({"result": self._display(record, "false", str(request.base_url).rstrip("/"))})

    async def _upload(self, request: Request) -> Response:
        params = request.query_params
        table, sys_id, name = (params.get(k, "") for k in ("table_name", "table_sys_id", "file_name"))
        if not (table and sys_id and name):
            return error(
                400, "Missing required parameter", "table_name, table_sys_id and file_name are required"
            )
        data = await request.body()
        with self._lock:
            if sys_id not in self._tables.get(table, {}):
                return error(400, "Invalid table or record", f"{table}:{sys_id} does not exist")
            meta = {
                "sys_id": secrets.token_hex(16),
                "file_name": name,
                "table_name": table,
                "table_sys_id": sys_id,
                "content_type": request.headers.get("content-type", "application/octet-stream"),
                "size_bytes": str(len(data)),
                "sys_created_on": stamp(),
            }
            self._files[meta["sys_id"]] = {**meta, "data": data}
        base = str(request.base_url).rstrip("/")
        return JSONResponse(
            {"result": {**meta, "download_link": f"{base}/api/now/attachment/{meta['sys_id']}/file"}},
            status_code=201,
        )

    async def _list_files(self, request: Request) -> Response:
        query = request.query_params.get("sysparm_query", "")
        with self._lock:
            rows = [
                {k: v for k, v in f.items() if k != "data"} for f in self._files.values() if matches(f, query)
            ]
        page, headers = self._page(request, rows)
        return JSONResponse({"result": page}, headers=headers)

    async def _download(self, sys_id: str) -> Response:
        with self._lock:
            stored = self._files.get(sys_id)
        if stored is None:
            return error(404, "Attachment record not found")
        return Response(stored["data"], media_type=stored["content_type"])
