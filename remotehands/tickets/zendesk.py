"""Zendesk Support as a ticket system.

Endpoints (Basic auth as ``{agent e-mail}/token`` with an API token):

    GET  /api/v2/tickets/{id}.json?include=users    the ticket, its requester sideloaded
    GET  /api/v2/users/{id}.json                     the requester, when the sideload lacks it
    GET  /api/v2/tickets/{id}/comments.json          comments, cursor-paged (page[size]=100, meta.has_more,
                                                     meta.after_cursor), for event markers and attachments
    PUT  /api/v2/tickets/{id}.json                   a private comment, or a status
    POST /api/v2/uploads.json?filename=NAME          a file (Content-Type: application/binary) -> upload token

Approval: Zendesk has no approval API for tickets. Approval lives in two custom ticket fields named in
``options``: ``approval_field`` (the field id; a drop-down or text whose value is ``approved``,
``pending`` or ``declined``) and ``approver_field`` (the id of a text field holding the approver's name).
A ticket is approved only when the first says ``approved`` and the second names someone, so the
self-approval check always has a name. Make both fields agent-only (not editable by end users), or a
requester could approve their own ticket. Zendesk keeps no time for a field change short of the audit log,
so ``Approval.at`` is None.

Fields: ``fields.*`` name custom field ids (``360012345678``); values are read as Zendesk gives them
(text, drop-down tag, multi-select tag list, checkbox). Without a mapped severity field the severity follows
the priority: urgent 1, high 2, normal 3, low 4, none 3. A ticket is sensitive when the mapped field is set
or it has the tag ``sensitive``. The requester is the ticket's requester's name.

Statuses (our status -> Zendesk status; override with ``statuses`` in the settings, values among new, open,
pending, hold, solved, closed):

    new -> open        approved -> open      in-progress -> open
    resolved -> solved closed -> closed      needs-attention -> hold   (on-hold: internal, shown as open)

``new`` is never written by default: Zendesk accepts it only for a ticket no one has opened yet. Reading,
``open`` and ``pending`` are in-progress, ``hold`` is needs-attention, ``new`` is new (approved when the
approval field says so), ``solved`` resolved and ``closed`` closed. A closed ticket cannot change at all in
Zendesk; ``set_status`` refuses it with ``TicketSystemRefused``.

Comments are always private (``public: false``). An attachment is uploaded first, then added to a private
comment by its upload token; an attachment of the same file name and size on any comment, or a comment
carrying the event's marker, means it is already there. An upload whose comment fails expires unused.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from remotehands import redaction
from remotehands.config import TicketSystemConfig
from remotehands.errors import ConfigError, TicketNotFound, TicketSystemRefused
from remotehands.numbers import ascii_int
from remotehands.tickets.base import Approval, Severity, Ticket, TicketStatus, event_marker
from remotehands.tickets.extract import request_from
from remotehands.tickets.fields import (
    is_sensitive,
    mapped_severity,
    mapped_text,
    mapped_type,
    our_status,
    parse_time,
)
from remotehands.tickets.http import HttpSettings, TicketHttp

NATIVE_STATUSES = ("new", "open", "pending", "hold", "solved", "closed")
DEFAULT_STATUSES: dict[TicketStatus, str] = {
    TicketStatus.NEW: "open",
    TicketStatus.APPROVED: "open",
    TicketStatus.IN_PROGRESS: "open",
    TicketStatus.RESOLVED: "solved",
    TicketStatus.CLOSED: "closed",
    TicketStatus.NEEDS_ATTENTION: "hold",
}
# Zendesk statuses none of ours writes by default, read as ours.
STATUS_ALIASES: dict[str, TicketStatus] = {"new": TicketStatus.NEW, "pending": TicketStatus.IN_PROGRESS}
# When several of our statuses share a Zendesk status, reading it gives the first of these.
READ_PREFERENCE = (
    TicketStatus.IN_PROGRESS,
    TicketStatus.RESOLVED,
    TicketStatus.CLOSED,
    TicketStatus.NEEDS_ATTENTION,
    TicketStatus.APPROVED,
    TicketStatus.NEW,
)
PRIORITIES: dict[str, int] = {"urgent": 1, "high": 2, "normal": 3, "low": 4}
PAGE_SIZE = 100  # Zendesk's maximum for cursor pagination


class ZendeskTickets:
    """``TicketSystem`` over Zendesk Support (see the module docstring for the mapping)."""

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
        """Raises ``ConfigError`` when ``options.approval_field``/``approver_field`` are missing or
        ``statuses`` names a status either side does not have."""
        self.name = name
        self.config = config
        self._fields = config.fields
        self._approval_field = _option(name, config.options, "approval_field")
        self._approver_field = _option(name, config.options, "approver_field")
        self._statuses = _forward_statuses(name, config.statuses)
        self._reverse: dict[str, TicketStatus] = {}
        for status in READ_PREFERENCE:
            self._reverse.setdefault(self._statuses[status], status)
        for native, status in STATUS_ALIASES.items():
            self._reverse.setdefault(native, status)
        self._http = TicketHttp(name, http, error_text=zendesk_error_text, sleep=sleep)

    def close(self) -> None:
        """Release the HTTP connections; the adapter is unusable afterwards."""
        self._http.close()

    def get(self, ticket_id: str) -> Ticket:
        """The ticket and its request. Raises ``TicketNotFound``, ``InvalidRequest`` (no or a bad request,
        a severity or type field holding something else), ``TicketSystemRefused``/``Unavailable``."""
        number = _number(ticket_id)
        body = self._http.json(
            "GET", f"/api/v2/tickets/{number}.json", what=f"read ticket {number}", params={"include": "users"}
        )
        ticket = self._ticket_of(body, number)
        values = _custom_values(ticket)
        description = str(ticket.get("description") or "")
        request = request_from(description, values, self._fields)
        approval = self._approval_of(values)
        return Ticket(
            id=str(ticket.get("id") or number),
            system=self.name,
            type=mapped_type(values, self._fields.type),
            severity=self._severity(ticket, values),
            status=self._status_of(ticket.get("status"), approval.approved),
            title=str(ticket.get("subject") or ""),
            description=description,
            sensitive=is_sensitive(values, self._fields.sensitive, ticket.get("tags")),
            customer=mapped_text(values, self._fields.customer) or self.config.customer,
            subscription=mapped_text(values, self._fields.subscription) or self.config.subscription,
            site="",
            requester=self._requester(ticket.get("requester_id"), body.get("users")),
            approver=approval.approver if approval.approved else None,
            request=request,
            received_at=parse_time(ticket.get("created_at")) or datetime.now(UTC),
        )

    def approval(self, ticket_id: str) -> Approval:
        """Approval as the ticket's approval and approver fields hold it. Raises ``TicketNotFound``."""
        number = _number(ticket_id)
        body = self._http.json("GET", f"/api/v2/tickets/{number}.json", what=f"read ticket {number}")
        return self._approval_of(_custom_values(self._ticket_of(body, number)))

    def comment(
        self, ticket_id: str, text: str, *, internal: bool = True, event_key: str | None = None
    ) -> None:
        """Add a private comment (whatever ``internal`` says). With ``event_key`` the comment carries its
        marker and is skipped when a comment with that marker is already there (every page is read)."""
        number = _number(ticket_id)
        body = redaction.redact(text)
        if event_key:
            marker = event_marker(event_key)
            if any(marker in str(c.get("body") or "") for c in self._comments(number)):
                return
            body = f"{body}\n\n{marker}"
        self._update(number, {"comment": {"body": body, "public": False}}, what=f"comment on ticket {number}")

    def set_status(self, ticket_id: str, status: TicketStatus) -> None:
        """Set the Zendesk status mapped to ``status``; a ticket already there is left alone. Raises
        ``TicketSystemRefused`` for a closed ticket (Zendesk allows no change to one)."""
        number = _number(ticket_id)
        wanted = self._statuses[status]
        body = self._http.json("GET", f"/api/v2/tickets/{number}.json", what=f"read ticket {number}")
        current = str(self._ticket_of(body, number).get("status") or "")
        if current == wanted:
            return
        if current == "closed":
            raise TicketSystemRefused(
                f"{self.name}: ticket {number} is closed and Zendesk does not change closed tickets "
                f"(wanted {wanted} for {status.value})",
                fix="open a follow-up ticket in Zendesk for new work",
            )
        self._update(number, {"status": wanted}, what=f"set ticket {number} to {wanted}")

    def attach(self, ticket_id: str, name: str, data: bytes, *, event_key: str | None = None) -> None:
        """Upload ``data`` as ``name`` and add it to a private comment, unless a comment already holds an
        attachment of that name and size, or the event's marker."""
        number = _number(ticket_id)
        data = redaction.redact_bytes(data)
        marker = event_marker(event_key) if event_key else None
        for existing in self._comments(number):
            if marker and marker in str(existing.get("body") or ""):
                return
            for att in existing.get("attachments") or []:
                if isinstance(att, Mapping) and (att.get("file_name"), att.get("size")) == (name, len(data)):
                    return
        uploaded = self._http.json(
            "POST",
            "/api/v2/uploads.json",
            what=f"upload {name} for ticket {number}",
            params={"filename": name},
            content=data,
            headers={"Content-Type": "application/binary"},
        )
        upload = uploaded.get("upload") if isinstance(uploaded, Mapping) else None
        token = upload.get("token") if isinstance(upload, Mapping) else None
        if not isinstance(token, str) or not token:
            raise TicketSystemRefused(
                f"{self.name}: uploading {name} for ticket {number} gave no upload token",
                fix="check that the url is the Zendesk API root and attachments are enabled",
            )
        text = f"Attached {name} ({len(data)} bytes)." + (f"\n\n{marker}" if marker else "")
        self._update(
            number,
            {"comment": {"body": text, "public": False, "uploads": [token]}},
            what=f"attach {name} to ticket {number}",
        )

    # -- helpers ---------------------------------------------------------------------------------------

    def _update(self, number: int, changes: dict[str, Any], *, what: str) -> None:
        self._http.request(
            "PUT", f"/api/v2/tickets/{number}.json", what=what, json={"ticket": changes}, ok=(200,)
        )

    def _ticket_of(self, body: Any, number: int) -> Mapping[str, Any]:
        ticket = body.get("ticket") if isinstance(body, Mapping) else None
        if not isinstance(ticket, Mapping):
            raise TicketSystemRefused(
                f"{self.name}: reading ticket {number} gave no ticket",
                fix="check that the url is the API root",
            )
        return ticket

    def _comments(self, number: int) -> Iterator[Mapping[str, Any]]:
        path = f"/api/v2/tickets/{number}/comments.json"

        def next_request(body: Any, _response: httpx.Response) -> tuple[str, dict[str, Any]] | None:
            meta = body.get("meta") if isinstance(body, Mapping) else None
            if not isinstance(meta, Mapping) or not meta.get("has_more") or not meta.get("after_cursor"):
                return None
            # The cursor, not links.next: credentials never follow a URL the server hands back.
            return path, {"page[size]": PAGE_SIZE, "page[after]": str(meta["after_cursor"])}

        def items(body: Any) -> list[Any]:
            comments = body.get("comments") if isinstance(body, Mapping) else None
            return [c for c in comments or [] if isinstance(c, Mapping)]

        return self._http.pages(
            path,
            what=f"read the comments of ticket {number}",
            items=items,
            next_request=next_request,
            params={"page[size]": PAGE_SIZE},
        )

    def _approval_of(self, values: Mapping[str, Any]) -> Approval:
        state = str(values.get(self._approval_field) or "").strip().casefold()
        approver = str(values.get(self._approver_field) or "").strip()
        if state == "approved" and approver:
            return Approval(approved=True, approver=approver, at=None)
        return Approval(approved=False, approver=None, at=None)

    def _requester(self, user_id: Any, users: Any) -> str:
        if user_id is None:
            return ""
        for user in users or []:
            if isinstance(user, Mapping) and user.get("id") == user_id:
                return str(user.get("name") or user.get("email") or user_id)
        if ascii_int(user_id) is None:
            return str(user_id)
        body = self._http.json("GET", f"/api/v2/users/{user_id}.json", what=f"read user {user_id}")
        user = body.get("user") if isinstance(body, Mapping) else None
        return str(user.get("name") or user_id) if isinstance(user, Mapping) else str(user_id)

    def _severity(self, ticket: Mapping[str, Any], values: Mapping[str, Any]) -> Severity:
        found = mapped_severity(values, self._fields.severity)
        if found is not None:
            return found
        return Severity(PRIORITIES.get(str(ticket.get("priority") or "").casefold(), 3))

    def _status_of(self, native: Any, approved: bool) -> TicketStatus:
        status = self._reverse.get(str(native or "").casefold(), TicketStatus.NEW)
        if status is TicketStatus.NEW and str(native).casefold() == "new" and approved:
            return TicketStatus.APPROVED
        return status


def zendesk_error_text(response: httpx.Response) -> str:
    """Zendesk's own words from an error: ``error`` (a word or {title, message}), ``description`` and
    each field's ``details``; the reason phrase when the body says nothing."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200] or response.reason_phrase
    if not isinstance(body, Mapping):
        return response.reason_phrase
    parts: list[str] = []
    error = body.get("error")
    if isinstance(error, Mapping):
        parts += [str(error[k]) for k in ("title", "message") if error.get(k)]
    elif error:
        parts.append(str(error))
    if body.get("description"):
        parts.append(str(body["description"]))
    details = body.get("details")
    if isinstance(details, Mapping):
        for problems in details.values():
            for problem in problems if isinstance(problems, list) else [problems]:
                text = problem.get("description") if isinstance(problem, Mapping) else problem
                if text:
                    parts.append(str(text))
    return ": ".join(parts) or response.reason_phrase


def _number(ticket_id: str) -> int:
    number = ascii_int(str(ticket_id).strip().removeprefix("#"), max_digits=15)
    if not number:
        raise TicketNotFound(
            f"{ticket_id!r} is not a Zendesk ticket id", fix="Zendesk ids are numbers, e.g. 4521"
        )
    return number


def _option(name: str, options: Mapping[str, Any], key: str) -> str:
    value = options.get(key)
    if value is None or not str(value).strip():
        raise ConfigError(
            f"ticket_systems.{name}.options.{key} is not set",
            fix="Zendesk keeps approval in custom fields: set options.approval_field and "
            "options.approver_field to their field ids",
        )
    return str(value).strip()


def _forward_statuses(name: str, overrides: Mapping[str, str]) -> dict[TicketStatus, str]:
    statuses = dict(DEFAULT_STATUSES)
    for ours, theirs in overrides.items():
        status = our_status(name, ours)
        native = theirs.strip().casefold()
        if native not in NATIVE_STATUSES:
            raise ConfigError(
                f"ticket_systems.{name}.statuses.{ours}: {theirs!r} is not a Zendesk status",
                fix="one of " + ", ".join(NATIVE_STATUSES),
            )
        statuses[status] = native
    return statuses


def _custom_values(ticket: Mapping[str, Any]) -> dict[str, Any]:
    return {
        str(f["id"]): f.get("value")
        for f in ticket.get("custom_fields") or []
        if isinstance(f, Mapping) and f.get("id") is not None
    }
