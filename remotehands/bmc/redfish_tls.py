"""TLS for Redfish: verify by default (system CA store), or against a pinned CA bundle, or explicitly not.

DMTF's ``redfish`` library verifies only when given ``cafile``: without it every request goes out with
``verify=False`` (and importing it silences urllib3's insecure-request warning for the whole process). It
ignores ``capath``, so the system store (a directory on Debian) cannot be named through it, and a
``verify=<path>`` makes ``requests`` reload the CA file for every new TCP connection. So the library is
handed an ``https_adapter`` (a parameter it offers) that carries our decision instead: ``TlsPolicy`` holds
one ``ssl.SSLContext`` (system store, or only the pinned bundle; hostname checked) and applies it to every
request, whatever ``verify=`` the library passed.
"""

from __future__ import annotations

import ssl
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3 import HTTPConnectionPool

from remotehands.errors import DeviceRefused


class TlsPolicy(HTTPAdapter):
    """A transport adapter that applies one TLS decision to every request, whatever ``verify`` says.

    ``context`` None means no verification (``tls_insecure``) or plain HTTP.
    """

    def __init__(self, context: ssl.SSLContext | None, *, connections: int = 1) -> None:
        self._context = context
        super().__init__(pool_connections=1, pool_maxsize=connections)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        if self._context is not None:
            pool_kwargs["ssl_context"] = self._context
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        return super().send(
            request,
            stream=stream,
            timeout=timeout,
            verify=self._context is not None,
            cert=cert,
            proxies=proxies,
        )

    def pool_for(self, scheme: str, host: str, port: int) -> HTTPConnectionPool:
        """The urllib3 pool (kept-alive connections) that ``requests`` uses for this origin, with our TLS."""
        cert_reqs = "CERT_REQUIRED" if self._context is not None else "CERT_NONE"
        return self.poolmanager.connection_from_host(host, port, scheme, pool_kwargs={"cert_reqs": cert_reqs})

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        super().cert_verify(conn, url, verify, cert)
        if self._context is not None:
            # requests would add its own CA bundle to our context: trust only what the context holds.
            conn.ca_certs = None
            conn.ca_cert_dir = None


def verifying_context(device: str, tls_ca: str | None) -> ssl.SSLContext:
    """A client context trusting only ``tls_ca`` when given, else the system CA store; hostnames checked.

    Raises ``DeviceRefused`` when the bundle cannot be read.
    """
    try:
        return ssl.create_default_context(cafile=tls_ca)
    except (OSError, ssl.SSLError) as exc:
        raise DeviceRefused(
            f"Redfish BMC {device}: cannot load the pinned CA bundle tls_ca={tls_ca}: {exc}",
            fix="point power.tls_ca of this host in the inventory at a readable PEM file of the CA that "
            "issued the BMC's certificate",
        ) from exc
