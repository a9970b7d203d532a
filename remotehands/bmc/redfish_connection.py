"""One logged-in HTTPS connection to one Redfish service, on DMTF's ``redfish`` library.

The library does the HTTP (its ``requests`` session keeps connections alive), holds the session token and
logs out. Added here:

- **TLS** as ``remotehands.bmc.redfish_tls`` decides (verified unless ``tls_insecure``); the insecure or
  plain-HTTP case is logged as a warning once per connection.
- **Sessions.** Login POSTs to the service's ``Links.Sessions`` and keeps the ``X-Auth-Token``; a 401
  later logs in again once and repeats the request. A service without a session service (sushy-tools'
  emulator, static mockups) is spoken to with HTTP Basic.
- **Errors**, translated where they enter: ``DeviceUnreachable`` (retryable) for no answer, timeouts and
  busy (5xx) answers; ``DeviceRefused`` for refused credentials, a certificate that does not verify and a
  service that is not Redfish. Messages name ``address:port`` and never the password (it is also
  registered with the redactor).
- **Speed.** A status read must cost well under 1 ms of client CPU. Through the library it costs about
  0.6 ms (0.35 of it is ``requests`` preparing the request; before ``trust_env`` was switched off, looking
  up proxies and ``.netrc`` in the environment cost 0.4 ms more). So GETs go straight to the urllib3 pool
  of the library's own transport adapter: the same kept-alive TLS connections and context, the session
  token the library holds, the headers it would send; about 0.25 ms. Everything that changes state, logs
  in or out goes through the library.

Thread-safe: drivers of several systems behind one service may share a connection (``RedfishSessionPool``);
requests run in parallel over up to ``connections`` TCP connections, logins are serialised.
"""

from __future__ import annotations

import base64
import logging
import ssl
import threading
from dataclasses import dataclass
from typing import Any

import urllib3
from urllib3 import HTTPConnectionPool

from remotehands import redaction
from remotehands.bmc.redfish_errors import BUSY_FIX, BUSY_STATUSES, Endpoint, credentials_refused, translate
from remotehands.bmc.redfish_models import ErrorBody, Link, Message, ServiceRoot
from remotehands.bmc.redfish_tls import TlsPolicy, verifying_context
from remotehands.errors import DeviceRefused, DeviceUnreachable, InternalError, RemoteHandsError

log = logging.getLogger(__name__)

STANDARD_SESSIONS_URI = "/redfish/v1/SessionService/Sessions"


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, body, the Redfish messages of an error body, and the headers asked for."""

    status: int
    body: bytes
    messages: tuple[Message, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name), None)

    def describe(self) -> str:
        """``HTTP 409 Base.1.16.X: text`` for messages and logs."""
        detail = "; ".join(f"{m.message_id}: {m.message}".strip(": ") for m in self.messages if m.message_id)
        return f"HTTP {self.status}" + (f" {detail}" if detail else "")


class RedfishConnection:
    """Requests to one Redfish service under one session. The constructor does no I/O: the first request
    connects, reads the service root and logs in."""

    def __init__(
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
        connections: int = 1,
    ) -> None:
        if scheme not in ("https", "http"):
            raise InternalError(f"Redfish scheme must be https or http, not {scheme!r}")
        self.address = address
        self.port = port
        self.username = username
        self.tls_ca = tls_ca
        self.tls_insecure = tls_insecure and not tls_ca  # a pinned CA wins over a contradictory exception
        self.scheme = scheme
        self.timeout = timeout
        self.connections = connections
        self._password = password
        redaction.register(password)
        self._lock = threading.Lock()  # connecting and logging in
        self._client: Any = None
        self._root: ServiceRoot | None = None
        self._sessions_uri: str | None = None
        self._uses_session = False
        self._generation = 0  # counts logins, so that concurrent 401s renew the session once
        self._warned = False
        self._reads: HTTPConnectionPool | None = None

    @property
    def device(self) -> str:
        """``address:port`` of the BMC, as every message names it."""
        return f"{self.address}:{self.port}"

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.address, self.port, self.scheme, self.timeout, self.tls_ca)

    def root(self) -> ServiceRoot:
        """The service root, read once when connecting."""
        self._connected()
        assert self._root is not None
        return self._root

    def request(self, method: str, path: str, what: str, body: dict[str, Any] | None = None) -> Reply:
        """Send one request and return its answer whatever the status, except 401: then the session is
        renewed once and the request repeated, and a second 401 raises ``DeviceRefused``.

        Raises ``DeviceUnreachable`` when the service does not answer (within ``timeout`` seconds) and
        ``DeviceRefused`` when the TLS certificate does not verify or the credentials are refused.
        """
        client, generation = self._connected()
        send = self._read if method == "GET" else self._send
        reply = send(client, method, path, what, body)
        if reply.status == 401 and self._uses_session:
            log.info("Redfish %s: the session is no longer valid (%s); logging in again", self.device, what)
            with self._lock:
                if self._generation == generation:
                    self._login(client)
            reply = send(client, method, path, what, body)
        if reply.status == 401:
            raise self._credentials_refused(what, reply)
        return reply

    def close(self) -> None:
        """Delete the session (best effort) and close the connections; safe to call twice."""
        with self._lock:
            client, self._client = self._client, None
        if client is None:
            return
        try:
            client.logout()
        except Exception as exc:  # a session left behind expires on the BMC
            log.debug("Redfish %s: logout failed: %s", self.device, type(exc).__name__)

    # -- connecting ----------------------------------------------------------------------------------------

    def _connected(self) -> tuple[Any, int]:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._connect()
                client = self._client
        return client, self._generation

    def _connect(self) -> Any:
        import redfish  # type: ignore[import-untyped]

        adapter = TlsPolicy(self._tls_context(), connections=self.connections)
        try:
            client = redfish.redfish_client(
                base_url=f"{self.scheme}://{self.address}:{self.port}",
                username=self.username,
                password=self._password,
                cafile=self.tls_ca,
                timeout=self.timeout,
                max_retry=0,  # retrying is the job engine's decision, with its back-off
                check_connectivity=False,
                https_adapter=adapter,
            )
            client._session.trust_env = False  # see "Speed" in the module docstring
            client.get_root_object()
        except RemoteHandsError:
            raise
        except Exception as exc:
            raise self._translate("read the service root", exc) from exc
        root_reply = client.root_resp
        if root_reply.status == 200:
            self._root = self._parse_root(root_reply.read)
        else:  # the library lets a root that asks for credentials pass
            self._root = ServiceRoot()
        self._sessions_uri = self._root.sessions_uri() or (
            STANDARD_SESSIONS_URI if root_reply.status == 401 else None
        )
        self._reads = adapter.pool_for(self.scheme, self.address, self.port)
        try:
            self._login(client)
        except RemoteHandsError:
            client.logout()  # no session yet: this only closes the connection
            raise
        return client

    def _parse_root(self, body: bytes) -> ServiceRoot:
        try:
            return ServiceRoot.model_validate_json(body)
        except ValueError as exc:
            raise DeviceRefused(
                f"Redfish BMC {self.device}: /redfish/v1 is not a Redfish service root",
                fix="check power.address, power.port and power.type of this host in the inventory",
            ) from exc

    def _tls_context(self) -> ssl.SSLContext | None:
        if self.scheme == "http" or self.tls_insecure:
            if not self._warned:
                self._warned = True
                log.warning(
                    "Redfish %s: %s; anyone on the network path can read the credentials or impersonate "
                    "this BMC",
                    self.device,
                    "plain HTTP"
                    if self.scheme == "http"
                    else "TLS certificate verification is OFF (tls_insecure)",
                )
            return None
        return verifying_context(self.device, self.tls_ca)

    def _login(self, client: Any) -> None:
        """Open a session (or fall back to Basic); called with ``_lock`` held or before the client is shared.

        The login count goes up once the new credentials are in place: a request that started during the
        login and was refused then repeats itself with them instead of logging in again.
        """
        try:
            self._open_session(client)
        finally:
            self._generation += 1

    def _open_session(self, client: Any) -> None:
        if self._sessions_uri is None:
            self._use_basic(client)
            return
        client.set_session_key(None)
        client.set_authorization_key(None)
        body = {"UserName": self.username, "Password": self._password}
        reply = self._send(
            client, "POST", self._sessions_uri, "log in", body, headers=("X-Auth-Token", "Location")
        )
        token = reply.header("X-Auth-Token")
        if reply.status in {401, 403}:
            raise self._credentials_refused("log in", reply)
        if reply.status in {404, 405, 501} or (reply.ok and not token):
            self._use_basic(client)  # no session service, or one that hands out no token (a static mockup)
            return
        if reply.status in BUSY_STATUSES:
            raise DeviceUnreachable(
                f"Redfish BMC {self.device} is busy and opened no session: {reply.describe()}", fix=BUSY_FIX
            )
        if not reply.ok:
            raise DeviceRefused(
                f"Redfish BMC {self.device} refused to open a session for user {self.username!r}: {reply.describe()}",
                fix="check the account on the BMC (locked, password change required, session limit reached)",
            )
        client.set_session_key(token)
        client.set_session_location(reply.header("Location") or _session_uri(reply.body, self._sessions_uri))
        self._uses_session = True

    def _use_basic(self, client: Any) -> None:
        log.debug("Redfish %s: no session service; using HTTP Basic", self.device)
        credentials = base64.b64encode(f"{self.username}:{self._password}".encode()).decode()
        client.set_session_key(None)
        client.set_authorization_key(f"Basic {credentials}")
        self._uses_session = False

    # -- one request ---------------------------------------------------------------------------------------

    def _send(
        self,
        client: Any,
        method: str,
        path: str,
        what: str,
        body: dict[str, Any] | None,
        *,
        headers: tuple[str, ...] = (),
    ) -> Reply:
        try:
            if method == "POST":
                response = client.post(path, body=body if body is not None else {})
            elif method == "PATCH":
                response = client.patch(path, body=body or {})
            elif method == "DELETE":
                response = client.delete(path)
            else:
                raise InternalError(f"RedfishConnection sends GET, POST, PATCH or DELETE, not {method}")
        except RemoteHandsError:
            raise
        except Exception as exc:
            raise self._translate(what, exc) from exc
        status = int(response.status)
        data: bytes = response.read or b""
        wanted = tuple((name, str(response.getheader(name))) for name in headers if response.getheader(name))
        if 200 <= status < 300:
            return Reply(status, data, headers=wanted)
        return Reply(status, data, tuple(_messages(data)), wanted)

    def _read(self, client: Any, method: str, path: str, what: str, body: dict[str, Any] | None) -> Reply:
        """A GET on the library's connection pool, with the headers the library would send."""
        assert self._reads is not None
        headers = {"Accept": "application/json", "OData-Version": "4.0"}
        token = client.get_session_key()
        if token:
            headers["X-Auth-Token"] = token
        else:
            authorization = client.get_authorization_key()
            if authorization:
                headers["Authorization"] = authorization
        try:
            response = self._reads.urlopen(
                "GET", path, headers=headers, retries=_READ_RETRIES, timeout=self.timeout
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._translate(what, exc) from exc
        status, data = response.status, response.data
        if 200 <= status < 300:
            return Reply(status, data)
        return Reply(status, data, tuple(_messages(data)))

    def _translate(self, what: str, exc: BaseException) -> RemoteHandsError:
        return translate(exc, self.endpoint, what)

    def _credentials_refused(self, what: str, reply: Reply) -> DeviceRefused:
        return credentials_refused(self.endpoint, self.username, what, reply.describe())


# No retries (the job engine retries, with its back-off); redirects within the service are followed.
_READ_RETRIES = urllib3.Retry(
    total=3, connect=0, read=0, status=0, other=0, redirect=3, raise_on_redirect=False
)


def _messages(data: bytes) -> list[Message]:
    if not data:
        return []
    try:
        return ErrorBody.model_validate_json(data).messages()
    except ValueError:
        return []


def _session_uri(body: bytes, sessions_uri: str) -> str:
    """The session's own URI from the login answer's body, for a BMC that sends no Location header."""
    try:
        return Link.model_validate_json(body).uri
    except ValueError:
        return sessions_uri
