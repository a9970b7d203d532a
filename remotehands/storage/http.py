"""The HTTPS session every array driver uses: TLS verified (the inventory's pinned ``tls_ca``, else the
system store; ``tls_insecure`` only as an explicit per-array exception), timeouts, and the translation of
transport failures and HTTP errors into our errors with the array's own message. Never logs a body or a
header (tokens and passwords travel in them)."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from typing import Any

import httpx

from remotehands import redaction
from remotehands.errors import DeviceRefused, DeviceUnreachable
from remotehands.inventory.models import StorageArray

log = logging.getLogger(__name__)
# httpcore traces every response's headers at DEBUG, a login answer's session token and cookie among them
# (PowerStore's DELL-EMC-TOKEN, Pure's x-auth-token), before a driver can register them for redaction.
logging.getLogger("httpcore").setLevel(logging.INFO)

TIMEOUT_S = 30.0  # a resize on a busy array can take a while to answer

# Extracts the array's error text from a JSON body (each vendor nests it differently); None when absent.
MessageOf = Callable[[Any], str | None]


def tls_verify(array: StorageArray) -> ssl.SSLContext | bool:
    """What httpx verifies the array's certificate against."""
    if array.tls_insecure:
        return False
    if array.tls_ca:
        try:
            return ssl.create_default_context(cafile=array.tls_ca)
        except (OSError, ssl.SSLError) as exc:
            raise DeviceRefused(
                f"array {array.name}: cannot load the pinned CA bundle tls_ca={array.tls_ca}: {exc}",
                fix="point tls_ca of this array in the inventory at a readable PEM file",
            ) from None
    return ssl.create_default_context()


class ArrayHttp:
    """One HTTPS session to ``array``; ``message_of`` finds the vendor's error message in a JSON body."""

    def __init__(self, array: StorageArray, message_of: MessageOf) -> None:
        self.array = array
        self.message_of = message_of
        self.client = httpx.Client(
            base_url=f"https://{array.mgmt_address}:{array.port}",
            verify=tls_verify(array),
            timeout=TIMEOUT_S,
            headers={"Accept": "application/json"},
        )

    def request(self, method: str, path: str, *, ok404: bool = False, **kwargs: Any) -> httpx.Response:
        """Send one request; returns the response when it succeeded (or is a 404 and ``ok404``).

        Raises ``DeviceUnreachable`` (no answer, TLS, 5xx) or ``DeviceRefused`` (401/403, other 4xx)."""
        what = f"{method} {path}"
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            reason = "TLS certificate not trusted" if "CERTIFICATE" in str(exc).upper() else "no answer"
            fix = (
                "pin the array's CA with tls_ca in the inventory"
                if reason.startswith("TLS")
                else "check the array's management address and that it is up; the step is retried"
            )
            if reason.startswith("TLS"):
                raise DeviceRefused(f"array {self.array.name}: {reason} ({what})", fix=fix) from None
            raise DeviceUnreachable(f"array {self.array.name}: {reason} ({what})", fix=fix) from None
        except httpx.HTTPError as exc:
            raise DeviceUnreachable(
                f"array {self.array.name}: {what} failed: {type(exc).__name__}",
                fix="check the array is up; the step is retried",
            ) from None
        log.debug("%s %s -> %s", self.array.name, what, response.status_code)
        if response.is_success or (ok404 and response.status_code == 404):
            return response
        said = self._message(response)
        text = f"array {self.array.name} answered {response.status_code} to {what}" + (
            f": {said}" if said else ""
        )
        if response.status_code in (401, 403):
            raise DeviceRefused(text, fix="check the array's credentials reference and the user's role")
        if response.status_code >= 500:
            raise DeviceUnreachable(text, fix="the array failed; the step is retried or reconciled")
        raise DeviceRefused(text, fix="see the array's message")

    def _message(self, response: httpx.Response) -> str | None:
        try:
            found = self.message_of(response.json())
        except ValueError:
            found = None
        return redaction.redact(found) if found else None

    def close(self) -> None:
        self.client.close()
