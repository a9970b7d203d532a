"""A simulated Cisco ASA 9.x firewall (Netmiko ``cisco_asa``): logins land in privileged exec
(``aaa authorization exec LOCAL auto-enable``), ``configure terminal`` edits extended access-lists, static
routes and network objects with their static NAT (``object network NAME`` enters
``(config-network-object)``; see ``netdev_asa_addressing``), ``write memory`` saves, ``packet-tracer``
evaluates the ACL bound to an interface. No revert timer: a change is live at once, and rollback is the
``no`` form of each line.
"""

from __future__ import annotations

import hashlib
import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from remotehands.lab.netdev_acl import (
    Ace,
    CliError,
    Word,
    invalid,
    keyword,
    parse_ace,
    parse_address,
    parse_port,
    split_words,
)
from remotehands.lab.netdev_asa_addressing import AsaAddressing, AsaRoute, NetworkObject, Outcome
from remotehands.lab.netdev_model import (
    DROP_AFTER_FIRST_LINE,
    NO_RETURN_AFTER_COMMIT,
    REJECT_SECOND_LINE,
    DeviceSession,
    NetDevice,
    Reply,
    Zone,
)

ENABLE_HASH = "$sha512$5000$Zk1hcmtMYWJBc2EwMQ==$q7Vd3kP0sYx1mZ8bN2rT4w== pbkdf2"
ADMIN_HASH = "$sha512$5000$TGFiQWRtaW5TYWx0MDE=$h3Qw9LmX2cV7pZ5rK8sT1A== pbkdf2"
INVALID = "ERROR: % Invalid input detected at '^' marker."


@dataclass(frozen=True)
class AclLine:
    """One line of an access-list: a remark (``ace`` None) or an entry."""

    text: str  # as printed after ``access-list NAME ``
    ace: Ace | None = None

    def same(self, other: AclLine) -> bool:
        """The same line, however it was spelled."""
        return self.text == other.text if self.ace is None else self.ace == other.ace


class AsaDevice(NetDevice):
    """An ASA whose interfaces are the zones (``Zone.interface`` is the nameif) with their ACL bound in."""

    platform = "cisco_asa"
    ssh_banner = "SSH-2.0-Cisco-1.25"

    def __init__(
        self,
        name: str,
        zones: dict[str, Zone],
        state_file: Path,
        *,
        time_scale: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name, zones, state_file, time_scale=time_scale, clock=clock)
        self.addressing = AsaAddressing([zone.interface for zone in zones.values()])
        default = ipaddress.IPv4Address(0)
        self.addressing.routes.append(
            AsaRoute("outside", default, default, ipaddress.IPv4Address("203.0.113.1"))
        )
        self.acls: dict[str, list[AclLine]] = {}
        for key, zone in zones.items():
            if zone.acl is not None:
                words = "permit tcp any host 198.51.100.10 eq 22" if key == "outside" else "permit ip any any"
                ace = parse_ace(split_words(words), "asa", len(words))
                self.acls.setdefault(zone.acl, []).append(AclLine(f"extended {ace.text('asa')}", ace))
        self.startup_config = self.running_config()
        self.reopen_at: float | None = None  # while no_return_after_commit keeps it unreachable
        self.saved()

    def running_config(self) -> str:
        """``show running-config`` (an ASA's has no volatile lines)."""
        body = ["ASA Version 9.18(3)", "!", f"hostname {self.name}", f"enable password {ENABLE_HASH}"]
        body += ["names", "no mac-address auto", "!"]
        for index, zone in enumerate(self.zones.values()):
            outside = zone.interface == "outside"
            address = "203.0.113.2 255.255.255.0" if outside else f"10.0.{index}.1 255.255.255.0"
            body += [f"interface GigabitEthernet0/{index}", f" nameif {zone.interface}"]
            body += [f" security-level {0 if outside else 100}", f" ip address {address}", "!"]
        body += ["ftp mode passive", *self.addressing.object_lines()]
        body += [f"access-list {name} {line.text}" for name, lines in self.acls.items() for line in lines]
        body += ["pager lines 24", "logging enable", "logging buffered informational"]
        body += [f"mtu {zone.interface} 1500" for zone in self.zones.values()]
        nat = self.addressing.nat_lines()
        body += ["!", *nat] if nat else []
        body += [f"access-group {z.acl} in interface {z.interface}" for z in self.zones.values() if z.acl]
        body += [*self.addressing.route_lines(), "aaa authentication ssh console LOCAL"]
        body += ["aaa authorization exec LOCAL auto-enable", "ssh 192.0.2.0 255.255.255.0 outside"]
        body += ["ssh version 2", f"username admin password {ADMIN_HASH} privilege 15", "!"]
        text = "\n".join(body)
        checksum = hashlib.sha256(text.encode()).hexdigest()[:32]
        return "\n".join([": Saved", ":", text, f"Cryptochecksum:{checksum}", ": end"]) + "\n"

    def new_session(self, user: str) -> DeviceSession:
        """A CLI login in privileged exec."""
        return AsaSession(self, user)

    def tick(self, now: float) -> None:
        """Answer logins again once the outage after ``no_return_after_commit`` is over."""
        if self.reopen_at is not None and now >= self.reopen_at:
            self.reopen_at = None
            self.accepting = True

    def acl_of(self, nameif: str) -> str | None:
        """The ACL bound inbound to interface ``nameif``; ``KeyError`` if there is no such interface."""
        for zone in self.zones.values():
            if zone.interface == nameif:
                return zone.acl
        raise KeyError(nameif)


class AsaSession(DeviceSession):
    """One ASA CLI login: privileged exec, global configuration or a network object's sub-mode."""

    device: AsaDevice

    def __init__(self, device: AsaDevice, user: str) -> None:
        super().__init__(device, user)
        self.configuring = False
        self.object_name: str | None = None  # in ``object network NAME`` mode
        self.changes = 0  # lines that changed something in this config session (for the faults)

    def prompt(self) -> str:
        """``fw-asa-01# ``, ``fw-asa-01(config)# `` or ``fw-asa-01(config-network-object)# ``."""
        if self.object_name is not None:
            return f"{self.device.name}(config-network-object)# "
        return f"{self.device.name}(config)# " if self.configuring else f"{self.device.name}# "

    def handle(self, line: str) -> Reply:
        """Answer one line; errors are printed the ASA way (the line again, a caret, ``ERROR: ...``)."""
        words = split_words(line)
        try:
            if not words:
                return Reply()
            if self.configuring:
                reply = self._config(line, words)
                if reply is not None:
                    return reply
            return self._exec(line, words)
        except CliError as err:
            if err.kind == "message":
                return Reply(err.message)
            if err.kind == "incomplete":
                return Reply("ERROR: % Incomplete command")
            return Reply(f"{line}\n{' ' * err.column}^\n{INVALID}")

    def _exec(self, line: str, words: list[Word]) -> Reply:
        device = self.device
        if keyword(words, "show", "curpriv"):
            return Reply(f"Username : {self.user}\nCurrent privilege level : 15\nCurrent Mode/s : P_PRIV")
        if keyword(words, "show", "running-config"):
            return self._show_running(words[2:])
        if keyword(words, "terminal") or keyword(words, "login") or keyword(words, "enable"):
            return Reply()  # already privileged; terminal settings are per session and not shown
        if keyword(words, "configure", "terminal") and len(words) == 2:
            self.configuring, self.changes = True, 0
            return Reply()
        if keyword(words, "write", "memory") and len(words) == 2:
            device.startup_config = device.running_config()
            checksum = device.startup_config.rsplit("Cryptochecksum:", 1)[1][:32]
            grouped = " ".join(checksum[i : i + 8] for i in range(0, 32, 8))
            size = len(device.startup_config)
            output = f"Building configuration...\nCryptochecksum: {grouped}\n\n{size} bytes copied in 0.210 secs\n[OK]"
            if device.fire(NO_RETURN_AFTER_COMMIT):
                device.accepting = False
                device.reopen_at = device.clock() + device.minutes(1)
                return Reply(close=True)
            return Reply(output)
        if keyword(words, "packet-tracer"):
            return Reply(packet_trace(device, words, len(line)))
        if len(words) == 1 and words[0].text.lower() in ("exit", "quit", "logout"):
            return Reply("\nLogoff\n", close=True)
        raise invalid(words[0])

    def _show_running(self, rest: list[Word]) -> Reply:
        device, book = self.device, self.device.addressing
        if not rest:
            return Reply(device.running_config().rstrip("\n"))
        if keyword(rest, "access-list") and len(rest) == 2:
            lines = device.acls.get(rest[1].text, [])
            return Reply("\n".join(f"access-list {rest[1].text} {line.text}" for line in lines))
        if keyword(rest, "route") and len(rest) == 1:
            return Reply("\n".join(book.route_lines()))
        if keyword(rest, "nat") and len(rest) == 1:
            return Reply("\n".join(book.nat_lines()))
        if keyword(rest, "object") and len(rest) <= 3:
            if len(rest) > 1 and not keyword(rest[1:], "network"):
                raise invalid(rest[1])
            return Reply("\n".join(book.object_lines(rest[2].text if len(rest) == 3 else None)))
        raise invalid(rest[0])

    def _config(self, line: str, words: list[Word]) -> Reply | None:
        """A configuration line, or None to try it as an exec command (the ASA runs those in config too)."""
        if self.object_name is not None:
            reply = self._object(self.object_name, line, words)
            if reply is not None:
                return reply
        first, book = words[0].text.lower(), self.device.addressing
        if first in ("end", "exit") and len(words) == 1:
            self.configuring = False
            return Reply()
        if keyword(words, "route"):
            return self._outcome(book.route(words[1:], len(line), remove=False))
        if first == "no" and keyword(words[1:], "route"):
            return self._outcome(book.route(words[2:], len(line), remove=True))
        if keyword(words, "object", "network"):
            name = book.object_name(words[2:], len(line))
            if name not in book.objects:  # an empty object is shown, but creating one is not counted
                book.objects[name] = NetworkObject(name)
                self.device.saved()
            self.object_name = name
            return Reply()
        if first == "no" and keyword(words[1:], "object", "network"):
            return self._outcome(book.remove_object(words[3:], len(line)))
        if keyword(words, "access-list"):
            name, entry = _acl_line(line, words[1:])
            return self._add(name, entry)
        if first == "no" and keyword(words[1:], "access-list"):
            name, entry = _acl_line(line, words[2:])
            return self._remove(name, entry)
        return None

    def _object(self, name: str, line: str, words: list[Word]) -> Reply | None:
        """A line in ``object network NAME`` mode, or None: the ASA then leaves the sub-mode and runs the
        line in global configuration (``show`` keeps the sub-mode)."""
        first, book = words[0].text.lower(), self.device.addressing
        if first in ("exit", "end") and len(words) == 1:
            self.object_name = None
            self.configuring = first == "exit"
            return Reply()
        if keyword(words, "host"):
            return self._outcome(book.host(name, words[1:], len(line)))
        if first != "no" and keyword(words, "nat"):
            return self._outcome(book.nat(name, words[1:], len(line), remove=False))
        if first == "no" and keyword(words[1:], "nat"):
            return self._outcome(book.nat(name, words[2:], len(line), remove=True))
        if keyword(words, "show"):
            return self._exec(line, words)
        self.object_name = None
        return None

    def _outcome(self, outcome: Outcome) -> Reply:
        """Print an error, ignore a line that changes nothing, or apply a change."""
        if outcome is None:
            return Reply()
        if isinstance(outcome, str):
            return Reply(outcome)
        return self._change(outcome)

    def _add(self, name: str, entry: AclLine) -> Reply:
        lines = self.device.acls.get(name, [])
        if entry.ace is not None and any(entry.same(old) for old in lines):
            return Reply(f"WARNING: <{name}> found duplicate element")
        return self._change(lambda: self.device.acls.setdefault(name, []).append(entry))

    def _remove(self, name: str, entry: AclLine) -> Reply:
        lines = self.device.acls.get(name, [])
        found = next((old for old in lines if entry.same(old)), None)
        if found is None:
            return Reply("ERROR: Specified access-list does not exist")
        # The ACL keeps its place when emptied, so that removing then re-adding restores the same config.
        return self._change(lambda: lines.remove(found))

    def _change(self, apply: Callable[[], object]) -> Reply:
        self.changes += 1
        device = self.device
        if self.changes == 2 and device.fire(REJECT_SECOND_LINE):
            return Reply(f"ERROR: Unable to apply the access-list change: configuration is locked\n{INVALID}")
        apply()
        device.saved()
        if self.changes == 1 and device.fire(DROP_AFTER_FIRST_LINE):
            return Reply(close=True)
        return Reply()


def _acl_line(line: str, words: list[Word]) -> tuple[str, AclLine]:
    """``NAME remark TEXT`` or ``NAME extended ACE`` (``words`` start at the name)."""
    if len(words) < 2:
        raise CliError("incomplete")
    name, kind = words[0].text, words[1].text.lower()
    if not all(c.isalnum() or c in "_-." for c in name) or len(name) > 241:
        raise invalid(words[0])
    if kind == "remark":
        if len(words) < 3:
            raise CliError("incomplete")
        return name, AclLine(f"remark {line[words[2].column :].rstrip()}")
    if kind != "extended":
        raise invalid(words[1])
    ace = parse_ace(words[2:], "asa", len(line))
    return name, AclLine(f"extended {ace.text('asa')}", ace)


def packet_trace(device: AsaDevice, words: list[Word], end: int) -> str:
    """``packet-tracer input IF tcp|udp SRC SPORT DST DPORT`` or ``... icmp SRC TYPE CODE DST``: the phases
    an ASA prints, ending in ``Action: allow`` or ``Action: drop``."""
    if len(words) < 4:
        raise CliError("incomplete", end)
    if words[1].text != "input":
        raise invalid(words[1])
    nameif, protocol = words[2].text, words[3].text.lower()
    if protocol in ("tcp", "udp"):
        if len(words) < 8:
            raise CliError("incomplete", end)
        source, destination = parse_address(words[4]), parse_address(words[6])
        parse_port(words[5])
        port: int | None = parse_port(words[7])
        extra = words[8:]
    elif protocol == "icmp":
        if len(words) < 8:
            raise CliError("incomplete", end)
        source, destination = parse_address(words[4]), parse_address(words[7])
        for number in words[5:7]:
            if not number.text.isdigit() or int(number.text) > 255:
                raise invalid(number)
        port, extra = None, words[8:]
    else:
        raise invalid(words[3])
    if extra and extra[0].text not in ("detailed", "xml"):
        raise invalid(extra[0])
    try:
        acl = device.acl_of(nameif)
    except KeyError:
        return f"ERROR: '{nameif}' is not a valid interface name"
    hit = None
    for line in device.acls.get(acl, []) if acl else []:
        if line.ace is not None and line.ace.matches(protocol, source, destination, port):
            hit = line
            break
    egress = next((z.interface for z in device.zones.values() if z.interface != nameif), nameif)
    allowed = hit is not None and hit.ace is not None and hit.ace.action == "permit"
    if acl is None:
        rule = "Implicit Rule"
    else:
        rule = f"access-group {acl} in interface {nameif}\n" + (
            f"access-list {acl} {hit.text}" if hit else "access-list Implicit Rule"
        )
    phases = [
        _phase(1, "ACCESS-LIST", "", "ALLOW", "Implicit Rule", "MAC Access list"),
        _phase(
            2,
            "ROUTE-LOOKUP",
            "Resolve Egress Interface",
            "ALLOW",
            "",
            f"found next-hop {_next_hop(destination)} using egress ifc  {egress}",
        ),
        _phase(3, "ACCESS-LIST", "log" if allowed else "", "ALLOW" if allowed else "DROP", rule, ""),
    ]
    result = [
        "Result:",
        f"input-interface: {nameif}",
        "input-status: up",
        "input-line-status: up",
        f"output-interface: {egress}",
        "output-status: up",
        "output-line-status: up",
    ]
    if allowed:
        result.append("Action: allow")
    else:
        result += [
            "Action: drop",
            "Drop-reason: (acl-drop) Flow is denied by configured rule, Drop-location: frame 0x00005556d3a4f1c8 flow (NA)/NA",
        ]
    return "\n".join([*phases, "\n".join(result)])


def _phase(number: int, kind: str, subtype: str, result: str, config: str, info: str) -> str:
    lines = [f"Phase: {number}", f"Type: {kind}", f"Subtype: {subtype}", f"Result: {result}", "Config:"]
    lines += [config] if config else []
    lines += ["Additional Information:"] + ([info] if info else [])
    return "\n".join(lines) + "\n"


def _next_hop(destination: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return str(destination)  # connected: the ASA names the destination itself as next hop
