"""Request Tracker 5 as far as remotehands uses it: the REST2 API under ``/REST/2.0``.

Built from RT's REST2 documentation (the RT::REST2 POD) and its behaviour:

* ``GET``/``PUT /ticket/{id}``: Subject, Status (default lifecycle: new, open, stalled, resolved, rejected,
  deleted), Queue, Requestor (``[{type, id, _url}]``), Created, Priority, CustomFields (``[{type, id, _url,
  name, values}]``). A PUT answers 200 with a list of messages; an invalid status is one of those messages
  and changes nothing (RT does not answer 4xx for it).
* ``POST /ticket/{id}/comment`` and ``/correspond``: JSON ``Subject``, ``Content``, ``ContentType``,
  ``Attachments: [{FileName, FileType, FileContent (base64)}]``; 201 with ``Location: .../transaction/N``.
  A message with files is stored as a multipart/mixed wrapper, its text part and one part per file. A
  transaction's ``Data`` holds the message's subject, as in RT.
* Collections (``/ticket/{id}/history``, ``/ticket/{id}/attachments``, ``/transaction/{id}/attachments``):
  ``page``/``per_page`` (default 20, at most 100), ``count``, ``total``, ``pages``, ``next_page``/``prev_page``
  (absolute URLs), ``items`` of ``{type, id, _url}`` plus the columns named in ``fields=``. ``Content`` in a
  collection is the decoded text; ``GET /attachment/{id}`` gives it base64-encoded.
* ``Authorization: token ...``; errors are ``{"message": ...}`` (401 Unauthorized, 404 Not Found).

The test side seeds and inspects state through plain methods, never through HTTP.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import mimetypes
import secrets
import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from remotehands.lab.ticket_sims.harness import Faults, fault_middleware

API = "/REST/2.0"
STATUSES = ("new", "open", "stalled", "resolved", "rejected", "deleted")
DEFAULT_PAGE, MAX_PAGE = 20, 100


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def message(status: int, text: str) -> JSONResponse:
    return JSONResponse({"message": text}, status_code=status)


class RtSim:
    """An in-memory RT 5 with one queue; ``app`` is its ASGI application."""

    def __init__(self, *, token: str, statuses: tuple[str, ...] = STATUSES) -> None:
        self.token = token
        self.statuses = statuses  # the queue's lifecycle
        self.faults = Faults()
        self._lock = threading.Lock()
        self._tickets: dict[int, dict[str, Any]] = {}
        self._txns: dict[int, dict[str, Any]] = {}
        self._atts: dict[int, dict[str, Any]] = {}
        self._cfs: dict[str, int] = {}
        self._ids = {kind: itertools.count(1) for kind in ("ticket", "txn", "att", "cf")}
        self.app = FastAPI(title="rt-sim")
        self.app.middleware("http")(self._auth)
        self.app.middleware("http")(fault_middleware(self.faults))
        self.app.exception_handler(RequestValidationError)(self._not_found)
        self._routes()

    # -- the test side ----------------------------------------------------------------------------

    def define_fields(self, *names: str) -> None:
        """Custom fields applied to the queue (each ticket lists them, empty or not)."""
        with self._lock:
            for name in names:
                self._cfs.setdefault(name, next(self._ids["cf"]))

    def seed(
        self,
        *,
        subject: str,
        content: str = "",
        requestor: str = "alice",
        priority: int | str = 0,
        status: str = "new",
        fields: dict[str, str | list[str]] | None = None,
        files: list[tuple[str, bytes]] | None = None,
    ) -> int:
        """Create a ticket with its Create transaction holding ``content`` (and ``files``); returns its id."""
        with self._lock:
            for name in fields or {}:
                self._cfs.setdefault(name, next(self._ids["cf"]))
            number = next(self._ids["ticket"])
            self._tickets[number] = {
                "Subject": subject,
                "Status": status,
                "Requestor": [requestor],
                "Priority": priority,
                "Created": stamp(),
                "CustomFields": {
                    k: [v] if isinstance(v, str) else list(v) for k, v in (fields or {}).items()
                },
            }
            typed = [
                (name, data, mimetypes.guess_type(name)[0] or "application/octet-stream")
                for name, data in files or []
            ]
            self._message(number, "Create", subject, content, "text/plain", typed, requestor)
            return number

    def set_field(self, number: int, name: str, values: list[str], by: str = "root") -> None:
        """Set a ticket custom field, as a person editing the ticket would (a CustomField transaction)."""
        with self._lock:
            self._cfs.setdefault(name, next(self._ids["cf"]))
            self._tickets[number]["CustomFields"][name] = list(values)
            self._txn(number, "CustomField", by, Field=str(self._cfs[name]))

    def add_messages(
        self, number: int, count: int, *, author: str = "carol", kind: str = "Correspond"
    ) -> None:
        """``count`` messages from a person (``filler 0`` ...), to make the history span pages."""
        with self._lock:
            for i in range(count):
                self._message(number, kind, "", f"filler {i}", "text/plain", [], author)

    def messages(self, number: int) -> list[tuple[str, str]]:
        """``(transaction type, text content)`` of every Comment and Correspond, oldest first."""
        with self._lock:
            return [
                (txn["Type"], self._text_of(txn["id"]))
                for txn in self._txns.values()
                if txn["ObjectId"] == number and txn["Type"] in ("Comment", "Correspond")
            ]

    def files(self, number: int) -> list[tuple[str, bytes]]:
        """``(file name, bytes)`` of every file attached to the ticket's messages, oldest first."""
        with self._lock:
            return [
                (att["Filename"], att["Content"])
                for att in self._atts.values()
                if att["Filename"] and self._txns[att["TransactionId"]]["ObjectId"] == number
            ]

    def status(self, number: int) -> str:
        """The ticket's RT status."""
        with self._lock:
            return str(self._tickets[number]["Status"])

    # -- storage (call with the lock held) --------------------------------------------------------

    def _txn(self, number: int, kind: str, by: str, **extra: Any) -> dict[str, Any]:
        txn: dict[str, Any] = {
            "id": next(self._ids["txn"]),
            "ObjectId": number,
            "Type": kind,
            "Creator": by,
            "Created": stamp(),
        }
        txn |= {"Data": "", "Field": "", "OldValue": "", "NewValue": "", "TimeTaken": 0, **extra}
        self._txns[txn["id"]] = txn
        return txn

    def _attachment(self, txn: int, parent: int, **fields: Any) -> int:
        ident = next(self._ids["att"])
        att: dict[str, Any] = {"id": ident, "TransactionId": txn, "Parent": parent, "Created": stamp()}
        att |= {"Subject": "", "Filename": "", "ContentType": "text/plain", "Content": b"", **fields}
        self._atts[ident] = att
        return ident

    def _message(
        self,
        number: int,
        kind: str,
        subject: str,
        content: str,
        ctype: str,
        files: list[tuple[str, bytes, str]],
        by: str,
    ) -> int:
        txn = self._txn(number, kind, by, Data=subject or "No Subject")
        parent = 0
        if files:
            parent = self._attachment(txn["id"], 0, Subject=subject, ContentType="multipart/mixed")
            ctype = ctype if content else "application/octet-stream"  # RT's empty body next to files
        self._attachment(
            txn["id"], parent, Subject="" if files else subject, ContentType=ctype, Content=content.encode()
        )
        for name, data, ftype in files:
            self._attachment(txn["id"], parent, Filename=name, ContentType=ftype, Content=data)
        return int(txn["id"])

    def _text_of(self, txn: int) -> str:
        for att in self._atts.values():
            if att["TransactionId"] == txn and not att["Filename"] and att["ContentType"].startswith("text/"):
                return bytes(att["Content"]).decode("utf-8", "replace")
        return ""

    # -- HTTP -------------------------------------------------------------------------------------

    async def _auth(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        header = request.headers.get("authorization", "")
        given = header[6:] if header.lower().startswith("token ") else request.query_params.get("token", "")
        if not secrets.compare_digest(given.encode(), self.token.encode()):
            return message(401, "Unauthorized")
        return await call_next(request)

    @staticmethod
    async def _not_found(_request: Request, _exc: Exception) -> Response:
        return message(404, "Not Found")  # RT's dispatcher: a path that does not match is not found

    def _routes(self) -> None:
        app = self.app
        app.get(API + "/ticket/{number}")(self._get_ticket)
        app.put(API + "/ticket/{number}")(self._put_ticket)
        app.post(API + "/ticket/{number}/comment")(self._comment)
        app.post(API + "/ticket/{number}/correspond")(self._correspond)
        app.get(API + "/ticket/{number}/history")(self._history)
        app.get(API + "/ticket/{number}/attachments")(self._ticket_attachments)
        app.get(API + "/transaction/{txn}/attachments")(self._txn_attachments)
        app.get(API + "/attachment/{att}")(self._get_attachment)

    @staticmethod
    def _ref(request: Request, kind: str, ident: Any) -> dict[str, str]:
        return {
            "type": kind,
            "id": str(ident),
            "_url": f"{str(request.base_url).rstrip('/')}{API}/{kind}/{ident}",
        }

    def _ticket_json(self, request: Request, number: int) -> dict[str, Any]:
        t = self._tickets[number]
        link = self._ref(request, "ticket", number)["_url"]
        return {
            "id": number,
            "Type": "ticket",
            "Subject": t["Subject"],
            "Status": t["Status"],
            "Queue": self._ref(request, "queue", 1),
            "Requestor": [self._ref(request, "user", r) for r in t["Requestor"]],
            "Created": t["Created"],
            "Priority": t["Priority"],
            "EffectiveId": self._ref(request, "ticket", number),
            "CustomFields": [
                {
                    **self._ref(request, "customfield", cf_id),
                    "name": name,
                    "values": t["CustomFields"].get(name, []),
                }
                for name, cf_id in self._cfs.items()
            ],
            "_hyperlinks": [
                {"ref": "self", **self._ref(request, "ticket", number)},
                {"ref": "history", "_url": f"{link}/history"},
                {"ref": "comment", "_url": f"{link}/comment"},
                {"ref": "correspond", "_url": f"{link}/correspond"},
            ],
        }

    async def _get_ticket(self, number: int, request: Request) -> Response:
        with self._lock:
            if number not in self._tickets:
                return message(404, "Not Found")
            return JSONResponse(self._ticket_json(request, number))

    async def _put_ticket(self, number: int, request: Request) -> Response:
        body = await self._json(request)
        if not isinstance(body, dict):
            return message(400, "JSON object expected")
        with self._lock:
            ticket = self._tickets.get(number)
            if ticket is None:
                return message(404, "Not Found")
            results: list[str] = []
            status = body.get("Status")
            if status is not None and status != ticket["Status"]:
                if status not in self.statuses:
                    results.append(f"Status '{status}' isn't a valid status for this ticket.")
                else:
                    results.append(f"Ticket {number}: Status changed from '{ticket['Status']}' to '{status}'")
                    self._txn(
                        number, "Status", "root", Field="Status", OldValue=ticket["Status"], NewValue=status
                    )
                    ticket["Status"] = status
            for name, value in (body.get("CustomFields") or {}).items():
                self._cfs.setdefault(name, next(self._ids["cf"]))
                ticket["CustomFields"][name] = (
                    [] if value is None else [value] if isinstance(value, str) else value
                )
                results.append(f"{name} changed")
            return JSONResponse(results)

    async def _comment(self, number: int, request: Request) -> Response:
        return await self._note(number, request, "Comment", "Comments added")

    async def _correspond(self, number: int, request: Request) -> Response:
        return await self._note(number, request, "Correspond", "Correspondence added")

    async def _note(self, number: int, request: Request, kind: str, done: str) -> Response:
        if request.headers.get("content-type", "").startswith("text/plain"):
            body: Any = {
                "Content": (await request.body()).decode("utf-8", "replace"),
                "ContentType": "text/plain",
            }
        else:
            body = await self._json(request)
        if not isinstance(body, dict):
            return message(400, "JSON object expected")
        files: list[tuple[str, bytes, str]] = []
        for item in body.get("Attachments") or []:
            if not all(item.get(k) for k in ("FileName", "FileType", "FileContent")):
                return message(400, "FileName, FileType and FileContent are required for each attachment")
            try:
                data = base64.b64decode(item["FileContent"], validate=True)
            except (binascii.Error, ValueError):
                return message(400, f"FileContent of {item['FileName']} is not base64")
            files.append((str(item["FileName"]), data, str(item["FileType"])))
        if not body.get("Content") and not files:
            return message(400, "Content is required")
        with self._lock:
            if number not in self._tickets:
                return message(404, "Not Found")
            txn = self._message(
                number,
                kind,
                str(body.get("Subject") or ""),
                str(body.get("Content") or ""),
                str(body.get("ContentType") or "text/plain"),
                files,
                "remotehands",
            )
        location = self._ref(request, "transaction", txn)["_url"]
        return JSONResponse([done], status_code=201, headers={"Location": location})

    async def _history(self, number: int, request: Request) -> Response:
        with self._lock:
            if number not in self._tickets:
                return message(404, "Not Found")
            txns = [t for t in self._txns.values() if t["ObjectId"] == number]
            return self._collection(request, "transaction", txns)

    async def _ticket_attachments(self, number: int, request: Request) -> Response:
        with self._lock:  # RT answers an empty collection for a ticket it does not have
            atts = [a for a in self._atts.values() if self._txns[a["TransactionId"]]["ObjectId"] == number]
            return self._collection(request, "attachment", atts)

    async def _txn_attachments(self, txn: int, request: Request) -> Response:
        with self._lock:
            atts = [a for a in self._atts.values() if a["TransactionId"] == txn]
            return self._collection(request, "attachment", atts)

    async def _get_attachment(self, att: int, request: Request) -> Response:
        with self._lock:
            found = self._atts.get(att)
            if found is None:
                return message(404, "Not Found")
            out = self._expand(
                request, "attachment", found, ["Subject", "Filename", "ContentType", "Created", "Parent"]
            )
            out["Content"] = base64.b64encode(found["Content"]).decode()
            out["TransactionId"] = self._ref(request, "transaction", found["TransactionId"])
            return JSONResponse(out)

    def _expand(self, request: Request, kind: str, row: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {**self._ref(request, kind, row["id"])}
        for name in fields:
            value = row.get(name, "")
            if name == "Creator":
                value = self._ref(request, "user", value)
            elif name == "TransactionId":
                value = self._ref(request, "transaction", value)
            elif isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            out[name] = "" if value is None else value
        return out

    def _collection(self, request: Request, kind: str, rows: list[dict[str, Any]]) -> Response:
        params = request.query_params
        per_page = int(params["per_page"]) if params.get("per_page", "").isdigit() else DEFAULT_PAGE
        per_page = min(per_page or DEFAULT_PAGE, MAX_PAGE)
        page = int(params["page"]) if params.get("page", "").isdigit() else 1
        page = max(page, 1)
        fields = [f for f in params.get("fields", "").split(",") if f]
        chunk = rows[(page - 1) * per_page : page * per_page]
        total = len(rows)
        pages = -(-total // per_page)
        body: dict[str, Any] = {
            "count": len(chunk),
            "page": page,
            "pages": pages,
            "per_page": per_page,
            "total": total,
            "items": [self._expand(request, kind, r, fields) for r in chunk],
        }
        here = str(request.base_url).rstrip("/") + request.url.path
        rest = [(k, v) for k, v in params.multi_items() if k != "page"]
        if page < pages:
            body["next_page"] = f"{here}?{urlencode([*rest, ('page', page + 1)])}"
        if page > 1:
            body["prev_page"] = f"{here}?{urlencode([*rest, ('page', min(page - 1, pages))])}"
        return JSONResponse(body)

    @staticmethod
    async def _json(request: Request) -> Any:
        try:
            return await request.json()
        except ValueError:
            return None
