"""Turning a Redfish reply into a resource or one of our errors, the same way for BMCs and PDUs."""

from __future__ import annotations

from typing import Literal, TypeVar

from pydantic import BaseModel, ValidationError

from remotehands.bmc.redfish_connection import Reply
from remotehands.bmc.redfish_errors import BUSY_FIX, BUSY_STATUSES
from remotehands.errors import DeviceRefused, DeviceUnreachable

M = TypeVar("M", bound=BaseModel)
Role = Literal["BMC", "PDU"]

_OTHER_WAY = {
    "BMC": "use another power path for this host in the inventory",
    "PDU": "drive the PDU over SNMP, or use another power path for this host in the inventory",
}


def check_reply(reply: Reply, what: str, *, device: str, role: Role) -> Reply:
    """``reply`` when it is a success; else ``DeviceUnreachable`` (busy, 5xx) or ``DeviceRefused``."""
    if reply.ok:
        return reply
    if reply.status in BUSY_STATUSES:
        raise DeviceUnreachable(
            f"Redfish {role} {device} is busy and did not {what}: {reply.describe()}", fix=BUSY_FIX
        )
    raise DeviceRefused(
        f"Redfish {role} {device} refused to {what}: {reply.describe()}",
        fix=f"the {role} does not support this or rejected its data; check its firmware, or {_OTHER_WAY[role]}",
    )


def parse_reply(model: type[M], reply: Reply, what: str, *, device: str, role: Role) -> M:
    """The reply's body as ``model``; ``DeviceRefused`` naming the first problem when it is not that resource."""
    try:
        return model.model_validate_json(reply.body)
    except ValidationError as exc:
        raise DeviceRefused(
            f"Redfish {role} {device} answered with a payload that is not the expected resource ({what}): "
            f"{exc.error_count()} problem(s), first: {exc.errors()[0]['msg']}",
            fix=f"the {role} firmware misbehaves; update it, or {_OTHER_WAY[role]}",
        ) from exc
