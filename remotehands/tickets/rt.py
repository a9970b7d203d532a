"""Request Tracker (RT 5) as a ticket system, through its REST2 API.

``url`` is RT's web root (``https://rt.example.com`` or ``.../rt``); the adapter talks to ``/REST/2.0``
under it. Ticket ids are RT's ticket numbers. Settings (``[ticket_systems.<name>]``):

* ``fields``: names of ticket custom fields holding the request and metadata (``"RH Action"``, ...).
* ``statuses``: our status -> an RT status name. Defaults (RT's default lifecycle): new -> new,
  in-progress -> open, needs-attention -> stalled, resolved -> resolved, closed -> resolved (RT has no
  separate closed status; ``rejected`` and ``deleted`` mean something else). Read back: rejected and deleted
  are CLOSED, new with an approved Approval field is APPROVED, a status of a custom lifecycle that nothing
  maps is NEEDS_ATTENTION. ``set_status(APPROVED)`` changes nothing unless ``statuses.approved`` names one.
* ``options``: ``approval_field`` (default ``Approval``: approved / pending / declined) and
  ``approver_field`` (default ``Approver``). RT keeps real approvals as tickets in an approvals queue; the
  deployments we serve record the decision in these two ticket custom fields instead, which is what this
  adapter reads. The approval time is not recorded (``Approval.at`` is None).

RT has no description field: the description is the text of the ticket's ``Create`` transaction. Severity
is the mapped severity field if any, else a band of RT's numeric Priority (0..100; Low 0, Medium 50, High
100 in RT 5's PriorityAsString): 80+ Sev1, 60+ Sev2, 40+ Sev3, below 40 Sev4. Sev5 (false alarm) only comes
from a severity field. The requester is the first Requestor's RT user name.

Comments are RT comments (internal) or correspondence (public). A comment with an ``event_key`` carries its
marker in its body and its subject; RT stores a message's subject in the transaction's ``Data``, so the
redelivery check reads only the history (every page), not each message. Files are attached to a comment.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
import mimetypes
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import httpx

from remotehands import redaction
from remotehands.config import TicketSystemConfig
from remotehands.errors import TicketNotFound, TicketSystemRefused
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

log = logging.getLogger(__name__)

API = "/REST/2.0"
PAGE = 100  # REST2's largest page
WRITE_STATUSES: dict[TicketStatus, str] = {
    TicketStatus.NEW: "new",
    TicketStatus.IN_PROGRESS: "open",
    TicketStatus.NEEDS_ATTENTION: "stalled",
    TicketStatus.RESOLVED: "resolved",
    TicketStatus.CLOSED: "resolved",
}
READ_STATUSES: dict[str, TicketStatus] = {
    "new": TicketStatus.NEW,
    "open": TicketStatus.IN_PROGRESS,
    "stalled": TicketStatus.NEEDS_ATTENTION,
    "resolved": TicketStatus.RESOLVED,
    "rejected": TicketStatus.CLOSED,
    "deleted": TicketStatus.CLOSED,
}
PRIORITY_WORDS = {"low": 0, "medium": 50, "high": 100}
PRIORITY_BANDS = ((80, Severity.OUTAGE_MANY), (60, Severity.OUTAGE_ONE), (40, Severity.DEGRADED))


class RtTickets:
    """``TicketSystem`` over one RT instance. Every call raises ``TicketSystemUnavailable`` when RT does not
    answer (or keeps answering 429/5xx), ``TicketSystemRefused`` when it refuses (carrying RT's message,
    never the token) and ``TicketNotFound`` for a ticket it does not have."""

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
        root = http.base_url.rstrip("/")
        settings = dataclasses.replace(http, base_url=root if root.endswith(API) else root + API)
        self._http = TicketHttp(name, settings, error_text=error_text, sleep=sleep)
        self._approval_field = str(config.options.get("approval_field", "Approval"))
        self._approver_field = str(config.options.get("approver_field", "Approver"))
        self._write: dict[TicketStatus, str] = dict(WRITE_STATUSES)
        self._read = dict(READ_STATUSES)
        for ours, theirs in config.statuses.items():
            status = our_status(name, ours)
            self._write[status] = theirs
            self._read[theirs.lower()] = status

    def close(self) -> None:
        self._http.close()

    # -- reading ----------------------------------------------------------------------------------

    def get(self, ticket_id: str) -> Ticket:
        """The ticket as a ``Ticket``. Raises ``InvalidRequest`` when it holds no valid request (custom
        fields or a fenced block in the Create message), or a mapped severity/type field is not valid."""
        number = self._number(ticket_id)
        ticket = self._ticket(number)
        fields = custom_fields(ticket)
        fmap = self._config.fields
        approval = self._approval_of(fields)
        status = self._read.get(str(ticket.get("Status", "")).lower(), TicketStatus.NEEDS_ATTENTION)
        if status == TicketStatus.NEW and approval.approved:
            status = TicketStatus.APPROVED
        description = self._description(number)
        return Ticket(
            id=str(number),
            system=self.name,
            type=mapped_type(fields, fmap.type),
            severity=self._severity(ticket, fields),
            status=status,
            title=str(ticket.get("Subject") or ""),
            description=description,
            sensitive=is_sensitive(fields, fmap.sensitive),
            customer=mapped_text(fields, fmap.customer) or self._config.customer,
            subscription=mapped_text(fields, fmap.subscription) or self._config.subscription,
            site="",
            requester=requestor(ticket),
            approver=approval.approver,
            request=request_from(description, fields, fmap),
            received_at=_created(ticket, number),
        )

    def approval(self, ticket_id: str) -> Approval:
        """The approval custom field (``approved`` or not) and the approver field, read fresh from RT."""
        return self._approval_of(custom_fields(self._ticket(self._number(ticket_id))))

    # -- writing ----------------------------------------------------------------------------------

    def comment(
        self, ticket_id: str, text: str, *, internal: bool = True, event_key: str | None = None
    ) -> None:
        """An RT comment (internal) or correspondence. With ``event_key`` nothing is written when a message
        of the ticket's history already carries its marker."""
        number = self._number(ticket_id)
        message: dict[str, Any] = {"Content": redaction.redact(text), "ContentType": "text/plain"}
        if event_key:
            marker = event_marker(event_key)
            if self._marked(number, marker):
                log.debug("%s: ticket %s already holds %s", self.name, number, marker)
                return
            message |= {"Subject": f"remotehands {marker}", "Content": f"{message['Content']}\n\n{marker}"}
        kind = "comment" if internal else "correspond"
        self._http.json("POST", f"/ticket/{number}/{kind}", what=f"{kind} on ticket {number}", json=message)

    def set_status(self, ticket_id: str, status: TicketStatus) -> None:
        """Set the ticket's Status and read it back: RT answers 200 even when it keeps the old status (an
        invalid one for the queue's lifecycle), so a status that did not change is ``TicketSystemRefused``
        carrying RT's own message."""
        number = self._number(ticket_id)
        wanted = self._write.get(status)
        if wanted is None:
            log.debug("%s: %s has no RT status; ticket %s left as it is", self.name, status.value, number)
            return
        said = self._http.json(
            "PUT", f"/ticket/{number}", what=f"set status of ticket {number}", json={"Status": wanted}
        )
        now = str(self._ticket(number).get("Status", ""))
        if now.lower() != wanted.lower():
            text = "; ".join(str(m) for m in said) if isinstance(said, list) else ""
            raise TicketSystemRefused(
                f"{self.name} kept ticket {number} at {now!r} instead of {wanted!r}: {redaction.redact(text)[:300]}",
                fix=f"check statuses.{status.value} against the queue's lifecycle",
            )

    def attach(self, ticket_id: str, name: str, data: bytes, *, event_key: str | None = None) -> None:
        """Attach ``data`` as ``name`` to a comment; nothing is written when the ticket already has a file of
        that name and size."""
        number = self._number(ticket_id)
        data = redaction.redact_bytes(data)
        if self._has_file(number, name, len(data)):
            log.debug("%s: ticket %s already has %s", self.name, number, name)
            return
        marker = f" {event_marker(event_key)}" if event_key else ""
        message = {
            "Subject": f"remotehands attached {name}{marker}",
            "Content": f"remotehands attached {name}{marker}",
            "ContentType": "text/plain",
            "Attachments": [
                {
                    "FileName": name,
                    "FileType": mimetypes.guess_type(name)[0] or "application/octet-stream",
                    "FileContent": base64.b64encode(data).decode(),
                }
            ],
        }
        self._http.json(
            "POST", f"/ticket/{number}/comment", what=f"attach {name} to ticket {number}", json=message
        )

    # -- helpers ----------------------------------------------------------------------------------

    def _number(self, ticket_id: str) -> int:
        number = ascii_int(str(ticket_id).strip().lstrip("#"), max_digits=12)
        if number is None:
            raise TicketNotFound(f"{self.name}: {ticket_id!r} is not an RT ticket number", fix="e.g. 1234")
        return number

    def _ticket(self, number: int) -> dict[str, Any]:
        body = self._http.json("GET", f"/ticket/{number}", what=f"read ticket {number}")
        if not isinstance(body, dict):
            raise TicketSystemRefused(
                f"{self.name}: ticket {number} is not a JSON object", fix="check the url"
            )
        return body

    def _approval_of(self, fields: dict[str, Any]) -> Approval:
        approved = (mapped_text(fields, self._approval_field) or "").lower() == "approved"
        approver = mapped_text(fields, self._approver_field) if approved else None
        return Approval(approved=approved, approver=approver, at=None)

    def _collection(self, path: str, *, what: str, fields: str) -> Iterator[dict[str, Any]]:
        params = {"per_page": PAGE, "page": 1, "fields": fields}
        return self._http.pages(path, what=what, items=_items, next_request=self._next, params=params)

    def _next(self, body: Any, _response: httpx.Response) -> tuple[str, dict[str, Any]] | None:
        """``next_page``, re-rooted on the configured URL: the token goes nowhere else."""
        url = body.get("next_page") if isinstance(body, dict) else None
        if not url:
            return None
        return self._http.follow(str(url))

    def _description(self, number: int) -> str:
        """The text of the Create transaction: its first text part that is not a file, plain text first."""
        history = self._collection(
            f"/ticket/{number}/history", what=f"read history of {number}", fields="Type"
        )
        create = next((t for t in history if t.get("Type") == "Create"), None)
        if create is None:
            return ""
        parts = [
            p
            for p in self._collection(
                f"/transaction/{create['id']}/attachments",
                what=f"read the message that created {number}",
                fields="ContentType,Filename,Content",
            )
            if not p.get("Filename") and str(p.get("ContentType", "")).startswith("text/")
        ]
        parts.sort(key=lambda p: str(p.get("ContentType")) != "text/plain")
        return str(parts[0].get("Content") or "") if parts else ""

    def _marked(self, number: int, marker: str) -> bool:
        history = self._collection(
            f"/ticket/{number}/history", what=f"read history of {number}", fields="Type,Data"
        )
        return any(marker in str(t.get("Data", "")) for t in history)

    def _has_file(self, number: int, name: str, size: int) -> bool:
        files = self._collection(
            f"/ticket/{number}/attachments", what=f"list attachments of {number}", fields="Filename"
        )
        for item in files:
            if item.get("Filename") != name:
                continue
            body = self._http.json("GET", f"/attachment/{item['id']}", what=f"read attachment {item['id']}")
            try:
                if len(base64.b64decode(str(body.get("Content") or ""))) == size:
                    return True
            except (binascii.Error, ValueError):
                continue
        return False

    def _severity(self, ticket: dict[str, Any], fields: dict[str, Any]) -> Severity:
        found = mapped_severity(fields, self._config.fields.severity)
        return found if found is not None else priority_severity(ticket.get("Priority"))


# -- RT values ----------------------------------------------------------------------------------------


def custom_fields(ticket: dict[str, Any]) -> dict[str, Any]:
    """``{name: value}`` of the ticket's custom fields: one value as itself, several as a list."""
    out: dict[str, Any] = {}
    entries = ticket.get("CustomFields") or []
    for cf in entries if isinstance(entries, list) else []:
        values = [v for v in cf.get("values") or [] if v not in (None, "")]
        out[str(cf.get("name"))] = values[0] if len(values) == 1 else (values or None)
    return out


def requestor(ticket: dict[str, Any]) -> str:
    """The RT user name of the ticket's first Requestor, or "" when it has none."""
    people = ticket.get("Requestor") or []
    first = people[0] if isinstance(people, list) and people else people
    return str(first.get("id") or "") if isinstance(first, dict) else ""


def priority_severity(value: Any) -> Severity:
    """RT's Priority (a number, or Low/Medium/High) -> a severity band; see the module docstring."""
    text = str(value if value is not None else "").strip().lower()
    number = PRIORITY_WORDS.get(text, ascii_int(text, max_digits=9, signed=True) or 0)
    return next((sev for floor, sev in PRIORITY_BANDS if number >= floor), Severity.REDUNDANCY_LOST)


def error_text(response: httpx.Response) -> str:
    """RT's ``{"message": ...}`` (or a list of messages)."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200] or response.reason_phrase
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    if isinstance(body, list):
        return "; ".join(str(m) for m in body) or response.reason_phrase
    return response.reason_phrase


def _items(body: Any) -> list[Any]:
    items = body.get("items") if isinstance(body, dict) else None
    return items if isinstance(items, list) else []


def _created(ticket: dict[str, Any], number: int) -> datetime:
    created = parse_time(ticket.get("Created"))
    if created is None:
        raise TicketSystemRefused(f"ticket {number} has no valid Created date", fix="check the RT version")
    return created
