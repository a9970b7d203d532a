"""The wire to NetBox for ``remotehands.network.netbox``: one pynetbox API, built at first use, and every
failure of a call translated into the remotehands error tree where it enters.

The API is built lazily because resolving a ``vault:`` token is network I/O, and constructing a plan does
none. Its requests session carries a default timeout (pynetbox passes none) and the TLS setting: the system
bundle, a ``ca_file``, or off for an inventory that pins ``tls_insecure``.

Errors are mapped in ``NetBoxConnection.translate``. No answer, a timeout, 429/502/503/504:
``DeviceUnreachable``, the tree's retryable "a system we depend on did not answer"
(``TicketSystemUnavailable`` belongs to the ticket outbox). Refused token or certificate, our custom field
missing: ``DeviceRefused`` (answered and refused, retrying cannot help). 409 from ``available-ips``:
``PrefixExhausted``; a duplicate address: ``AddressInUse``; other 400/404: ``InvalidRequest``. Messages
carry NetBox's ``detail`` and the token's reference, never the token.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import pynetbox  # type: ignore[import-untyped]
import requests

from remotehands import secrets
from remotehands.errors import (
    AddressInUse,
    DeviceRefused,
    DeviceUnreachable,
    InvalidRequest,
    PrefixExhausted,
    RemoteHandsError,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRY_STATUSES = (429, 502, 503, 504)


class _TimedSession(requests.Session):
    """A session with a default timeout: pynetbox passes none, and a NetBox that accepts the connection and
    never answers would otherwise hang the job that asked for an address."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        return super().request(method, url, *args, **kwargs)  # type: ignore[arg-type]


class NetBoxConnection:
    """The pynetbox API of the NetBox at ``url`` and the error translation of every call made through it.

    ``token_ref`` is a credential reference, resolved at the first ``api()``; ``verify`` is what requests
    takes (True, a CA bundle path, or False). ``key_field`` names our custom field, for the fix of an error
    that says it is missing. Constructing one does no I/O.
    """

    def __init__(
        self, url: str, token_ref: str, *, verify: bool | str, timeout: float, key_field: str
    ) -> None:
        self.url = url
        self._token_ref = token_ref
        self._verify = verify
        self._timeout = timeout
        self._key_field = key_field
        self._api: Any = None
        self._api_lock = threading.Lock()

    def api(self) -> Any:
        """The pynetbox API, built at first use: resolving ``vault:`` is network I/O. Raises what
        ``secrets.resolve`` raises (``SecretError``) when the token cannot be read."""
        with self._api_lock:
            if self._api is None:
                token = secrets.resolve(self._token_ref, field="NetBox token")
                api = pynetbox.api(self.url, token=token)
                session = _TimedSession(self._timeout)
                session.verify = self._verify
                api.http_session = session
                if self._verify is False:
                    log.warning("netbox: TLS verification of %s is off (tls_insecure)", self.url)
                self._api = api
            return self._api

    def call(self, what: str, call: Callable[[], T]) -> T:
        """Run one NetBox call (``what`` names it in messages); every failure leaves as a
        ``RemoteHandsError``, mapped by ``translate``."""
        try:
            return call()
        except RemoteHandsError:
            raise
        except Exception as exc:
            raise self.translate(exc, what) from exc

    def translate(self, exc: Exception, what: str) -> RemoteHandsError:
        """The remotehands error for ``exc`` raised by pynetbox or requests (see the module docstring)."""
        where = f"NetBox at {self.url}, {what}"
        if isinstance(exc, pynetbox.AllocationError | pynetbox.RequestError):
            status, detail = exc.req.status_code, _detail(exc.req)
            if status == 409:
                return PrefixExhausted(f"{where}: {detail}")
            if status in (401, 403):
                return DeviceRefused(
                    f"{where}: the token was refused ({status} {detail})",
                    fix=f"check that {self._token_ref} holds a valid NetBox API token with permission for "
                    "ipam, dcim sites and tenancy",
                )
            if status in RETRY_STATUSES:
                return DeviceUnreachable(f"{where}: {status} {detail}", fix="try again later")
            if "Duplicate IP address" in detail:
                return AddressInUse(f"{where}: {detail}")
            if "Unknown field name" in detail:
                return DeviceRefused(
                    f"{where}: {detail}",
                    fix=f"create a Text custom field {self._key_field!r} on IPAM > IP address in NetBox",
                )
            if status in (400, 404):
                return InvalidRequest(f"{where}: {status} {detail}")
            return DeviceRefused(f"{where}: {status} {detail}")
        if isinstance(exc, pynetbox.ContentError):
            return DeviceRefused(f"{where}: the answer is not JSON", fix="check the url points at NetBox")
        if isinstance(exc, requests.exceptions.SSLError):
            return DeviceRefused(
                f"{where}: TLS failed: {exc}", fix="give the CA that issued NetBox's certificate as ca_file"
            )
        if isinstance(exc, requests.exceptions.RequestException):
            return DeviceUnreachable(f"{where}: no answer ({type(exc).__name__})", fix="try again later")
        return DeviceRefused(f"{where}: unexpected {type(exc).__name__}: {exc}")


def _detail(response: requests.Response) -> str:
    """NetBox's error text: ``detail``, or the field errors of a 400 (a dict, or a list for a list)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    bodies = body if isinstance(body, list) else [body]
    parts = []
    for item in bodies:
        if not isinstance(item, dict):
            continue
        if "detail" in item:
            parts.append(str(item["detail"]))
            continue
        for field, errors in item.items():
            parts.append(f"{field}: {'; '.join(map(str, errors)) if isinstance(errors, list) else errors}")
    return "; ".join(dict.fromkeys(parts)) or response.reason
