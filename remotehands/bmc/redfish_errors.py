"""How failures talking to a Redfish service become remotehands errors (the boundary of the exception tree).

    no TCP answer, refused, reset, timed out   -> DeviceUnreachable (retryable)
    HTTP 5xx (busy)                            -> DeviceUnreachable (retryable)
    certificate does not verify                -> DeviceRefused, naming what it was checked against
    credentials refused (401/403)              -> DeviceRefused
    not a Redfish service (bad root, not JSON) -> DeviceRefused
    anything else                              -> InternalError (a bug to report)

Every message names the BMC as ``address:port`` and says what to do; none holds a password.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import requests
import urllib3

from remotehands.errors import DeviceRefused, DeviceUnreachable, InternalError, RemoteHandsError

BUSY_STATUSES = frozenset({500, 502, 503, 504})
BUSY_FIX = "retry in a minute; a BMC that stays busy may need a reset"


@dataclass(frozen=True)
class Endpoint:
    """What an error message needs to know about the service it is about."""

    address: str
    port: int
    scheme: str
    timeout: float
    tls_ca: str | None

    @property
    def device(self) -> str:
        return f"{self.address}:{self.port}"

    def unreachable_fix(self) -> str:
        return (
            f"check that the BMC is up and answers {self.scheme.upper()} on TCP port {self.port} from this "
            "machine (management network, VLAN, firewall); a BMC that stays silent may need a reset"
        )


def translate(exc: BaseException, endpoint: Endpoint, what: str) -> RemoteHandsError:
    """The remotehands error for an exception of ``redfish``, ``requests`` or ``urllib3`` while doing ``what``."""
    from redfish.rest import v1 as rest  # type: ignore[import-untyped]

    device = endpoint.device
    cause: BaseException = exc
    if isinstance(exc, rest.RetriesExhaustedError) and exc.__cause__ is not None:
        cause = exc.__cause__
    if isinstance(cause, requests.exceptions.SSLError | urllib3.exceptions.SSLError):
        return certificate_refused(endpoint, what, reason(cause))
    if isinstance(cause, requests.exceptions.Timeout | urllib3.exceptions.TimeoutError):
        return DeviceUnreachable(
            f"Redfish BMC {device} did not answer within {endpoint.timeout:g}s ({what})",
            fix=endpoint.unreachable_fix(),
        )
    if isinstance(cause, requests.exceptions.ConnectionError | urllib3.exceptions.HTTPError | OSError):
        return DeviceUnreachable(
            f"Redfish BMC {device}: cannot connect ({what}): {reason(cause)}", fix=endpoint.unreachable_fix()
        )
    if isinstance(exc, rest.ServerDownOrUnreachableError):
        status = int(getattr(getattr(exc, "response", None), "status", 0) or 0)
        if status in BUSY_STATUSES or status == 0:
            return DeviceUnreachable(
                f"Redfish BMC {device} is busy ({what}): HTTP {status or 'without status'}", fix=BUSY_FIX
            )
        return DeviceRefused(
            f"Redfish BMC {device} answered HTTP {status} for the service root /redfish/v1 ({what})",
            fix="check that this address and port serve Redfish (power.address, power.port in the inventory)",
        )
    if isinstance(exc, rest.JsonDecodingError | ValueError):
        return DeviceRefused(
            f"Redfish BMC {device} answered with a body that is not JSON ({what})",
            fix="check that this address and port serve Redfish; the BMC firmware may misbehave",
        )
    return InternalError(f"Redfish BMC {device}: unexpected {type(exc).__name__} ({what}): {exc}")


def certificate_refused(endpoint: Endpoint, what: str, why: str) -> DeviceRefused:
    """The error for a certificate that does not verify: what it was checked against, and what to do."""
    if endpoint.tls_ca:
        trusted = f"the pinned CA bundle tls_ca={endpoint.tls_ca}"
        fix = (
            f"check that {endpoint.tls_ca} holds the CA that issued this BMC's certificate and that the "
            f"certificate names {endpoint.address}"
        )
    else:
        trusted = "the system CA store"
        fix = (
            "pin the CA that issued this BMC's certificate with tls_ca (power.tls_ca in the inventory); "
            "only for a lab, set power.tls_insecure: true"
        )
    return DeviceRefused(
        f"Redfish BMC {endpoint.device}: the TLS certificate does not verify against {trusted} ({what}): {why}",
        fix=fix,
    )


def credentials_refused(endpoint: Endpoint, username: str, what: str, answer: str) -> DeviceRefused:
    """The error for refused credentials; names the user, never the password."""
    return DeviceRefused(
        f"Redfish BMC {endpoint.device} refused the credentials of user {username!r} ({what}): {answer}",
        fix="check power.credentials of this host in the inventory (the user name and the secret its password "
        "reference points at) and that the account is enabled on the BMC",
    )


def reason(exc: BaseException) -> str:
    """The innermost useful reason of a requests/urllib3 error, without URLs (long, and saying nothing)."""
    seen: BaseException | None = exc
    for _ in range(12):
        if seen is None:
            break
        if isinstance(seen, ssl.SSLCertVerificationError):
            return str(seen.verify_message or seen.reason or seen)
        if isinstance(seen, ssl.SSLError):
            return str(seen.reason or seen)
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, TimeoutError):
            return "timed out"
        nested = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None
        cause = getattr(seen, "reason", None)
        seen = (
            nested
            or (cause if isinstance(cause, BaseException) else None)
            or seen.__cause__
            or seen.__context__
        )
    return type(exc).__name__
