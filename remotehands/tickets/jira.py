"""Jira Service Management (Cloud) as a ticket system.

Endpoints (Basic auth: the account's e-mail and an API token):

    GET  /rest/api/2/issue/{key}?fields=...            the ticket, with only the fields it needs
    GET  /rest/servicedeskapi/request/{key}/approval    approvals, paged (start, limit, isLastPage)
    GET  /rest/servicedeskapi/request/{key}/comment     comments, paged, to find our event markers
    POST /rest/servicedeskapi/request/{key}/comment     an internal comment ({"public": false})
    GET  /rest/api/2/issue/{key}/transitions            the transitions open from the current status
    POST /rest/api/2/issue/{key}/transitions            take one
    POST /rest/api/2/issue/{key}/attachments            multipart ``file``, ``X-Atlassian-Token: no-check``

The platform API is v2 on purpose: v2 returns the description as plain text (wiki markup), where v3
returns an Atlassian Document Format tree. A request written as a ```remotehands fence, or as the wiki's
``{code:remotehands}`` block, is read from it verbatim.

Fields: ``fields.*`` in the settings name Jira field ids (``customfield_10050``; system fields such as
``labels`` work too). Select values (``{"value": ...}``) are unwrapped. Without a mapped severity field the
severity follows the priority: Highest/Blocker 1, High/Critical 2, Medium/Major 3, Low/Minor 4,
Lowest/Trivial 5, anything else 3. A ticket is sensitive when the mapped field is set or it has the label
``sensitive``. The requester is the reporter (in JSM, the customer who raised the request).

Approval: approved when the most recent approval (by its creation date) has the final decision
``approved``; the approver is the display name of an approver who decided ``approved``.

Statuses are workflow-specific. Defaults (our status -> Jira status), after the JSM service request
workflow with approvals; override any of them with ``statuses`` in the settings:

    new -> Waiting for approval      approved -> Waiting for support     in-progress -> In Progress
    resolved -> Resolved             closed -> Closed                    needs-attention -> Escalated

Reading, a status that none of ours maps to is matched against common names (Open, To Do, Done,
Canceled, Declined, ...) and then by its status category (new, indeterminate, done). ``set_status`` takes
the transition whose target status has the wanted name; a ticket already there is left alone; when the
workflow offers no such transition it raises ``TicketSystemRefused`` listing the transitions it does offer.

Comments are always internal (``public: false``): remotehands writes for the agents; a person decides
what the customer reads. Attachments go on the issue itself, not on a public comment; one with the same
file name and size already on the issue is not uploaded again.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from remotehands import redaction
from remotehands.config import TicketSystemConfig
from remotehands.errors import TicketNotFound, TicketSystemRefused
from remotehands.tickets.base import Approval, Severity, Ticket, TicketStatus, event_marker
from remotehands.tickets.extract import request_from
from remotehands.tickets.fields import (
    is_sensitive,
    mapped_severity,
    mapped_text,
    mapped_type,
    our_status,
    parse_time,
    plain,
)
from remotehands.tickets.http import HttpSettings, TicketHttp

DEFAULT_STATUSES: dict[TicketStatus, str] = {
    TicketStatus.NEW: "Waiting for approval",
    TicketStatus.APPROVED: "Waiting for support",
    TicketStatus.IN_PROGRESS: "In Progress",
    TicketStatus.RESOLVED: "Resolved",
    TicketStatus.CLOSED: "Closed",
    TicketStatus.NEEDS_ATTENTION: "Escalated",
}
# Names common in other Jira workflows, read as ours when none of our mapped statuses has the name.
STATUS_ALIASES: dict[str, TicketStatus] = {
    name: status
    for status, names in (
        (TicketStatus.NEW, "open|to do|reopened"),
        (TicketStatus.IN_PROGRESS, "pending|waiting for customer|work in progress"),
        (TicketStatus.RESOLVED, "done|completed"),
        (TicketStatus.CLOSED, "canceled|cancelled|declined|rejected"),
    )
    for name in names.split("|")
}
CATEGORIES = {
    "new": TicketStatus.NEW,
    "indeterminate": TicketStatus.IN_PROGRESS,
    "done": TicketStatus.RESOLVED,
}
# When several of our statuses are mapped to one Jira status, reading it gives the first of these.
READ_PREFERENCE = (
    TicketStatus.IN_PROGRESS,
    TicketStatus.RESOLVED,
    TicketStatus.CLOSED,
    TicketStatus.NEEDS_ATTENTION,
    TicketStatus.APPROVED,
    TicketStatus.NEW,
)
# Priority names of the default scheme and of the older one, by severity.
PRIORITY_NAMES = ("highest blocker", "high critical", "medium major", "low minor", "lowest trivial")
PRIORITIES = {name: sev for sev, names in enumerate(PRIORITY_NAMES, start=1) for name in names.split()}
ISSUE_FIELDS = ("summary", "description", "status", "priority", "reporter", "created", "labels")
PAGE_LIMIT = 100  # asked for; Jira may answer with fewer per page (JSM: 50), paging follows what it says
KEY = re.compile(r"^(?:[A-Z][A-Z0-9_]*-[1-9]\d*|\d+)$")


class JiraTickets:
    """``TicketSystem`` over Jira Service Management Cloud (see the module docstring for the mapping)."""

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
        """Raises ``ConfigError`` when ``statuses`` names a status remotehands does not have."""
        self.name = name
        self.config = config
        self._fields = config.fields
        self._statuses = _forward_statuses(name, config.statuses)
        self._reverse: dict[str, TicketStatus] = {}
        for status in READ_PREFERENCE:
            self._reverse.setdefault(self._statuses[status].casefold(), status)
        self._http = TicketHttp(name, http, error_text=jira_error_text, sleep=sleep)

    def close(self) -> None:
        """Release the HTTP connections; the adapter is unusable afterwards."""
        self._http.close()

    def get(self, ticket_id: str) -> Ticket:
        """The ticket and its request. Raises ``TicketNotFound``, ``InvalidRequest`` (no or a bad request,
        a severity or type field holding something else), ``TicketSystemRefused``/``Unavailable``."""
        key = _key(ticket_id)
        wanted = [*ISSUE_FIELDS, *(f for f in self._fields.model_dump().values() if f)]
        issue = self._issue(key, wanted)
        fields: dict[str, Any] = issue.get("fields") or {}
        values = {name: plain(value) for name, value in fields.items()}
        description = str(fields.get("description") or "")
        request = request_from(description, values, self._fields)
        approval = self.approval(key)
        return Ticket(
            id=str(issue.get("key") or key),
            system=self.name,
            type=mapped_type(values, self._fields.type),
            severity=self._severity(fields, values),
            status=self._status_of(fields.get("status")),
            title=str(fields.get("summary") or ""),
            description=description,
            sensitive=is_sensitive(values, self._fields.sensitive, fields.get("labels")),
            customer=mapped_text(values, self._fields.customer) or self.config.customer,
            subscription=mapped_text(values, self._fields.subscription) or self.config.subscription,
            site="",
            requester=_name_of(fields.get("reporter")),
            approver=approval.approver if approval.approved else None,
            request=request,
            received_at=parse_time(fields.get("created")) or datetime.now(UTC),
        )

    def approval(self, ticket_id: str) -> Approval:
        """The decision of the most recent approval. Raises ``TicketNotFound`` for an unknown ticket."""
        key = _key(ticket_id)
        path = f"/rest/servicedeskapi/request/{key}/approval"
        approvals = list(self._paged(path, what=f"read the approvals of {key}"))
        if not approvals:
            return Approval(approved=False, approver=None, at=None)
        order = {id(a): i for i, a in enumerate(approvals)}
        latest = max(approvals, key=lambda a: (_millis(a.get("createdDate")), order[id(a)]))
        if str(latest.get("finalDecision") or "").casefold() != "approved":
            return Approval(approved=False, approver=None, at=None)
        approver = next(
            (
                _name_of(a.get("approver")) or None
                for a in latest.get("approvers") or []
                if isinstance(a, Mapping) and str(a.get("approverDecision") or "").casefold() == "approved"
            ),
            None,
        )
        completed = latest.get("completedDate")
        at = parse_time(completed.get("iso8601")) if isinstance(completed, Mapping) else None
        return Approval(approved=True, approver=approver, at=at)

    def comment(
        self, ticket_id: str, text: str, *, internal: bool = True, event_key: str | None = None
    ) -> None:
        """Add an internal comment (whatever ``internal`` says). With ``event_key`` the comment carries
        its marker and is skipped when a comment with that marker is already there (every page is read)."""
        key = _key(ticket_id)
        body = redaction.redact(text)
        if event_key:
            marker = event_marker(event_key)
            comments = self._paged(
                f"/rest/servicedeskapi/request/{key}/comment", what=f"read comments of {key}"
            )
            if any(marker in str(c.get("body") or "") for c in comments):
                return
            body = f"{body}\n\n{marker}"
        self._http.request(
            "POST",
            f"/rest/servicedeskapi/request/{key}/comment",
            what=f"comment on {key}",
            json={"body": body, "public": False},
            ok=(200, 201),
        )

    def set_status(self, ticket_id: str, status: TicketStatus) -> None:
        """Move the ticket to the Jira status mapped to ``status`` by taking a workflow transition.
        Raises ``TicketSystemRefused`` naming the transitions on offer when none leads there."""
        key = _key(ticket_id)
        wanted = self._statuses[status]
        fields = self._issue(key, ["status"]).get("fields") or {}
        current = _name_of(fields.get("status"))
        if current.casefold() == wanted.casefold():
            return
        body = self._http.json(
            "GET", f"/rest/api/2/issue/{key}/transitions", what=f"list transitions of {key}"
        )
        transitions = [t for t in (body.get("transitions") or []) if isinstance(t, Mapping)]
        for transition in transitions:
            if _name_of(transition.get("to")).casefold() == wanted.casefold():
                self._http.request(
                    "POST",
                    f"/rest/api/2/issue/{key}/transitions",
                    what=f"move {key} to {wanted}",
                    json={"transition": {"id": str(transition.get("id"))}},
                    ok=(200, 204),
                )
                return
        offered = ", ".join(f"'{t.get('name')}' -> {_name_of(t.get('to'))}" for t in transitions) or "none"
        raise TicketSystemRefused(
            f"{self.name}: {key} is in '{current}' and its workflow has no transition to '{wanted}' "
            f"(our status {status.value}); transitions on offer: {offered}",
            fix=f"move it by hand, or map {status.value} to a reachable status with "
            f"ticket_systems.{self.name}.statuses",
        )

    def attach(self, ticket_id: str, name: str, data: bytes, *, event_key: str | None = None) -> None:
        """Attach ``data`` as file ``name``; nothing is sent when the issue already has an attachment of
        that name and size (Jira attachments carry no text, so ``event_key`` cannot mark them)."""
        key = _key(ticket_id)
        data = redaction.redact_bytes(data)
        fields = self._issue(key, ["attachment"]).get("fields") or {}
        existing = [a for a in fields.get("attachment") or [] if isinstance(a, Mapping)]
        if (name, len(data)) in {(a.get("filename"), a.get("size")) for a in existing}:
            return
        self._http.request(
            "POST",
            f"/rest/api/2/issue/{key}/attachments",
            what=f"attach {name} to {key}",
            files={"file": (name, data, "application/octet-stream")},
            headers={"X-Atlassian-Token": "no-check"},
            ok=(200,),
        )

    # -- helpers ---------------------------------------------------------------------------------------

    def _issue(self, key: str, fields: list[str]) -> dict[str, Any]:
        body = self._http.json(
            "GET", f"/rest/api/2/issue/{key}", what=f"read {key}", params={"fields": ",".join(fields)}
        )
        if not isinstance(body, dict):
            raise TicketSystemRefused(f"{self.name}: reading {key} gave no issue", fix="check the url")
        return body

    def _paged(self, path: str, *, what: str) -> Iterator[Mapping[str, Any]]:
        """Every value of a JSM listing, page by page (``start`` moves by what each page held)."""

        def next_request(body: Any, _response: httpx.Response) -> tuple[str, dict[str, Any]] | None:
            if not isinstance(body, Mapping) or body.get("isLastPage", True) or not body.get("values"):
                return None
            return path, {"start": int(body.get("start") or 0) + len(body["values"]), "limit": PAGE_LIMIT}

        return self._http.pages(
            path,
            what=what,
            items=_values,
            next_request=next_request,
            params={"start": 0, "limit": PAGE_LIMIT},
        )

    def _severity(self, fields: Mapping[str, Any], values: Mapping[str, Any]) -> Severity:
        found = mapped_severity(values, self._fields.severity)
        if found is not None:
            return found
        priority = str(plain(fields.get("priority")) or "").strip().casefold()
        return Severity(PRIORITIES.get(priority, 3))

    def _status_of(self, status: Any) -> TicketStatus:
        name = _name_of(status).casefold()
        found = self._reverse.get(name) or STATUS_ALIASES.get(name)
        if found is not None:
            return found
        category = status.get("statusCategory") if isinstance(status, Mapping) else None
        key = str(category.get("key") or "") if isinstance(category, Mapping) else ""
        return CATEGORIES.get(key, TicketStatus.NEW)


def jira_error_text(response: httpx.Response) -> str:
    """Jira's own words from an error: ``errorMessages`` and ``errors`` (platform API) or
    ``errorMessage`` (JSM API); the reason phrase when the body says nothing."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200] or response.reason_phrase
    if not isinstance(body, dict):
        return response.reason_phrase
    parts = [str(m) for m in body.get("errorMessages") or [] if m]
    errors = body.get("errors")
    if isinstance(errors, Mapping):
        parts += [f"{field}: {message}" for field, message in errors.items()]
    if body.get("errorMessage"):
        parts.append(str(body["errorMessage"]))
    return "; ".join(parts) or response.reason_phrase


def _key(ticket_id: str) -> str:
    key = str(ticket_id).strip().upper()
    if not KEY.match(key):
        raise TicketNotFound(f"{ticket_id!r} is not a Jira issue key", fix="Jira keys look like HW-12")
    return key


def _forward_statuses(name: str, overrides: Mapping[str, str]) -> dict[TicketStatus, str]:
    statuses = dict(DEFAULT_STATUSES)
    for ours, theirs in overrides.items():
        statuses[our_status(name, ours)] = theirs.strip()
    return statuses


def _values(body: Any) -> list[Any]:
    values = body.get("values") if isinstance(body, Mapping) else None
    return [v for v in values or [] if isinstance(v, Mapping)]


def _name_of(thing: Any) -> str:
    """A user's display name, or a status's name."""
    if isinstance(thing, Mapping):
        return str(thing.get("displayName") or thing.get("name") or thing.get("emailAddress") or "")
    return str(thing or "")


def _millis(date: Any) -> float:
    parsed = parse_time(date.get("iso8601")) if isinstance(date, Mapping) else None
    return parsed.timestamp() if parsed else 0.0
