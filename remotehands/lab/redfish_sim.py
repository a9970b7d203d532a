"""The lab's Redfish service: N simulated systems behind one HTTPS port on 127.0.0.1, in one process.

``serve_redfish(hosts, command_log, ca_dir, cycle_delay=...)`` issues a lab CA (``ca_dir/ca.pem``, for
clients to pin), starts the service in a background thread and returns a ``RedfishLab``. System ids (and
their managers' ids) are the host names. One service root means one session service for all systems
(``remotehands.lab.redfish_sim_sessions``). Every request, except the service root and the login, needs a
valid session token or HTTP Basic credentials, or is answered 401.

Resources: ``Systems/{id}`` (GET, PATCH of ``Boot``), its ``Actions/ComputerSystem.Reset``,
``Managers/{id}/VirtualMedia/{USB1,CD}`` (GET, PATCH, and ``InsertMedia``/``EjectMedia`` on the CD). Power
semantics and quirks are in ``remotehands.lab.redfish_sim_system``. With ``pdus``, also rack PDUs and their
switched outlets under ``PowerEquipment`` (``remotehands.lab.redfish_sim_pdu``).

Every action, PATCH, session call and System GET is a line of the lab's command log, e.g.
``{"bmc": "esx-01", "command": "cycle", "via": "redfish", "reset_type": "PowerCycle", "status": 204}``
(``via`` tells them from the IPMI BMCs' lines of the same host in a shared log); ``status`` is the
HTTP status answered, so a refused command shows as such. Session lines carry ``bmc`` = the service name
(``redfish`` unless told) as a session belongs to no system; system lines carry ``auth`` = the session id,
or ``basic``. HTTPS and keep-alive are ``remotehands.lab.redfish_sim_http``'s part.
"""

from __future__ import annotations

import logging
import secrets
import ssl
import threading
from email.message import Message
from pathlib import Path
from typing import Any

from remotehands.lab.bmc_sim import CommandLog
from remotehands.lab.lab_ca import issue_lab_tls
from remotehands.lab.redfish_sim_http import Answer, TlsJsonServer
from remotehands.lab.redfish_sim_pdu import PduOptions, PowerEquipment, SimulatedPdu, make_pdus
from remotehands.lab.redfish_sim_sessions import SESSIONS, SessionService
from remotehands.lab.redfish_sim_system import (
    COMMAND_FOR_RESET,
    RedfishFault,
    SimulatedSystem,
    SystemOptions,
    base_fault,
)

log = logging.getLogger(__name__)

ADDRESS = "127.0.0.1"
ROOT = "/redfish/v1"


class RedfishLab:
    """A running Redfish service of the lab. ``port``, ``ca_file``, ``username``/``password``, ``stop()``.

    ``systems`` maps each host name to its ``SimulatedSystem`` (tests switch quirks with
    ``lab.systems[name].configure(...)``), ``pdus`` each PDU id to its ``SimulatedPdu``;
    ``drop_sessions()`` forgets every session token, as a BMC that restarted or expired them would.
    """

    def __init__(
        self,
        systems: dict[str, SimulatedSystem],
        command_log: CommandLog,
        tls: ssl.SSLContext,
        ca_file: Path,
        *,
        username: str,
        password: str,
        port: int = 0,
        service_name: str = "redfish",
        pdus: dict[str, SimulatedPdu] | None = None,
    ) -> None:
        self.systems = systems
        self.pdus = pdus or {}
        self.command_log = command_log
        self.ca_file = ca_file
        self.username = username
        self.password = password
        self.service_name = service_name
        self._sessions = SessionService(username, password, self._log, service_name)
        self._power_equipment = PowerEquipment(self.pdus, self._log)
        self._server = TlsJsonServer((ADDRESS, port), self, tls)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="redfish-sim", daemon=True
        )

    def start(self) -> RedfishLab:
        """Start answering (in a daemon thread); returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and close every open connection. Safe to call twice."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(5.0)
        self._server.server_close()
        self._server.close_connections()

    def drop_sessions(self) -> None:
        """Forget every session token: the next request with one is answered 401."""
        self._sessions.drop()

    @property
    def base_url(self) -> str:
        """``https://127.0.0.1:<port>``."""
        return f"https://{ADDRESS}:{self.port}"

    def _log(self, bmc: str, command: str, **extra: object) -> None:
        # via: the lab's IPMI BMCs log the same host names and command names to the same file
        self.command_log.write(bmc, command, via="redfish", **extra)

    # -- request handling ----------------------------------------------------------------------------------

    def answer(self, method: str, path: str, headers: Message, body: dict[str, Any] | None) -> Answer:
        """Route one request; every fault becomes its Redfish error answer."""
        parts = [p for p in path.split("?", 1)[0].split("/") if p]
        try:
            if parts[:2] != ["redfish", "v1"]:
                if parts == ["redfish"] and method == "GET":
                    return 200, {"v1": f"{ROOT}/"}, {}
                raise base_fault(
                    404, "ResourceMissingAtURI", f"The resource at the URI {path} was not found."
                )
            parts = parts[2:]
            if not parts and method == "GET":
                return 200, self._root(), {}
            if parts == ["SessionService", "Sessions"] and method == "POST":
                return self._sessions.login(body or {})
            auth = self._authenticate(headers, parts)
            return self._route(method, parts, body or {}, auth)
        except RedfishFault as fault:
            extra = {"WWW-Authenticate": 'Basic realm="redfish"'} if fault.status == 401 else {}
            return fault.status, fault.body(), extra

    def _root(self) -> dict[str, Any]:
        root = {
            "@odata.id": f"{ROOT}/",
            "@odata.type": "#ServiceRoot.v1_15_0.ServiceRoot",
            "Id": "RootService",
            "Name": "remotehands lab Redfish service",
            "RedfishVersion": "1.15.0",
            "Systems": {"@odata.id": f"{ROOT}/Systems"},
            "Managers": {"@odata.id": f"{ROOT}/Managers"},
            "SessionService": {"@odata.id": f"{ROOT}/SessionService"},
            "Links": {"Sessions": {"@odata.id": SESSIONS}},
        }
        if self.pdus:
            root["PowerEquipment"] = {"@odata.id": f"{ROOT}/PowerEquipment"}
        return root

    def _authenticate(self, headers: Message, parts: list[str]) -> str:
        """The session id (or ``basic``) the request is made under; raises a 401 fault otherwise."""
        auth = self._sessions.who(headers)
        if auth is not None:
            return auth
        bmc = parts[1] if len(parts) > 1 and parts[1] in self.systems else self.service_name
        self._log(bmc, "unauthorized", path="/".join(parts), status=401)
        raise base_fault(
            401, "NoValidSession", "There is no valid session established with the implementation."
        )

    def _route(self, method: str, parts: list[str], body: dict[str, Any], auth: str) -> Answer:
        head = parts[0]
        if head == "SessionService":
            return self._sessions.answer(method, parts, auth)
        if head == "PowerEquipment" and self.pdus:
            return self._power_equipment.answer(method, parts[1:], body, auth)
        if head in ("Systems", "Managers") and len(parts) == 1:
            _only(method, "GET")
            members = [{"@odata.id": f"{ROOT}/{head}/{name}"} for name in self.systems]
            return (
                200,
                {"@odata.id": f"{ROOT}/{head}", "Members@odata.count": len(members), "Members": members},
                {},
            )
        system = self.systems.get(parts[1]) if len(parts) > 1 and head in ("Systems", "Managers") else None
        if system is None:
            raise base_fault(
                404, "ResourceMissingAtURI", f"The resource at the URI {'/'.join(parts)} was not found."
            )
        rest = parts[2:]
        if head == "Systems":
            return self._system(system, method, rest, body, auth)
        return self._manager(system, method, rest, body, auth)

    def _system(
        self, system: SimulatedSystem, method: str, rest: list[str], body: dict[str, Any], auth: str
    ) -> Answer:
        if not rest:
            _only(method, "GET", "PATCH")
            if method == "GET":
                payload = system.payload()
                self._log(system.id, "get_system", power_state=payload["PowerState"], auth=auth)
                return 200, payload, {}
            try:
                changes = system.patch(body)
            except RedfishFault as fault:
                self._log(system.id, "boot_override", status=fault.status, error=fault.message_id, auth=auth)
                raise
            self._log(system.id, "boot_override", status=204, auth=auth, **changes)
            return 204, None, {}
        if rest == ["Actions", "ComputerSystem.Reset"]:
            _only(method, "POST")
            reset_type = str(body.get("ResetType"))
            command = COMMAND_FOR_RESET.get(reset_type, "reset")
            try:
                system.reset(reset_type)
            except RedfishFault as fault:
                self._log(
                    system.id,
                    command,
                    reset_type=reset_type,
                    status=fault.status,
                    error=fault.message_id,
                    auth=auth,
                )
                raise
            self._log(system.id, command, reset_type=reset_type, status=204, auth=auth)
            return 204, None, {}
        raise base_fault(
            404,
            "ResourceMissingAtURI",
            f"The resource at the URI {system.uri}/{'/'.join(rest)} was not found.",
        )

    def _manager(
        self, system: SimulatedSystem, method: str, rest: list[str], body: dict[str, Any], auth: str
    ) -> Answer:
        if not rest:
            _only(method, "GET")
            return 200, system.manager_payload(), {}
        if rest == ["VirtualMedia"]:
            _only(method, "GET")
            return 200, system.vmedia_collection_payload(), {}
        if len(rest) < 2 or rest[0] != "VirtualMedia" or rest[1] not in ("CD", "USB1"):
            raise base_fault(
                404, "ResourceMissingAtURI", f"The resource at the URI {'/'.join(rest)} was not found."
            )
        member, action = rest[1], rest[2:]
        if not action:
            _only(method, "GET", "PATCH")
            if method == "GET":
                return 200, system.vmedia_payload(member), {}
            return self._vmedia_patch(system, member, body, auth)
        offered = member == "CD" and system.options.vmedia_actions
        if not offered or len(action) != 2 or action[0] != "Actions":
            raise base_fault(
                404, "ResourceMissingAtURI", f"There is no action {'/'.join(action)} on {member}."
            )
        _only(method, "POST")
        if action[1] == "VirtualMedia.InsertMedia":
            self._logged(
                system,
                "vmedia_insert",
                auth,
                lambda: system.insert(body.get("Image")),
                image=body.get("Image"),
            )
        elif action[1] == "VirtualMedia.EjectMedia":
            self._logged(system, "vmedia_eject", auth, system.eject)
        else:
            raise base_fault(404, "ResourceMissingAtURI", f"There is no action {action[1]}.")
        return 204, None, {}

    def _vmedia_patch(self, system: SimulatedSystem, member: str, body: dict[str, Any], auth: str) -> Answer:
        if member != "CD" or set(body) - {"Image", "Inserted", "WriteProtected"}:
            raise base_fault(
                400,
                "PropertyNotWritable",
                f"Only Image and Inserted of the CD can be written, not {sorted(body)}.",
            )
        if body.get("Inserted") is False or ("Image" in body and body["Image"] in (None, "")):
            self._logged(system, "vmedia_eject", auth, system.eject, patch=True)
        else:
            self._logged(
                system,
                "vmedia_insert",
                auth,
                lambda: system.insert(body.get("Image")),
                image=body.get("Image"),
                patch=True,
            )
        return 204, None, {}

    def _logged(self, system: SimulatedSystem, command: str, auth: str, act: Any, **extra: object) -> None:
        try:
            act()
        except RedfishFault as fault:
            self._log(system.id, command, status=fault.status, error=fault.message_id, auth=auth, **extra)
            raise
        self._log(system.id, command, status=204, auth=auth, **extra)


def _only(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise base_fault(
            405, "OperationNotAllowed", f"{method} is not allowed here; use {', '.join(allowed)}."
        )


def serve_redfish(
    hosts: list[str],
    command_log: CommandLog,
    ca_dir: Path,
    *,
    cycle_delay: float,
    port: int = 0,
    username: str = "admin",
    password: str | None = None,
    options: dict[str, SystemOptions] | None = None,
    powered_on: bool = True,
    pdus: dict[str, list[str]] | None = None,
    pdu_options: dict[str, PduOptions] | None = None,
) -> RedfishLab:
    """Start the lab's Redfish service for ``hosts`` (system ids = host names) on 127.0.0.1:``port`` (0: free).

    Writes a new lab CA to ``ca_dir/ca.pem`` (``RedfishLab.ca_file``) and the server's key and certificate
    beside it. ``password`` defaults to a random one (``RedfishLab.password``). ``options`` sets quirks per
    host. ``pdus`` maps a rack PDU id to the names of its outlets (outlet 1 first; all on, power cycles
    taking ``cycle_delay``), ``pdu_options`` sets what a PDU offers. Raises ``OSError`` when the port
    cannot be bound or ``ca_dir`` written, ``ValueError`` for a duplicate host name.
    """
    if len(set(hosts)) != len(hosts):
        raise ValueError("host names must be unique: they are the Redfish system ids")
    tls_files = issue_lab_tls(ca_dir)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_files.cert_file, tls_files.key_file)
    systems = {
        name: SimulatedSystem(
            name, cycle_delay=cycle_delay, powered_on=powered_on, options=(options or {}).get(name)
        )
        for name in hosts
    }
    lab = RedfishLab(
        systems,
        command_log,
        context,
        tls_files.ca_file,
        username=username,
        password=password or secrets.token_urlsafe(12),
        port=port,
        pdus=make_pdus(pdus or {}, cycle_delay=cycle_delay, options=pdu_options),
    )
    return lab.start()
