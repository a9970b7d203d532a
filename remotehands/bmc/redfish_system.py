"""Where one host's system is on a Redfish service, what it offers, and typed requests to it.

``RedfishSystem`` discovers, on first use, the system's URI (``/redfish/v1/Systems/{system_id}`` when a
``system_id`` is given, found in the collection when that URI is not there; else the only member of the
collection) and its capabilities: the ``ResetType`` values its Reset action allows (inline, else from its
``@Redfish.ActionInfo``, else the few nearly every BMC takes), its boot override properties, its links to
virtual media. The GET that discovers is returned to the caller, so the first status read costs no more
than any other. Payloads are parsed into ``redfish_models`` here; error answers become ``DeviceRefused``
(``DeviceUnreachable`` when busy).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TypeVar

from pydantic import BaseModel

from remotehands.bmc import redfish_quirks as quirks
from remotehands.bmc.redfish_connection import RedfishConnection, Reply
from remotehands.bmc.redfish_models import ActionInfo, Collection, ComputerSystem
from remotehands.bmc.redfish_replies import check_reply, parse_reply
from remotehands.errors import DeviceRefused, RetryableError

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


class RedfishSystem:
    """One system of one Redfish service. Not thread-safe on its own: ``RedfishBmc`` serialises calls."""

    def __init__(self, connection: RedfishConnection, system_id: str | None) -> None:
        self.connection = connection
        self.system_id = system_id
        self.uri: str | None = None
        self.discovered: ComputerSystem | None = None
        self.reset_types: frozenset[str] = frozenset()

    @property
    def device(self) -> str:
        return self.connection.device

    def capabilities(self) -> ComputerSystem:
        """The system as discovered (actions, boot override properties, links); discovers on first use."""
        return self.discovered if self.discovered is not None else self.discover()

    def system_uri(self) -> str:
        if self.uri is None:
            self.discover()
        assert self.uri is not None
        return self.uri

    def discover(self) -> ComputerSystem:
        """Find the system and read it; the returned model is fresh (a status read can use it)."""
        root = self.connection.root()
        if root.systems is None:
            raise DeviceRefused(
                f"Redfish BMC {self.device} lists no Systems collection",
                fix="check that this address is a server's BMC, not a chassis or PDU manager",
            )
        systems_uri = root.systems.uri.rstrip("/")
        uri: str | None = None
        if self.system_id is not None:
            uri = f"{systems_uri}/{self.system_id}"
            reply = self.request("GET", uri, "read the system")
            if reply.status == 404:
                uri = None
        if uri is None:
            uri = self._find(systems_uri)
            reply = self.request("GET", uri, "read the system")
        system = self.parse(ComputerSystem, self.check(reply, "read the system"), "read the system")
        self.reset_types = self._allowed_reset_types(system)
        self.uri, self.discovered = uri, system
        return system

    def _find(self, systems_uri: str) -> str:
        members = [m.uri for m in self.read(Collection, systems_uri, "list the systems").members]
        if self.system_id is not None:
            found = [uri for uri in members if _last_segment(uri) == self.system_id]
            if found:
                return found[0]
            problem = f"has no system {self.system_id!r}"
        elif len(members) == 1:
            return members[0]
        else:
            problem = f"lists {len(members)} systems, not one"
        ids = ", ".join(_last_segment(uri) for uri in members) or "none"
        raise DeviceRefused(
            f"Redfish BMC {self.device} {problem} (it has: {ids})",
            fix="set power.system_id of this host in the inventory to one of those ids",
        )

    def _allowed_reset_types(self, system: ComputerSystem) -> frozenset[str]:
        reset = system.actions.reset
        if reset is None:
            return frozenset()
        if reset.allowable is not None:
            return frozenset(reset.allowable)
        if reset.action_info is not None:
            info = self.read(ActionInfo, reset.action_info, "read the reset action's parameters")
            for parameter in info.parameters:
                if parameter.name == "ResetType" and parameter.allowable is not None:
                    return frozenset(parameter.allowable)
        return frozenset(quirks.ASSUMED_RESET_TYPES)

    # -- typed requests ----------------------------------------------------------------------------------

    def request(self, method: str, uri: str, what: str, body: dict[str, object] | None = None) -> Reply:
        return self.connection.request(method, uri, what, body)

    def read(self, model: type[M], uri: str, what: str) -> M:
        """GET ``uri`` and parse it as ``model``; raises ``DeviceRefused`` for an error or a bad payload."""
        return self.parse(model, self.check(self.request("GET", uri, what), what), what)

    def parse(self, model: type[M], reply: Reply, what: str) -> M:
        """The reply's body as ``model``; raises ``DeviceRefused`` when it is not that resource."""
        return parse_reply(model, reply, what, device=self.device, role="BMC")

    def check(self, reply: Reply, what: str) -> Reply:
        """``reply`` when it is a success; else ``DeviceUnreachable`` (busy, 5xx) or ``DeviceRefused``."""
        return check_reply(reply, what, device=self.device, role="BMC")

    def retrying(
        self, delays: tuple[float, ...], method: str, uri: str, what: str, body: dict[str, object]
    ) -> Iterator[Reply]:
        """Yield the answer to the request; each time the caller asks for another, wait and send again.

        Raises ``RetryableError`` when asked once more after the last of ``delays``.
        """
        tries = 0
        waits = iter(delays)
        while True:
            reply = self.request(method, uri, what, body)
            tries += 1
            yield reply
            delay = next(waits, None)
            if delay is None:
                raise RetryableError(
                    f"Redfish BMC {self.device} still refuses to {what} after {tries} tries: {reply.describe()}",
                    fix="the BMC is busy with a state change (POST, a power transition); retry in a minute",
                )
            log.info(
                "Redfish %s: %s answered %s; trying again in %gs", self.device, what, reply.describe(), delay
            )
            time.sleep(delay)

    def not_offered(
        self, thing: str, offered: list[str] | frozenset[str], what: str = "values"
    ) -> DeviceRefused:
        """The error for a capability the BMC does not list."""
        return DeviceRefused(
            f"Redfish BMC {self.device} does not offer {thing}; its {what}: {', '.join(sorted(offered)) or 'none'}",
            fix="use another power path or boot method for this host in the inventory",
        )


def _last_segment(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1]
