"""Access-control entries as the simulated Cisco devices (``netdev_asa``, ``netdev_ios``) parse, print and
evaluate them, and the bits of Cisco CLI parsing both share (words with their column, keyword abbreviations,
the caret under a bad word).

One grammar, three address styles: ``asa`` (``any``/``any4``/``any6``, ``host A``, ``A MASK`` for IPv4,
``A/LEN`` for IPv6), ``ios`` (``any``, ``host A``, ``A WILDCARD``) and ``ipv6`` (IOS ``ipv6 access-list``:
``any``, ``host A``, ``A/LEN``). Ports (``eq P``, ``range A B``) follow the destination, for tcp and udp only.
Port names are accepted on input and printed as numbers (a real ASA prints names: ``eq https``).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Style = Literal["asa", "ios", "ipv6"]

PORT_NAMES = {
    "ftp": 21,
    "ssh": 22,
    "telnet": 23,
    "smtp": 25,
    "domain": 53,
    "www": 80,
    "http": 80,
    "ntp": 123,
    "snmp": 161,
    "bgp": 179,
    "ldap": 389,
    "https": 443,
    "syslog": 514,
    "ldaps": 636,
}
PROTOCOLS = {
    "asa": ("ip", "tcp", "udp", "icmp"),
    "ios": ("ip", "tcp", "udp", "icmp"),
    "ipv6": ("ipv6", "tcp", "udp", "icmp"),
}


@dataclass(frozen=True)
class Word:
    """One word of a command line and the column it starts at (for the caret)."""

    column: int
    text: str


def split_words(line: str) -> list[Word]:
    """The words of ``line`` with their columns."""
    return [Word(m.start(), m.group()) for m in re.finditer(r"\S+", line)]


def keyword(words: list[Word], *keywords: str) -> bool:
    """True if ``words`` start with ``keywords``, each typed in full or abbreviated (``conf t``)."""
    if len(words) < len(keywords):
        return False
    return all(kw.startswith(w.text.lower()) for w, kw in zip(words, keywords, strict=False))


class CliError(ValueError):
    """A line the device refuses. ``column`` is where the caret goes (``kind == "invalid"``); ``incomplete``
    is a truncated command; ``message`` is printed as it is (the ASA's ``ERROR: ...`` lines)."""

    def __init__(
        self, kind: Literal["invalid", "incomplete", "message"], column: int = 0, message: str = ""
    ) -> None:
        super().__init__(message or kind)
        self.kind = kind
        self.column = column
        self.message = message


def invalid(word: Word) -> CliError:
    """The error for an unexpected ``word``."""
    return CliError("invalid", word.column)


@dataclass(frozen=True)
class Endpoint:
    """A source or destination: ``any``/``any4``/``any6`` (``network`` None), ``host`` or ``net``."""

    kind: Literal["any", "any4", "any6", "host", "net"]
    network: IpNetwork | None = None

    def matches(self, address: IpAddress) -> bool:
        """True if ``address`` is in this endpoint."""
        if self.network is None:
            return self.kind == "any" or (self.kind == "any4") == (address.version == 4)
        return address.version == self.network.version and address in self.network

    def text(self, style: Style) -> str:
        """As the device prints it."""
        net = self.network
        if net is None:
            return self.kind
        if self.kind == "host":
            return f"host {_address_text(net.network_address, style)}"
        if net.version == 6:
            return f"{_address_text(net.network_address, style)}/{net.prefixlen}"
        mask = net.hostmask if style == "ios" else net.netmask
        return f"{net.network_address} {mask}"


def _address_text(address: IpAddress, style: Style) -> str:
    # IOS prints IPv6 addresses in capitals; the ASA in lower case.
    return str(address).upper() if style == "ipv6" else str(address)


@dataclass(frozen=True)
class Ports:
    """A destination port match: ``eq`` (``low == high``) or ``range``."""

    op: Literal["eq", "range"]
    low: int
    high: int

    def text(self) -> str:
        """As the device prints it."""
        return f"eq {self.low}" if self.op == "eq" else f"range {self.low} {self.high}"


@dataclass(frozen=True)
class Ace:
    """One permit/deny entry; equal entries are duplicates whatever their spelling."""

    action: Literal["permit", "deny"]
    protocol: str
    source: Endpoint
    destination: Endpoint
    ports: Ports | None = None

    def text(self, style: Style) -> str:
        """As the device prints it (without the ASA's ``access-list NAME extended`` prefix)."""
        parts = [self.action, self.protocol, self.source.text(style), self.destination.text(style)]
        if self.ports is not None:
            parts.append(self.ports.text())
        return " ".join(parts)

    def matches(self, protocol: str, source: IpAddress, destination: IpAddress, port: int | None) -> bool:
        """True if a packet of ``protocol`` from ``source`` to ``destination`` (``port`` for tcp/udp) hits."""
        if self.protocol not in ("ip", "ipv6", protocol):
            return False
        if not (self.source.matches(source) and self.destination.matches(destination)):
            return False
        if self.ports is None:
            return True
        return port is not None and self.ports.low <= port <= self.ports.high


def parse_ace(words: list[Word], style: Style, end_column: int) -> Ace:
    """Parse ``permit|deny PROTO SRC DST [PORTS]`` (``words`` start at the action); ``end_column`` is the
    length of the line, where the caret goes when something is missing. Raises ``CliError``."""
    cursor = _Cursor(words, end_column)
    action_word = cursor.take()
    if action_word.text not in ("permit", "deny"):
        raise invalid(action_word)
    proto_word = cursor.take()
    protocol = proto_word.text.lower()
    if protocol not in PROTOCOLS[style]:
        raise invalid(proto_word)
    source = _endpoint(cursor, style)
    destination = _endpoint(cursor, style)
    ports = None
    if cursor.more():
        if protocol not in ("tcp", "udp"):
            raise invalid(cursor.peek())
        ports = _ports(cursor)
    if cursor.more():
        raise invalid(cursor.peek())
    action: Literal["permit", "deny"] = "permit" if action_word.text == "permit" else "deny"
    return Ace(action, protocol, source, destination, ports)


def parse_address(word: Word) -> IpAddress:
    """An IPv4 or IPv6 address; ``CliError`` at ``word`` otherwise."""
    try:
        return ipaddress.ip_address(word.text)
    except ValueError:
        raise invalid(word) from None


def parse_ipv4(word: Word) -> ipaddress.IPv4Address:
    """An IPv4 address (``300.1.1.1`` is not one); ``CliError`` at ``word`` otherwise."""
    address = parse_address(word)
    if not isinstance(address, ipaddress.IPv4Address):
        raise invalid(word)
    return address


def parse_port(word: Word) -> int:
    """A port number 1..65535 or a well-known name; ``CliError`` at ``word`` otherwise."""
    if word.text.lower() in PORT_NAMES:
        return PORT_NAMES[word.text.lower()]
    if not word.text.isdigit() or not 1 <= int(word.text) <= 65535:
        raise invalid(word)
    return int(word.text)


class _Cursor:
    def __init__(self, words: list[Word], end_column: int) -> None:
        self.words = words
        self.index = 0
        self.end_column = end_column

    def more(self) -> bool:
        return self.index < len(self.words)

    def peek(self) -> Word:
        return self.words[self.index]

    def take(self) -> Word:
        if not self.more():
            raise CliError("incomplete", self.end_column)
        word = self.words[self.index]
        self.index += 1
        return word


def _endpoint(cursor: _Cursor, style: Style) -> Endpoint:
    word = cursor.take()
    text = word.text.lower()
    if text == "any" or (style == "asa" and text in ("any4", "any6")):
        return Endpoint("any" if text == "any" else ("any4" if text == "any4" else "any6"))
    if text == "host":
        addr_word = cursor.take()
        address = parse_address(addr_word)
        if (style == "ios" and address.version != 4) or (style == "ipv6" and address.version != 6):
            raise invalid(addr_word)
        return Endpoint("host", ipaddress.ip_network(address))
    if "/" in text:
        if style == "ios":
            raise invalid(word)
        try:
            network = ipaddress.ip_network(text, strict=True)
        except ValueError:
            raise invalid(word) from None
        if network.version != 6:
            raise invalid(word)
        return Endpoint("net", network)
    address = parse_address(word)
    if address.version != 4 or style == "ipv6":
        raise invalid(word)
    mask_word = cursor.take()
    mask = parse_address(mask_word)
    if mask.version != 4:
        raise invalid(mask_word)
    if style == "ios":
        # Only contiguous wildcards (a netmask typed as a wildcard is the usual mistake); host bits are
        # cleared, as IOS-XE does.
        length = prefix_length(int(mask) ^ 0xFFFFFFFF)
        if length is None:
            raise invalid(mask_word)
        return Endpoint("net", ipaddress.IPv4Network((int(address), length), strict=False))
    length = prefix_length(int(mask))
    if length is None or int(address) & ~int(mask) & 0xFFFFFFFF:
        raise CliError("message", message=f"ERROR: IP address,mask <{address},{mask}> doesn't pair")
    return Endpoint("net", ipaddress.IPv4Network((int(address), length)))


def prefix_length(mask: int) -> int | None:
    """The prefix length of a contiguous IPv4 netmask, or None."""
    inverse = mask ^ 0xFFFFFFFF
    if inverse & (inverse + 1):
        return None
    return 32 - inverse.bit_length()


def _ports(cursor: _Cursor) -> Ports:
    op_word = cursor.take()
    if op_word.text == "eq":
        port = parse_port(cursor.take())
        return Ports("eq", port, port)
    if op_word.text == "range":
        low = parse_port(cursor.take())
        high_word = cursor.take()
        high = parse_port(high_word)
        if high < low:
            raise invalid(high_word)
        return Ports("range", low, high)
    raise invalid(op_word)
