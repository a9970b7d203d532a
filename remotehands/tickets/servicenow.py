"""ServiceNow as a ticket system, through its Table API and Attachment API.

Ticket ids are record numbers (``INC0010001``) of the table ``options.table`` (default ``incident``); the
adapter looks each number up once and caches its ``sys_id``. Settings (``[ticket_systems.<name>]``):

* ``fields``: which columns hold the request and metadata, usually ``u_*`` custom columns. A reference
  column (e.g. ``company`` for the customer) is read by its display value, any other column by its value.
* ``statuses``: our status -> the table's ``state`` value (``"3"``) or label (``"On Hold"``); defaults are
  the incident states: new 1, in-progress 2, needs-attention 3 (On Hold), resolved 6, closed 7. ``approved``
  has no state: approval is the record's own ``approval`` field, so ``set_status(APPROVED)`` changes nothing
  unless ``statuses.approved`` names a state.
* ``options``: ``table``; ``close_code`` sent when resolving or closing (default ``Solved (Permanently)``;
  a stock instance refuses to resolve an incident without a resolution code and notes).

Read back, state 1 with ``approval=approved`` is APPROVED, 8 (Canceled) is CLOSED. Severity is the mapped
severity field if any, else the record's priority (1 Critical .. 5 Planning -> Sev1 .. Sev5). Comments go
to ``work_notes`` (internal) or ``comments`` (customer-visible).
"""

from __future__ import annotations

import logging
import mimetypes
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx

from remotehands import redaction
from remotehands.config import TicketSystemConfig
from remotehands.errors import ConfigError, TicketNotFound, TicketSystemRefused
from remotehands.tickets.base import Approval, Severity, Ticket, TicketStatus, event_marker
from remotehands.tickets.extract import request_from
from remotehands.tickets.fields import (
    is_sensitive,
    mapped_severity,
    mapped_text,
    mapped_type,
    our_status,
    plain,
)
from remotehands.tickets.http import HttpSettings, TicketHttp

log = logging.getLogger(__name__)

PAGE = 100  # rows asked per page of a listing
STATE_LABELS = {
    "new": "1",
    "in progress": "2",
    "on hold": "3",
    "resolved": "6",
    "closed": "7",
    "canceled": "8",
}
WRITE_STATES: dict[TicketStatus, str] = {
    TicketStatus.NEW: "1",
    TicketStatus.IN_PROGRESS: "2",
    TicketStatus.NEEDS_ATTENTION: "3",
    TicketStatus.RESOLVED: "6",
    TicketStatus.CLOSED: "7",
}
READ_STATES: dict[str, TicketStatus] = {
    "1": TicketStatus.NEW,
    "2": TicketStatus.IN_PROGRESS,
    "3": TicketStatus.NEEDS_ATTENTION,
    "6": TicketStatus.RESOLVED,
    "7": TicketStatus.CLOSED,
    "8": TicketStatus.CLOSED,
}
DEFAULT_CLOSE_CODE = "Solved (Permanently)"
CLOSE_NOTES = "resolved by remotehands"


class ServiceNowTickets:
    """``TicketSystem`` over one ServiceNow instance. Every call raises ``TicketSystemUnavailable`` when the
    instance does not answer (or keeps answering 429/5xx), ``TicketSystemRefused`` when it refuses (carrying
    ServiceNow's own error message, never the credential) and ``TicketNotFound`` for an unknown number."""

    # The outbox sends this system a run of step comments as one comment (see jobs.outbox).
    coalesce_comments = True

    def __init__(
        self,
        name: str,
        config: TicketSystemConfig,
        http: HttpSettings,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self._config = config
        self._table = str(config.options.get("table", "incident"))
        self._close_code = str(config.options.get("close_code", DEFAULT_CLOSE_CODE))
        self._http = TicketHttp(name, http, error_text=error_text, sleep=sleep)
        self._write = dict(WRITE_STATES)
        self._read = dict(READ_STATES)
        for ours, theirs in config.statuses.items():
            status = our_status(name, ours)
            state = _state_value(name, theirs)
            self._write[status] = state
            self._read[state] = status
        self._sys_ids: dict[str, str] = {}

    def close(self) -> None:
        self._http.close()

    # -- reading ----------------------------------------------------------------------------------

    def get(self, ticket_id: str) -> Ticket:
        """The record as a ``Ticket``. Raises ``InvalidRequest`` when it holds no valid request (mapped
        columns or a fenced block in the description), or a mapped severity/type column is not valid."""
        record = self._record(ticket_id)
        fmap = self._config.fields
        fields = {name: plain(value) for name, value in record.items()}
        approved = value_of(record.get("approval")) == "approved"
        status = self._read.get(value_of(record.get("state")), TicketStatus.NEEDS_ATTENTION)
        if status == TicketStatus.NEW and approved:
            status = TicketStatus.APPROVED
        description = str(plain(record.get("description")) or "")
        received = _when(record.get("opened_at")) or _when(record.get("sys_created_on"))
        if received is None:
            raise TicketSystemRefused(
                f"{self.name}: record {ticket_id} has no opened_at date", fix="check the table's columns"
            )
        return Ticket(
            id=str(value_of(record.get("number")) or ticket_id),
            system=self.name,
            type=mapped_type(fields, fmap.type),
            severity=self._severity(fields),
            status=status,
            title=str(plain(record.get("short_description")) or ""),
            description=description,
            sensitive=is_sensitive(fields, fmap.sensitive),
            customer=mapped_text(fields, fmap.customer) or self._config.customer,
            subscription=mapped_text(fields, fmap.subscription) or self._config.subscription,
            site="",
            requester=str(display_of(record.get("caller_id")) or ""),
            approver=self._approver(value_of(record.get("sys_id"))).approver if approved else None,
            request=request_from(description, fields, fmap),
            received_at=received,
        )

    def approval(self, ticket_id: str) -> Approval:
        """Whether the record's ``approval`` field says approved, and who approved it (from
        ``sysapproval_approver``), read fresh from the instance every time."""
        record = self._record(ticket_id)
        if value_of(record.get("approval")) != "approved":
            return Approval(approved=False, approver=None, at=None)
        return self._approver(value_of(record.get("sys_id")))

    # -- writing ----------------------------------------------------------------------------------

    def comment(
        self, ticket_id: str, text: str, *, internal: bool = True, event_key: str | None = None
    ) -> None:
        """A work note (internal) or an additional comment. With ``event_key`` the note carries its marker and
        is not written again when any note of the record already carries it (every page is read)."""
        sys_id = self._sys_id(ticket_id)
        element = "work_notes" if internal else "comments"
        body = redaction.redact(text)
        if event_key:
            marker = event_marker(event_key)
            if any(marker in str(row.get("value", "")) for row in self._journal(sys_id, element)):
                log.debug("%s: %s already holds %s", self.name, ticket_id, marker)
                return
            body = f"{body}\n\n{marker}"
        self._http.json("PATCH", self._path(sys_id), what=f"comment on {ticket_id}", json={element: body})

    def set_status(self, ticket_id: str, status: TicketStatus) -> None:
        """Set the record's ``state``; resolving or closing also sends ``close_code`` and ``close_notes``."""
        state = self._write.get(status)
        if state is None:
            log.debug("%s: %s has no state of its own; %s left as it is", self.name, status.value, ticket_id)
            return
        change: dict[str, str] = {"state": state}
        if status in (TicketStatus.RESOLVED, TicketStatus.CLOSED):
            change |= {"close_code": self._close_code, "close_notes": CLOSE_NOTES}
        self._http.json(
            "PATCH", self._path(self._sys_id(ticket_id)), what=f"set state of {ticket_id}", json=change
        )

    def attach(self, ticket_id: str, name: str, data: bytes, *, event_key: str | None = None) -> None:
        """Upload ``data`` as ``name``; nothing is uploaded when the record already has a file of that name
        and size (so a redelivery writes nothing twice)."""
        sys_id = self._sys_id(ticket_id)
        data = redaction.redact_bytes(data)
        # Names are compared here, not in the query: a name may hold "^", the encoded query's separator.
        existing = self._listing(
            "/api/now/attachment", what=f"list attachments of {ticket_id}", query=f"table_sys_id={sys_id}"
        )
        if any(
            row.get("file_name") == name and str(row.get("size_bytes")) == str(len(data)) for row in existing
        ):
            log.debug("%s: %s already has %s", self.name, ticket_id, name)
            return
        self._http.request(
            "POST",
            "/api/now/attachment/file",
            what=f"attach {name} to {ticket_id}",
            params={"table_name": self._table, "table_sys_id": sys_id, "file_name": name},
            content=data,
            headers={"Content-Type": mimetypes.guess_type(name)[0] or "application/octet-stream"},
        )

    # -- helpers ----------------------------------------------------------------------------------

    def _path(self, sys_id: str) -> str:
        return f"/api/now/table/{self._table}/{sys_id}"

    def _record(self, ticket_id: str) -> dict[str, Any]:
        number = ticket_id.strip()
        if not number or "^" in number:
            raise TicketNotFound(f"{self.name}: {ticket_id!r} is not a record number", fix="e.g. INC0010001")
        body = self._http.json(
            "GET",
            f"/api/now/table/{self._table}",
            what=f"read {number}",
            params={"sysparm_query": f"number={number}", "sysparm_limit": 1, "sysparm_display_value": "all"},
        )
        rows = body.get("result") if isinstance(body, dict) else None
        if not rows:
            raise TicketNotFound(
                f"{self.name} has no {self._table} record {number}",
                fix="check the ticket number and the table",
            )
        record: dict[str, Any] = rows[0]
        sys_id = value_of(record.get("sys_id"))
        if sys_id:
            self._sys_ids[number] = sys_id
        return record

    def _sys_id(self, ticket_id: str) -> str:
        cached = self._sys_ids.get(ticket_id.strip())
        return cached if cached else value_of(self._record(ticket_id).get("sys_id"))

    def _approver(self, sys_id: str) -> Approval:
        rows = self._listing(
            "/api/now/table/sysapproval_approver",
            what="read approvers",
            query=f"sysapproval={sys_id}^state=approved",
            display="all",  # the approver's name, and dates as stored (UTC), not in the account's zone
        )
        for row in rows:
            return Approval(
                approved=True,
                approver=str(display_of(row.get("approver")) or "") or None,
                at=_when(row.get("sys_updated_on")),
            )
        return Approval(approved=True, approver=None, at=None)

    def _journal(self, sys_id: str, element: str) -> Iterator[dict[str, Any]]:
        return self._listing(
            "/api/now/table/sys_journal_field",
            what="read work notes",
            query=f"element_id={sys_id}^element={element}",
        )

    def _listing(
        self, path: str, *, what: str, query: str, display: str = "false"
    ) -> Iterator[dict[str, Any]]:
        params = {
            "sysparm_query": query,
            "sysparm_limit": PAGE,
            "sysparm_offset": 0,
            "sysparm_display_value": display,
        }
        return self._http.pages(path, what=what, items=_result, next_request=self._next, params=params)

    def _next(self, _body: Any, response: httpx.Response) -> tuple[str, dict[str, Any]] | None:
        """The ``rel="next"`` link, re-rooted on the configured URL: credentials go nowhere else."""
        url = response.links.get("next", {}).get("url")
        if not url:
            return None
        return self._http.follow(url)

    def _severity(self, fields: dict[str, Any]) -> Severity:
        found = mapped_severity(fields, self._config.fields.severity)
        if found is not None:
            return found
        priority = str(fields.get("priority") or "")
        return Severity(int(priority)) if priority in {"1", "2", "3", "4", "5"} else Severity.DEGRADED


# -- ServiceNow field values --------------------------------------------------------------------------


def value_of(field: Any) -> str:
    """The stored value of a field as ``sysparm_display_value=all`` (or ``false``) returns it."""
    if isinstance(field, dict):
        return str(field.get("value") or "")
    return "" if field is None else str(field)


def display_of(field: Any) -> str:
    """The display value of a field (a reference's name), else its value."""
    if isinstance(field, dict):
        return str(field.get("display_value") or field.get("value") or "")
    return "" if field is None else str(field)


def error_text(response: httpx.Response) -> str:
    """ServiceNow's ``{"error": {"message", "detail"}}``, as one line."""
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        parts = [str(err.get(k)).strip() for k in ("message", "detail") if err.get(k)]
        return ": ".join(" ".join(p.split()) for p in parts) or response.reason_phrase
    return str(err or response.reason_phrase)


def _result(body: Any) -> list[Any]:
    rows = body.get("result") if isinstance(body, dict) else None
    return rows if isinstance(rows, list) else []


def _when(field: Any) -> datetime | None:
    text = value_of(field)
    try:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def _state_value(system: str, theirs: str) -> str:
    text = str(theirs).strip()
    if re.fullmatch(r"-?\d+", text):
        return text
    if text.lower() in STATE_LABELS:
        return STATE_LABELS[text.lower()]
    raise ConfigError(
        f"ticket_systems.{system}.statuses: {theirs!r} is not a state value or a known incident state",
        fix='give the state\'s number (e.g. "3") or one of: ' + ", ".join(STATE_LABELS),
    )
