"""A synchronous SNMP client over pysnmp's asyncio API: one background event loop per process, engines
reused per credentials, v2c and v3 (USM auth/priv). Used by the PDU outlet driver."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from pysnmp.carrier.asyncio.dgram import udp  # type: ignore[import-untyped]
from pysnmp.carrier.asyncio.dispatch import AsyncioDispatcher  # type: ignore[import-untyped]
from pysnmp.entity import config  # type: ignore[import-untyped]
from pysnmp.entity.engine import SnmpEngine  # type: ignore[import-untyped]
from pysnmp.entity.rfc3413 import cmdgen  # type: ignore[import-untyped]
from pysnmp.proto import errind  # type: ignore[import-untyped]

log = logging.getLogger(__name__)

AUTH_PROTOCOLS = {
    "MD5": config.USM_AUTH_HMAC96_MD5,
    "SHA": config.USM_AUTH_HMAC96_SHA,
    "SHA256": config.USM_AUTH_HMAC192_SHA256,
    "SHA512": config.USM_AUTH_HMAC384_SHA512,
}
PRIV_PROTOCOLS = {
    "NONE": config.USM_PRIV_NONE,
    "DES": config.USM_PRIV_CBC56_DES,
    "AES": config.USM_PRIV_CFB128_AES,
    "AES256": config.USM_PRIV_CFB256_AES,
}
# Answers that mean "these credentials are not accepted" rather than "nobody there".
AUTH_FAILURES = (
    errind.WrongDigest,
    errind.UnknownUserName,
    errind.DecryptionError,
    errind.AuthenticationFailure,
    errind.AuthenticationError,
    errind.UnsupportedSecurityLevel,
    errind.UnknownSecurityName,
)
ACCESS_DENIED = {"noAccess", "notWritable", "readOnly", "authorizationError", "noCreation"}
_POLL_TICKS = 10  # 0.1 s, pysnmp's timer tick: one reading while watching for a reboot's off-period
_GENERATORS = {
    "get": cmdgen.GetCommandGenerator,
    "set": cmdgen.SetCommandGenerator,
    "next": cmdgen.NextCommandGeneratorSingleRun,
}
Reply = tuple[Any, int, Sequence[tuple[Any, Any]]]  # (errorIndication, errorStatus, var-binds)


@dataclass(frozen=True)
class SnmpTarget:
    """One agent as an engine knows it: reads retried, commands sent once, and quick single polls."""

    engine: Any
    read: str
    write: str
    poll: str


class SnmpClient:
    """pysnmp engines on one asyncio loop in a daemon thread, callable from any thread.

    Every target shares one engine unless two SNMPv3 credential sets use the same user name: pysnmp keys
    its USM users by name, so such a set gets an engine of its own. ``shared()`` is the process-wide
    client (rebuilt after a fork). Methods raise pysnmp's errors; ``SnmpOutlet`` translates them.
    """

    _shared: ClassVar[SnmpClient | None] = None
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="snmp-client", daemon=True).start()
        self._names = itertools.count(1)
        self._engines: list[tuple[Any, dict[str, tuple[str, ...]]]] = []  # engine, v3 user -> credentials
        self._params: dict[tuple[int, tuple[str, ...]], str] = {}

    @classmethod
    def shared(cls) -> SnmpClient:
        """The process's client, created on first use."""
        with cls._shared_lock:
            if cls._shared is None or cls._shared._pid != os.getpid():
                cls._shared = cls()
            return cls._shared

    def run(self, coro: Any, timeout: float) -> Any:
        """Run ``coro`` on the client's loop and return its result (``TimeoutError`` after ``timeout``)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _engine_for(self, credentials: tuple[str, ...]) -> Any:
        user = credentials[1] if credentials[0] == "v3" else None
        for engine, users in self._engines:
            if user is None or users.setdefault(user, credentials) == credentials:
                return engine
        engine = SnmpEngine()
        engine.register_transport_dispatcher(AsyncioDispatcher(loop=self._loop))
        transport = udp.UdpAsyncioTransport(loop=self._loop).open_client_mode()
        config.add_transport(engine, udp.DOMAIN_NAME, transport)
        self._engines.append((engine, {user: credentials} if user else {}))
        return engine

    async def add_target(
        self, credentials: tuple[str, ...], address: tuple[str, int], timeout: float, retries: int
    ) -> SnmpTarget:
        """Register one agent address with its credentials; see ``SnmpTarget``."""
        engine = self._engine_for(credentials)
        params = self._params.get((id(engine), credentials))
        if params is None:
            params = f"s{next(self._names)}"
            if credentials[0] == "v2c":
                config.add_v1_system(engine, params, credentials[1])
                config.add_target_parameters(engine, params, params, "noAuthNoPriv", 1)
            else:
                _, user, auth, auth_key, priv, priv_key = credentials
                config.add_v3_user(
                    engine, user, AUTH_PROTOCOLS[auth], auth_key, PRIV_PROTOCOLS[priv], priv_key
                )
                level = "authNoPriv" if priv == "NONE" else "authPriv"
                config.add_target_parameters(engine, params, user, level, 3)
            self._params[(id(engine), credentials)] = params
        n = next(self._names)
        ticks = max(1, round(timeout * 100))
        for name, wait, tries in ((f"r{n}", ticks, retries), (f"w{n}", ticks, 0), (f"p{n}", _POLL_TICKS, 0)):
            config.add_target_address(engine, name, udp.DOMAIN_NAME, address, params, wait, tries)
        return SnmpTarget(engine, f"r{n}", f"w{n}", f"p{n}")

    async def drop_target(self, target: SnmpTarget) -> None:
        for name in (target.read, target.write, target.poll):
            config.delete_target_address(target.engine, name)

    async def request(
        self, engine: Any, kind: str, target: str, var_binds: Sequence[tuple[Any, Any]]
    ) -> Reply:
        """Send one GET, SET or GETNEXT; returns (errorIndication, errorStatus, var-binds)."""
        generator = _GENERATORS[kind]()
        done: asyncio.Future[Reply] = self._loop.create_future()

        def answered(_e: Any, _h: Any, indication: Any, status: Any, _i: Any, vbs: Any, _c: Any) -> None:
            if not done.done():
                done.set_result((indication, int(status or 0), list(vbs or ())))

        generator.send_varbinds(engine, target, None, "", list(var_binds), answered)
        return await done
