"""Sessions shared by the drivers of systems behind one Redfish service, for bulk work.

A Redfish service can serve many systems: an enclosure or chassis manager, a multi-node server, the lab's
simulator. A driver per system that logs in, reads and logs out pays a TLS handshake, a login and a logout
for every system (about 6 ms of client CPU); a ``RedfishSessionPool`` gives all drivers of one service one
logged-in ``RedfishConnection`` (one session, up to ``max_connections`` kept-alive TCP connections), so a
status read is one GET. Connections are keyed by scheme, address, port, user, a digest of the password and
the TLS settings: a driver with other credentials never rides on someone else's session.

    with RedfishSessionPool() as pool:
        drivers = [RedfishBmc(addr, port, user, pw, system_id=name, sessions=pool) for name in names]
        ...  # from up to max_connections threads; a driver's close() leaves the shared session open

``close()`` logs every session out.
"""

from __future__ import annotations

import hashlib
import threading

from remotehands.bmc.redfish_connection import RedfishConnection

_Key = tuple[str, str, int, str, str, str | None, bool, float]


class RedfishSessionPool:
    """One shared ``RedfishConnection`` per Redfish service and credentials. Thread-safe."""

    def __init__(self, *, max_connections: int = 16) -> None:
        self.max_connections = max_connections
        self._lock = threading.Lock()
        self._connections: dict[_Key, RedfishConnection] = {}

    def connection(
        self,
        address: str,
        port: int,
        username: str,
        password: str,
        *,
        tls_ca: str | None = None,
        tls_insecure: bool = False,
        scheme: str = "https",
        timeout: float = 5.0,
    ) -> RedfishConnection:
        """The connection for this service and credentials, made (without I/O) on first request."""
        digest = hashlib.sha256(password.encode()).hexdigest()
        key: _Key = (scheme, address, port, username, digest, tls_ca, tls_insecure, timeout)
        with self._lock:
            found = self._connections.get(key)
            if found is None:
                found = RedfishConnection(
                    address,
                    port,
                    username,
                    password,
                    tls_ca=tls_ca,
                    tls_insecure=tls_insecure,
                    scheme=scheme,
                    timeout=timeout,
                    connections=self.max_connections,
                )
                self._connections[key] = found
            return found

    def close(self) -> None:
        """Log out of every session (best effort) and forget the connections; safe to call twice."""
        with self._lock:
            connections, self._connections = list(self._connections.values()), {}
        for connection in connections:
            connection.close()

    def __enter__(self) -> RedfishSessionPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
