"""The RMCP+ session of a simulated BMC: pyghmi's server session with the fixes the lab needs.

- it refuses RMCP+ cipher suites other than 3: pyghmi's server class always answers as if suite 3 was
  chosen, and pyghmi's client, which offers suite 17 first, then fails in RAKP2. Refused, the client falls
  back;
- it answers an unknown user name with RAKP2 status 0x0D (the class stays silent: the client times out);
- it survives malformed packets (the class can raise ``AttributeError``);
- it starts a new login that pyghmi routes to an existing session object (same client address and port:
  pyghmi clients reuse their sockets) from clean counters, not the old session's sequence number;
- a sessionless packet (a new login) that pyghmi's loop hands to this session object, because the packet
  arrived on its BMC's socket from an address no session is known under (a client restarted on a reused
  port, after the old session was dropped), goes to the BMC: the class has no ``sessionless_data`` and
  raised ``AttributeError``, which ended the listener's pass over every queued packet (clients then timed
  out; seen with workers SIGKILLed every few seconds);
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
        # A new login on a reused session object: forget the previous session's counters.
        self.remseqnumber = None
        self.k1 = None
        self.last_request = None
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
        # An IPMI 1.5 packet outside any session (a new login from a reused client port) is passed on to
        # the BMC's sessionless handler, which decides about dropping it: decide only once per packet.
        if not _sessionless(data) and self.bmc.drops_incoming():
            return None
        try:
            return super()._handle_ipmi_packet(data, sockaddr=sockaddr, qent=qent)
        except Exception as exc:  # a malformed packet must not end the listener
            log.warning(
                "%s: dropped a malformed packet from %s (%s)", self.bmc.name, sockaddr, type(exc).__name__
            )
            return None


def _sessionless(data: Any) -> bool:
    """True for an IPMI 1.5 packet with sequence number and session id 0 (pyghmi's test for it)."""
    return len(data) >= 13 and data[4] in (0, 2) and bytes(data[5:13]) == bytes(8)
