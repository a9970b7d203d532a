"""Turning what a ticket says into a ``TaskRequest``: structured fields first, else a fenced block.

A ticket in an external system says what it wants either in custom fields the operator maps in the
settings (``fields.action``, ``fields.hosts``, ...) or in a fenced block in its description::

    ```remotehands
    action: power.cycle
    hosts: [mac-0042]
    ```

Either way the result is validated with pydantic, and every error names the field and how to fix it, so
the intake can put it on the ticket as a comment instead of making a job.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from remotehands.errors import InvalidRequest
from remotehands.tickets.base import TaskRequest

BLOCK = re.compile(r"^[ \t]*(```|~~~)[ \t]*remotehands[ \t]*\r?\n(?P<body>.*?)^[ \t]*\1[ \t]*$", re.M | re.S)
# Jira's wiki markup and some editors turn a fence into {code:remotehands} ... {code}.
JIRA_BLOCK = re.compile(r"\{code:(?:language=)?remotehands\}\r?\n?(?P<body>.*?)\{code\}", re.S)


class FieldMap(BaseModel):
    """Which of a ticket system's fields hold the request and the ticket's metadata (names or ids)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: str | None = None
    hosts: str | None = None
    params: str | None = None
    subscription: str | None = None
    customer: str | None = None
    severity: str | None = None
    type: str | None = None
    sensitive: str | None = None


class RequestBlock(BaseModel):
    """The fenced ``remotehands`` block: unknown keys are errors, so a typo never becomes a silent no-op."""

    model_config = ConfigDict(extra="forbid")

    action: str = Field(min_length=1)
    hosts: list[str] = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("hosts", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [h.strip() for h in value.replace(",", " ").split() if h.strip()]
        return value


def find_block(description: str) -> str | None:
    """The body of the first ``remotehands`` block in a description, or None."""
    for pattern in (BLOCK, JIRA_BLOCK):
        match = pattern.search(description or "")
        if match:
            return match.group("body")
    return None


def request_from(description: str, fields: Mapping[str, Any], fmap: FieldMap) -> TaskRequest:
    """The ticket's request, from mapped fields when they hold an action, else from its fenced block.

    Raises ``InvalidRequest`` naming the field (or block key) that is wrong."""
    if fmap.action and _present(fields.get(fmap.action)):
        raw: dict[str, Any] = {
            "action": _text(fields.get(fmap.action)),
            "hosts": fields.get(fmap.hosts) if fmap.hosts else None,
        }
        if fmap.params and _present(fields.get(fmap.params)):
            raw["params"] = _params(fields.get(fmap.params), fmap.params)
        where = f"fields {fmap.action}/{fmap.hosts}"
    else:
        body = find_block(description)
        if body is None:
            raise InvalidRequest(
                "the ticket holds no request: no 'remotehands' block in its description"
                + (f" and field {fmap.action} is empty" if fmap.action else ""),
                fix="add a block like ```remotehands / action: power.cycle / hosts: [mac-01] / ``` "
                "to the description",
            )
        try:
            loaded = yaml.safe_load(body)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}" if mark is not None else ""
            raise InvalidRequest(
                f"the remotehands block is not valid YAML{at}", fix="write it as 'key: value' lines"
            ) from None
        if not isinstance(loaded, dict):
            raise InvalidRequest(
                "the remotehands block is not a mapping", fix="write it as 'action: ...' and 'hosts: [...]'"
            )
        raw = loaded
        where = "the remotehands block"
    try:
        block = RequestBlock.model_validate(raw)
        return TaskRequest(action=block.action, targets=tuple(block.hosts), params=block.params)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'request'}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise InvalidRequest(
            f"{where}: {problems}",
            fix="the request needs 'action' (e.g. power.cycle) and 'hosts' (a list of inventory names); "
            "other keys go under 'params'",
        ) from None


def request_key(request: TaskRequest) -> str:
    """A stable digest of what is asked (action, sorted targets, params): the same request on the same
    ticket is the same work; a changed request is new work."""
    canonical = json.dumps(
        {"action": request.action, "targets": sorted(request.targets), "params": request.params},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _present(value: Any) -> bool:
    return value not in (None, "", [], {})


def _text(value: Any) -> Any:
    # Select fields arrive as {"value": "power.cycle"} (Jira) or {"name": ...}; plain text as a string.
    if isinstance(value, Mapping):
        for key in ("value", "name", "display_value"):
            if key in value:
                return value[key]
    return value


def _params(value: Any, field: str) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str):
        try:
            loaded = yaml.safe_load(value)
        except yaml.YAMLError:
            loaded = None
        if isinstance(loaded, dict):
            return loaded
    raise InvalidRequest(
        f"field {field} does not hold a mapping of parameters", fix="write it as YAML 'k: v'"
    )
