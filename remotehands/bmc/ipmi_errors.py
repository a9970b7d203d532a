"""How IPMI answers and pyghmi failures become remotehands errors (the boundary of the exception tree).

    no answer, timeout, network error, unresolvable address  -> DeviceUnreachable (retryable)
    busy completion codes (0xC0, 0xC3, 0xCE, 0xD2)            -> DeviceUnreachable (retryable)
    no free session on the BMC                                -> DeviceUnreachable (retryable)
    login refused (password, user, privilege)                 -> DeviceRefused
    any other non-zero completion code                        -> DeviceRefused
    completion code 0xCB (record not present)                 -> NotPresent, for the SEL walk to end on
    anything else from pyghmi                                 -> InternalError (a bug to report)

Every message names the BMC as ``address:port`` and says what to do; none holds a password.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from remotehands.bmc.ipmi_protocol import CC_NOT_IN_PRESENT_STATE, CC_NOT_PRESENT, TRANSIENT_CODES
from remotehands.errors import DeviceRefused, DeviceUnreachable, InternalError, RemoteHandsError


class NotPresent(Exception):
    """Completion code 0xCB: the record asked for does not exist (an empty SEL, the end of a walk)."""


@dataclass(frozen=True)
class IpmiEndpoint:
    """What an error message needs to know about the BMC it is about."""

    address: str
    port: int
    username: str

    @property
    def device(self) -> str:
        return f"{self.address}:{self.port}"

    def unreachable_fix(self) -> str:
        return (
            f"check that the BMC is up and answers on UDP port {self.port} from this machine (management "
            "network, VLAN, firewall); a BMC that stays silent may need a cold reset or an AC power cycle"
        )


def response_data(endpoint: IpmiEndpoint, what: str, response: Any) -> bytes:
    """The data of pyghmi's answer dict to a raw command; raises the error its completion code stands for."""
    device = endpoint.device
    if not isinstance(response, dict):
        raise DeviceUnreachable(f"IPMI BMC {device} gave no answer ({what})", fix=endpoint.unreachable_fix())
    code = int(response.get("code", 0) or 0)
    if "error" in response and code in (0, 0xFFFF):
        raise DeviceUnreachable(
            f"IPMI BMC {device} did not answer ({what}): {response['error']}", fix=endpoint.unreachable_fix()
        )
    if code == CC_NOT_PRESENT:
        raise NotPresent(what)
    if code in TRANSIENT_CODES:
        raise DeviceUnreachable(
            f"IPMI BMC {device} is busy (completion code 0x{code:02X}) ({what})",
            fix="retry in a minute; if the BMC stays busy, cold-reset it",
        )
    if code == CC_NOT_IN_PRESENT_STATE:
        raise DeviceRefused(
            f"IPMI BMC {device} refused to {what} in the host's present state (completion code 0xD5)",
            fix="a BMC refuses a power cycle of a host that is off: read the state and power it on instead",
        )
    if code:
        reason = response.get("error") or "error"
        raise DeviceRefused(
            f"IPMI BMC {device} refused to {what}: completion code 0x{code:02X} ({reason})",
            fix="the BMC does not support this command or rejected its data; check the BMC firmware or use "
            "another power method for this host in the inventory",
        )
    return bytes(response.get("data", b""))


def translate(endpoint: IpmiEndpoint, what: str, exc: BaseException) -> RemoteHandsError:
    """The remotehands error for an exception raised by pyghmi or the socket layer while doing ``what``."""
    from pyghmi import exceptions as pyghmi_exc
    from pyghmi.ipmi.private import constants

    device = endpoint.device
    if isinstance(exc, socket.gaierror):
        return DeviceUnreachable(
            f"IPMI BMC {device}: the address does not resolve ({what})",
            fix="check power.address of this host in the inventory and the DNS of this machine",
        )
    if isinstance(exc, OSError):
        return DeviceUnreachable(
            f"IPMI BMC {device}: network error {exc.strerror or exc} ({what})", fix=endpoint.unreachable_fix()
        )
    if isinstance(exc, pyghmi_exc.IpmiException):
        reason = str(exc.args[0]) if exc.args and exc.args[0] else ""
        if "Insufficient resources" in reason:
            return DeviceUnreachable(
                f"IPMI BMC {device} has no free session ({what}): {reason}",
                fix="retry in a minute, when idle sessions have expired; close other IPMI tools using this BMC",
            )
        refusals = [*constants.rmcp_codes.values(), "Incorrect password", "privelege level"]
        if any(text in reason for text in refusals):
            return DeviceRefused(
                f"IPMI BMC {device} refused the login of user {endpoint.username!r}: {reason}",
                fix="check power.credentials of this host in the inventory (the user name and the secret its "
                "password reference points at) and that the user has operator or administrator rights",
            )
        detail = f": {reason}" if reason else ""
        return DeviceUnreachable(
            f"IPMI BMC {device} did not answer ({what}){detail}", fix=endpoint.unreachable_fix()
        )
    if isinstance(exc, KeyError):
        # pyghmi's session table changed under the request (a race inside pyghmi under load): whether a
        # write reached the BMC is unknown, which is what DeviceUnreachable means to the job engine.
        return DeviceUnreachable(
            f"IPMI BMC {device}: pyghmi lost track of the session during {what} ({exc!r}); it may or may not "
            "have reached the BMC",
            fix="retry: jobs check the BMC before acting again",
        )
    return InternalError(f"IPMI BMC {device}: unexpected {type(exc).__name__} from pyghmi ({what}): {exc}")
