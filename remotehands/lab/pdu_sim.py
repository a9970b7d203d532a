"""Simulated switched PDUs for the lab: pysnmp's agent (command responder) serving a model's outlet tables.

Each simulated PDU is one pysnmp engine bound to its own UDP port on 127.0.0.1; every engine of a
``PduLab`` runs on one asyncio loop in one thread. A PDU answers, for its model (``remotehands.bmc.
pdu_models``): sysDescr, sysObjectID, sysName, the outlet count, and per outlet the state, the name, the
command column and the cycle off-period. It accepts its v2c community and, when configured, one SNMPv3
USM user (HMAC-SHA-96 authentication, AES-128 privacy). A wrong community is dropped silently, as real
agents do; a wrong v3 key gets the USM report the protocol prescribes.

SET on a command column executes what it receives, every time: on, off, or reboot (off now, on after
``cycle_delay`` seconds; a newer command cancels a pending one). It does not recognise retransmissions --
making a lost answer harmless is the driver's job. Each executed command appends one line to the lab's
``CommandLog``: ``{"ts", "bmc": <PDU name>, "command": "outlet_on"|"outlet_off"|"outlet_reboot",
"outlet": n, "unit": u, "row": r}``. Reads are not logged.

``packet_loss`` drops that fraction of datagrams, independently in each direction (a request that never
arrives, and an answer that is lost after the command ran), from a generator seeded by ``seed``.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import ipaddress
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pysnmp.carrier.asyncio.dgram import udp  # type: ignore[import-untyped]
from pysnmp.carrier.asyncio.dispatch import AsyncioDispatcher  # type: ignore[import-untyped]
from pysnmp.entity import config  # type: ignore[import-untyped]
from pysnmp.entity.engine import SnmpEngine  # type: ignore[import-untyped]
from pysnmp.entity.rfc3413 import cmdrsp, context  # type: ignore[import-untyped]
from pysnmp.proto import rfc1902, rfc1905  # type: ignore[import-untyped]
from pysnmp.smi import error as smi_error  # type: ignore[import-untyped]

from remotehands.bmc.base import PowerAction, PowerState
from remotehands.bmc.pdu_models import SYS_DESCR, SYS_NAME, SYS_OBJECT_ID, PduModel, fill, model_named
from remotehands.lab.bmc_sim import CommandLog

log = logging.getLogger(__name__)

COMMAND_NAMES = {
    PowerAction.ON: "outlet_on",
    PowerAction.OFF: "outlet_off",
    PowerAction.CYCLE: "outlet_reboot",
}

Oid = tuple[int, ...]


@dataclass(frozen=True)
class PduSpec:
    """One simulated PDU. ``unit`` is the rPDU2 module or the Raritan pduId of its outlets.

    ``rows_before`` (rPDU2 only) puts that many rows of another PDU of a daisy chain before this PDU's
    rows, so that a driver assuming "row = outlet number" switches the wrong outlet.
    """

    name: str
    model: str
    outlets: int
    outlet_names: Mapping[int, str] = field(default_factory=dict)
    community: str = "private"
    v3_user: str | None = None
    v3_auth_key: str | None = None
    v3_priv_key: str | None = None
    packet_loss: float = 0.0
    seed: int = 0
    unit: int = 1
    rows_before: int = 0
    sys_object_id: str | None = None  # answer this instead of the model's, e.g. to play an unknown model
    powered_on: bool = True
    address: str = "127.0.0.1"
    port: int = 0


@dataclass
class _Outlet:
    unit: int
    number: int
    row: int
    name: str
    on: bool
    generation: int = 0
    timer: asyncio.TimerHandle | None = None


class SimulatedPdu:
    """One PDU's outlets and the MIB view over them, served on the lab's loop thread; a lock guards the state."""

    def __init__(self, spec: PduSpec, command_log: CommandLog, cycle_delay: float) -> None:
        self.spec = spec
        self.model: PduModel = model_named(spec.model)
        self.command_log = command_log
        self.cycle_delay = cycle_delay
        self._lock = threading.Lock()
        self._outlets: dict[int, _Outlet] = {}  # by row
        self._getters: dict[Oid, Callable[[], Any]] = {}
        self._setters: dict[Oid, tuple[_Outlet, dict[int, PowerAction]]] = {}
        self._oids: list[Oid] = []
        self._lost_requests = self._lost_answers = 0
        self._drop_answer = False
        self._build()

    # -- what tests and the lab read ----------------------------------------------------------------------

    def is_on(self, outlet: int) -> bool:
        """The present state of ``outlet`` of this PDU's own unit."""
        with self._lock:
            return self._own(outlet).on

    def outlet_name(self, outlet: int) -> str:
        with self._lock:
            return self._own(outlet).name

    def lose_next_commands(self, *, requests: int = 0, answers: int = 0) -> None:
        """Make the next ``requests`` SETs vanish unexecuted, then lose the answers of ``answers`` more.

        A precise form of packet loss for tests of what a driver does when a command is not answered.
        """
        with self._lock:
            self._lost_requests, self._lost_answers = requests, answers

    def take_dropped_answer(self) -> bool:
        """True (once) when the answer about to be sent belongs to a command marked lost."""
        with self._lock:
            dropped, self._drop_answer = self._drop_answer, False
            return dropped

    # -- MIB view -----------------------------------------------------------------------------------------

    def _build(self) -> None:
        spec, model = self.spec, self.model
        other_unit = spec.unit - 1 if spec.unit > 1 else spec.unit + 1
        rows = [(other_unit, n, f"other-{n}") for n in range(1, spec.rows_before + 1)]
        rows += [(spec.unit, n, spec.outlet_names.get(n, f"Outlet {n}")) for n in range(1, spec.outlets + 1)]
        self._add(SYS_DESCR, lambda: rfc1902.OctetString(model.sys_descr))
        sys_object_id = rfc1902.ObjectIdentifier(spec.sys_object_id or model.sys_object_ids[0])
        self._add(SYS_OBJECT_ID, _constant(sys_object_id))
        self._add(SYS_NAME, lambda: rfc1902.OctetString(spec.name))
        self._add(fill(model.count_oid, outlet=0, unit=spec.unit), lambda: rfc1902.Integer32(len(rows)))
        delay = _constant(rfc1902.Integer32(int(self.cycle_delay)))  # the MIBs speak whole seconds
        command_values = {value: action for action, value in model.command_values.items()}
        for row, (unit, number, name) in enumerate(rows, start=1):
            outlet = _Outlet(unit, number, row, name, spec.powered_on)
            self._outlets[row] = outlet
            index = {"outlet": number, "unit": unit, "row": row}
            self._add(fill(model.state_oid, **index), self._state_getter(outlet))
            self._add(fill(model.name_oid, **index), self._name_getter(outlet))
            if model.command_oid != model.state_oid:
                self._add(fill(model.command_oid, **index), self._command_getter(outlet))
            self._setters[_oid(fill(model.command_oid, **index))] = (outlet, command_values)
            for template in model.cycle_delay_oids:
                self._add(fill(template, **index), delay)
            if model.row_lookup is not None:
                self._add(f"{model.row_lookup.module_column}.{row}", _constant(rfc1902.Integer32(unit)))
                self._add(f"{model.row_lookup.number_column}.{row}", _constant(rfc1902.Integer32(number)))
        self._oids = sorted(self._getters)

    def _add(self, oid: str, getter: Callable[[], Any]) -> None:
        self._getters.setdefault(_oid(oid), getter)

    @staticmethod
    def _name_getter(outlet: _Outlet) -> Callable[[], Any]:
        return lambda: rfc1902.OctetString(outlet.name)

    def _state_getter(self, outlet: _Outlet) -> Callable[[], Any]:
        on_value = self.model.state_value(PowerState.ON)
        off_value = self.model.state_value(PowerState.OFF)
        return lambda: rfc1902.Integer32(on_value if outlet.on else off_value)

    def _command_getter(self, outlet: _Outlet) -> Callable[[], Any]:
        # The APC command columns read back the state as immediateOn/immediateOff; Raritan's as on/off.
        on_value = self.model.command_values[PowerAction.ON]
        off_value = self.model.command_values[PowerAction.OFF]
        return lambda: rfc1902.Integer32(on_value if outlet.on else off_value)

    def _own(self, number: int) -> _Outlet:
        for outlet in self._outlets.values():
            if outlet.unit == self.spec.unit and outlet.number == number:
                return outlet
        raise KeyError(f"{self.spec.name} has no outlet {number}")

    # -- pysnmp instrumentation entry points (called on the loop thread) ------------------------------------

    def read_variables(self, *var_binds: Any, **_context: Any) -> list[tuple[Any, Any]]:
        out = []
        with self._lock:
            for name, _ in var_binds:
                getter = self._getters.get(tuple(name))
                out.append((name, getter() if getter else rfc1905.noSuchObject))
        return out

    def read_next_variables(self, *var_binds: Any, **_context: Any) -> list[tuple[Any, Any]]:
        out = []
        with self._lock:
            for name, _ in var_binds:
                at = bisect.bisect_right(self._oids, tuple(name))
                if at < len(self._oids):
                    oid = self._oids[at]
                    out.append((rfc1902.ObjectName(oid), self._getters[oid]()))
                else:
                    out.append((name, rfc1905.endOfMibView))
        return out

    def write_variables(self, *var_binds: Any, **_context: Any) -> list[tuple[Any, Any]]:
        plan: list[tuple[_Outlet, PowerAction]] = []
        for idx, (name, value) in enumerate(var_binds):
            target = self._setters.get(tuple(name))
            if target is None:
                raise smi_error.NotWritableError(name=name, idx=idx)
            outlet, actions = target
            try:
                action = actions[int(value)]
            except (KeyError, ValueError, TypeError):
                raise smi_error.WrongValueError(name=name, idx=idx) from None
            plan.append((outlet, action))
        with self._lock:
            if self._lost_requests:
                self._lost_requests -= 1
                self._drop_answer = True
                return list(var_binds)
            if self._lost_answers:
                self._lost_answers -= 1
                self._drop_answer = True
            for outlet, action in plan:
                self._execute(outlet, action)
        return list(var_binds)

    def _execute(self, outlet: _Outlet, action: PowerAction) -> None:
        outlet.generation += 1
        if outlet.timer is not None:
            outlet.timer.cancel()
            outlet.timer = None
        outlet.on = action is PowerAction.ON
        if action is PowerAction.CYCLE:
            generation = outlet.generation
            outlet.timer = asyncio.get_running_loop().call_later(
                self.cycle_delay, self._finish_cycle, outlet, generation
            )
        self.command_log.write(
            self.spec.name, COMMAND_NAMES[action], outlet=outlet.number, unit=outlet.unit, row=outlet.row
        )

    def _finish_cycle(self, outlet: _Outlet, generation: int) -> None:
        with self._lock:
            if outlet.generation == generation:
                outlet.on = True
                outlet.timer = None

    def cancel_timers(self) -> None:
        with self._lock:
            for outlet in self._outlets.values():
                if outlet.timer is not None:
                    outlet.timer.cancel()
                    outlet.timer = None


class _LossyUdpTransport(udp.UdpAsyncioTransport):  # type: ignore[misc]
    """The agent's UDP transport, dropping a seeded fraction of datagrams in each direction."""

    def __init__(self, pdu: SimulatedPdu, loss: float, seed: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pdu = pdu
        self._loss = loss
        self._rng = random.Random(seed)

    def _drop(self) -> bool:
        return self._loss > 0 and self._rng.random() < self._loss

    def datagram_received(self, datagram: bytes, address: Any) -> None:
        if not self._drop():
            super().datagram_received(datagram, address)

    def send_message(self, outgoing: bytes, address: Any) -> None:
        if not self._pdu.take_dropped_answer() and not self._drop():
            super().send_message(outgoing, address)


class PduLab:
    """The running simulated PDUs of one process. ``port_of(name)`` says where each one listens."""

    def __init__(self, loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
        self._loop = loop
        self._thread = thread
        self._pdus: dict[str, SimulatedPdu] = {}
        self._ports: dict[str, int] = {}
        self._engines: list[SnmpEngine] = []

    def port_of(self, name: str) -> int:
        """The UDP port PDU ``name`` listens on (at its spec's address)."""
        return self._ports[name]

    def pdu(self, name: str) -> SimulatedPdu:
        """The simulated PDU called ``name``, to look at its outlets."""
        return self._pdus[name]

    def stop(self) -> None:
        """Close every agent's socket and stop the loop thread; idempotent."""
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _close(self) -> None:
        for pdu in self._pdus.values():
            pdu.cancel_timers()
        for engine in self._engines:
            if engine.transport_dispatcher is not None:
                engine.transport_dispatcher.close_dispatcher()

    async def _start(self, spec: PduSpec, command_log: CommandLog, cycle_delay: float) -> None:
        if spec.name in self._pdus:
            raise ValueError(f"two simulated PDUs are called {spec.name}")
        if not ipaddress.ip_address(spec.address).is_loopback:
            raise ValueError(f"simulated PDUs listen on loopback addresses only, not {spec.address}")
        pdu = SimulatedPdu(spec, command_log, cycle_delay)
        engine_id = b"\x80\x00\x4f\xb8\x05" + hashlib.sha256(spec.name.encode()).digest()[:8]
        engine = SnmpEngine(snmpEngineID=rfc1902.OctetString(engine_id))
        engine.register_transport_dispatcher(AsyncioDispatcher(loop=self._loop))
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((spec.address, spec.port))
        transport = _LossyUdpTransport(pdu, spec.packet_loss, spec.seed, loop=self._loop)
        config.add_transport(engine, udp.DOMAIN_NAME, transport.open_server_mode(sock=sock))
        config.add_v1_system(engine, "lab-community", spec.community)
        if spec.v3_user:
            config.add_v3_user(
                engine,
                spec.v3_user,
                config.USM_AUTH_HMAC96_SHA,
                spec.v3_auth_key,
                config.USM_PRIV_CFB128_AES,
                spec.v3_priv_key,
            )
        snmp_context = context.SnmpContext(engine)
        snmp_context.unregister_context_name(b"")
        snmp_context.register_context_name(b"", pdu)
        for responder in (
            cmdrsp.GetCommandResponder,
            cmdrsp.NextCommandResponder,
            cmdrsp.BulkCommandResponder,
            cmdrsp.SetCommandResponder,
        ):
            responder(engine, snmp_context)
        self._pdus[spec.name] = pdu
        self._ports[spec.name] = sock.getsockname()[1]
        self._engines.append(engine)


def serve_pdus(pdus: list[PduSpec], command_log: CommandLog, *, cycle_delay: float) -> PduLab:
    """Start ``pdus`` on one loop thread and return once every one of them listens.

    Raises ``ValueError`` for a non-loopback address or two PDUs with one name, ``DeviceRefused`` for a
    model the table does not know, and ``OSError`` when a port cannot be bound.
    """
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        loop.run_forever()

    thread = threading.Thread(target=run, name="pdu-sim", daemon=True)
    thread.start()
    ready.wait(timeout=10)
    lab = PduLab(loop, thread)
    try:
        for spec in pdus:
            asyncio.run_coroutine_threadsafe(lab._start(spec, command_log, cycle_delay), loop).result(
                timeout=10
            )
        # let every transport finish binding before anyone sends to it
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(timeout=10)
    except BaseException:
        lab.stop()
        raise
    return lab


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value


def _oid(text: str) -> Oid:
    return tuple(int(part) for part in text.strip(".").split("."))


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until true or ``timeout``; a helper for tests and the lab's readiness checks."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
