"""Reading a ticket's mapped fields the same way in every external ticket adapter.

The operator maps fields by name or id (``fields.*`` in a ticket system's settings); each adapter turns its
system's ticket into ``{field: value}`` with ``plain`` and reads the mapped ones here: severity, ticket type,
the sensitive flag, customer and subscription. What is vendor-specific (a priority scheme, a status name)
stays in the adapter; the severity an adapter falls back to is its own.

A mapped field that is unmapped, missing or empty (None, "", blanks, [] or {}) counts as not set: the
severity then follows the ticket's priority, the type is remote hands, the ticket is not sensitive.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from remotehands.errors import ConfigError, InvalidRequest
from remotehands.tickets.base import Severity, TicketStatus, TicketType

# "sev2", "Sev 2", "sev_2", "severity-2", "2", "02", "2 - High": the first digit 1..5, standing alone.
SEVERITY_TEXT = re.compile(r"^\s*(?:sev(?:erity)?[\s_-]*)?0*([1-5])\b", re.I)
TRUE_WORDS = frozenset({"true", "yes", "y", "1", "on", "sensitive"})
# Keys under which a system wraps a field's value: a select option's "value", a priority's or status's
# "name", a user's "displayName", a ServiceNow column's "display_value" (tried in this order).
WRAPPER_KEYS = ("value", "name", "displayName", "display_value")


def plain(value: Any) -> Any:
    """A field's value without its system's wrapping.

    A ServiceNow reference (a mapping with ``link``) gives its ``display_value`` (else its ``value``) as
    text: the sys_id means nothing to us. Any other mapping gives the first of ``value``, ``name``,
    ``displayName``, ``display_value`` it has, itself made plain (a select option, a priority, a user); a
    mapping with none of them is returned as a plain dict. A list gives a list of plain items; anything
    else is returned as it is."""
    if isinstance(value, Mapping):
        if "link" in value:
            return str(value.get("display_value") or value.get("value") or "")
        for key in WRAPPER_KEYS:
            if key in value:
                return plain(value[key])
        return dict(value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def mapped(values: Mapping[str, Any], field: str | None) -> Any:
    """The value of the mapped ``field`` in ``values`` (already ``plain``): the first item of a list
    (a multi-select, a multi-value custom field); None when ``field`` is unmapped (None or "") or the
    value is missing or empty (None, "", only blanks, [] or {})."""
    value = values.get(field) if field else None
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return None if isinstance(value, Mapping) and not value else value


def mapped_text(values: Mapping[str, Any], field: str | None) -> str | None:
    """The mapped field's value as stripped text (``mapped``), or None when it is not set."""
    value = mapped(values, field)
    return None if value is None else str(value).strip() or None


def parse_severity(value: Any, field: str) -> Severity:
    """A severity from what a severity field holds: ``sev1`` .. ``sev5`` in any case, with or without a
    space, ``_`` or ``-`` (``Sev 2``, ``sev_2``), ``severity 2``, a bare digit or an int (``3``), and a
    label that starts with one (``2 - High``). Raises ``InvalidRequest`` naming ``field`` for anything else
    (``urgent``, ``sev0``, ``6``, ``12``)."""
    match = SEVERITY_TEXT.match(str(value if value is not None else ""))
    if not match:
        raise InvalidRequest(
            f"field {field}: {str(value)[:40]!r} is not a severity",
            fix="set it to sev1 (outage for many customers) through sev5 (false alarm), or 1 .. 5",
        )
    return Severity(int(match.group(1)))


def mapped_severity(values: Mapping[str, Any], field: str | None) -> Severity | None:
    """The severity the mapped severity field holds (see ``parse_severity``), or None when the field is
    unmapped or empty, so the adapter falls back to the ticket's priority. Raises ``InvalidRequest`` for a
    value that is not a severity."""
    value = mapped(values, field)
    return None if value is None else parse_severity(value, str(field))


def mapped_type(values: Mapping[str, Any], field: str | None) -> TicketType:
    """The ticket type the mapped type field holds, compared without case, with runs of blanks and ``_``
    read as ``-`` (``Remote Hands``, ``config_change``, ``monitoring-alert``); ``REMOTE_HANDS`` when the
    field is unmapped or empty. Raises ``InvalidRequest`` naming the field for any other value."""
    value = mapped(values, field)
    if value is None:
        return TicketType.REMOTE_HANDS
    try:
        return TicketType(re.sub(r"[\s_]+", "-", str(value).strip().casefold()))
    except ValueError:
        raise InvalidRequest(
            f"field {field}: ticket type {str(value)[:40]!r} is not one remotehands knows",
            fix="one of: " + ", ".join(t.value for t in TicketType),
        ) from None


def truthy(value: Any) -> bool:
    """Whether a flag field says yes: a JSON true, a non-zero number, one of ``yes``, ``y``, ``true``,
    ``1``, ``on``, ``sensitive`` (any case, blanks ignored), or a list holding any of these (a checkbox
    group). Anything else (None, "", ``no``, a mapping) is no."""
    if isinstance(value, bool):
        return value
    if isinstance(value, list):
        return any(truthy(v) for v in value)
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        return value.strip().casefold() in TRUE_WORDS
    return False


def is_sensitive(values: Mapping[str, Any], field: str | None, tags: Iterable[Any] | None = ()) -> bool:
    """Whether the ticket is sensitive: the mapped flag field says yes (``truthy``), or one of ``tags``
    (Jira labels, Zendesk tags; None for none) is ``sensitive`` in any case."""
    if field and truthy(values.get(field)):
        return True
    return any(str(tag).casefold() == "sensitive" for tag in tags or ())


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time (``2024-05-01T10:00:00Z``, Jira's ``2024-05-01T10:00:00.000+0000``) as an aware
    datetime, one without an offset read as UTC; None when ``value`` is not such a string."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def our_status(system: str, key: str) -> TicketStatus:
    """A key of a ticket system's ``statuses`` setting as our status. Raises ``ConfigError`` naming the
    setting when remotehands has no such status."""
    try:
        return TicketStatus(key)
    except ValueError:
        raise ConfigError(
            f"ticket_systems.{system}.statuses: {key!r} is not a remotehands status",
            fix="keys are one of: " + ", ".join(s.value for s in TicketStatus),
        ) from None
