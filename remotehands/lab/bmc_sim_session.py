"""The RMCP+ session of a simulated BMC: pyghmi's server session with the fixes the lab needs.

- it refuses RMCP+ cipher suites other than 3: pyghmi's server class always answers as if suite 3 was
  chosen, and pyghmi's client, which offers suite 17 first, then fails in RAKP2. Refused, the client falls
  back;
- it answers an unknown user name with RAKP2 status 0x0D (the class stays silent: the client times out);
- it survives malformed packets (the class can raise ``AttributeError``);
- a login's first packets (``starts_login``) that pyghmi's loop hands to this session object go to the BMC,
  which answers them and makes a new session object. The loop does so when the login comes from a client
  address that had a session on this BMC (pyghmi clients share and reuse their sockets). The class then
  deleted every session of that client address on every BMC of the process, so the other sessions sharing
  the client's socket got no answers: with 8 client threads, 10-20% of requests stalled until their
  timeout, and CI failed on it. Reusing the old object instead answers in the old session's keys. And when
  a login came from an address no session is known under (a client restarted on a reused port), the class
  had no ``sessionless_data`` and raised ``AttributeError``, which ended the listener's pass over every
  queued packet;
- it lets its BMC drop incoming packets (``SimulatedBmc(packet_loss=...)``): the BMC decides, per packet.

``last_request`` is the BMC's retransmit cache for this session (``SimulatedBmc.handle_raw_request``).
"""

from __future__ import annotations

import logging
from typing import Any

from pyghmi.ipmi.private import constants as ipmi_constants
from pyghmi.ipmi.private import serversession

log = logging.getLogger("remotehands.lab.bmc_sim")

RMCP_NO_CIPHER_MATCH = 0x11
RMCP_UNAUTHORIZED_NAME = 0x0D
SUITE_3 = (1, 1, 1)  # RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128: what pyghmi's server class speaks


class SimSession(serversession.ServerSession):  # type: ignore[misc]
    """pyghmi's server session with the fixes listed in the module docstring. ``bmc`` is the
    ``SimulatedBmc`` it belongs to."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.k1 = None  # the class reads it before RAKP3 sets it
        self.remseqnumber = None
        self.last_request: tuple[Any, ...] | None = None
        super().__init__(*args, **kwargs)

    def sessionless_data(self, data: Any, sockaddr: Any) -> None:
        self.bmc.sessionless_data(data, sockaddr)

    def create_open_session_response(self, request: Any) -> bytearray:
        proposed = (request[12], request[20], request[28]) if len(request) >= 32 else None
        if proposed != SUITE_3:
            self.clientsessionid = bytearray(request[4:8])
            return bytearray([request[0], RMCP_NO_CIPHER_MATCH, 0, 0]) + self.clientsessionid
        response: bytearray = super().create_open_session_response(request)
        return response

    def _got_rakp1(self, data: Any) -> None:
        name = bytes(data[28:])
        if data[27] == 0 or self.authdata.get(name.decode("utf-8", "replace")) is None:
            payload = bytearray([data[0], RMCP_UNAUTHORIZED_NAME, 0, 0]) + self.clientsessionid
            self.send_payload(payload, ipmi_constants.payload_types["rakp2"], retry=False)
            return
        super()._got_rakp1(data)

    def _handle_ipmi_packet(self, data: Any, sockaddr: Any = None, qent: Any = None) -> Any:
        if starts_login(data):
            self.bmc.sessionless_data(data, sockaddr)  # the BMC decides about dropping it
            return None
        if self.bmc.drops_incoming():
            return None
        try:
            return super()._handle_ipmi_packet(data, sockaddr=sockaddr, qent=qent)
        except Exception as exc:  # a malformed packet must not end the listener
            log.warning(
                "%s: dropped a malformed packet from %s (%s)", self.bmc.name, sockaddr, type(exc).__name__
            )
            return None


def starts_login(data: Any) -> bool:
    """A login's first packets: IPMI 1.5 outside any session (sequence number and session id 0: Get Channel
    Authentication Capabilities), or an RMCP+ Open Session Request. The BMC answers them, and makes a new
    session object for the Open Session Request."""
    if len(data) >= 13 and data[4] in (0, 2):
        return not any(data[5:13])
    return len(data) >= 6 and data[4] == 6 and data[5] & 0x3F == 0x10
