"""A simulated Cisco IOS-XE router acting as a firewall (Netmiko ``cisco_ios``): named extended and IPv6
access-lists edited in their sub-modes, static routes and secondary interface addresses (``interface NAME``
enters ``(config-if)``; see ``netdev_ios_addressing``), ``configure terminal revert timer N`` with
``configure confirm`` and ``configure revert now`` (the archive rollback feature), ``write memory``.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from remotehands.lab.netdev_acl import Ace, CliError, Style, Word, invalid, keyword, parse_ace, split_words
from remotehands.lab.netdev_ios_addressing import IosAddressing, Outcome
from remotehands.lab.netdev_model import (
    DROP_AFTER_FIRST_LINE,
    NO_RETURN_AFTER_COMMIT,
    REJECT_SECOND_LINE,
    DeviceSession,
    NetDevice,
    Reply,
    Zone,
)

ENABLE_HASH = "9 $9$Lb1aJ3mQkT0sVe$4XwqZp7rN2yH8cUu6fGd1oKbS5tMiAe9vRjWlC3nQx."
ADMIN_HASH = "9 $9$Qm7nR2xKp1sTaL$8fHj3KcVb6N0wXzPq4yUe9GtR1sMdLa5oIk7vBnC2e."
INVALID = "% Invalid input detected at '^' marker."
NO_ROLLBACK = "% No Rollback Confirmed Change pending"
CONFIG_HINT = "Enter configuration commands, one per line.  End with CNTL/Z."
VOLATILE = ("Building configuration...", "Current configuration :", "! Last configuration change at ")


@dataclass(frozen=True)
class Entry:
    """One line of a named ACL: a remark (``ace`` None) or a sequenced entry."""

    text: str
    ace: Ace | None = None
    seq: int = 0


@dataclass
class Acl:
    """A named ACL: ``extended`` (IPv4) or ``ipv6``."""

    kind: str
    entries: list[Entry] = field(default_factory=list)

    def copy(self) -> Acl:
        """An independent copy (entries are immutable)."""
        return Acl(self.kind, list(self.entries))


class IosDevice(NetDevice):
    """An IOS-XE router whose interfaces are the zones, each with its ACL bound inbound."""

    platform = "cisco_ios"
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
        self.acls: dict[str, Acl] = {}
        for key, zone in zones.items():
            if zone.acl is not None:
                text = "permit tcp any host 198.51.100.10 eq 22" if key == "outside" else "permit ip any any"
                ace = parse_ace(split_words(text), "ios", len(text))
                self.acls.setdefault(zone.acl, Acl("extended")).entries.append(
                    Entry(ace.text("ios"), ace, 10)
                )
        primaries = {
            zone.interface: ipaddress.IPv4Interface("203.0.113.3/24" if index == 0 else f"10.0.{index}.1/24")
            for index, zone in enumerate(zones.values())
        }
        self.addressing = IosAddressing(primaries)
        self.snapshot: dict[str, Acl] | None = None  # the rollback point while a revert timer runs
        self.addressing_snapshot: IosAddressing | None = None  # its routes and addresses
        self.revert_at: float | None = None
        self.archives = 0
        self.changed_at = time.gmtime()
        self.startup_config = self.running_config()
        self.saved()

    def running_config(self) -> str:
        """``show running-config`` without its volatile header lines."""
        lines = ["!", "!", "version 17.9", "service timestamps debug datetime msec"]
        lines += ["service timestamps log datetime msec", "service password-encryption", "!"]
        lines += [f"hostname {self.name}", "!", "boot-start-marker", "boot-end-marker", "!"]
        lines += [f"enable secret {ENABLE_HASH}", "!", "no aaa new-model", "!"]
        lines += [f"username admin privilege 15 secret {ADMIN_HASH}", "!"]
        lines += ["archive", " path flash:rollback", " maximum 5", "!"]
        for zone in self.zones.values():
            lines += [f"interface {zone.interface}", *self.addressing.interface_lines(zone.interface)]
            lines += [f" ip access-group {zone.acl} in"] if zone.acl else []
            lines += [" negotiation auto", "!"]
        routes = self.addressing.route_lines()
        lines += [*routes, "!"] if routes else []
        for name, acl in sorted(self.acls.items()):
            lines.append(
                f"ip access-list extended {name}" if acl.kind == "extended" else f"ipv6 access-list {name}"
            )
            lines += [f" {entry.text}" for entry in acl.entries]
        lines += ["!", "snmp-server community LabRoCommunity1 RO", "!", "line con 0", " stopbits 1"]
        lines += ["line vty 0 4", " login local", " transport input ssh", "!", "end"]
        return "\n".join(lines) + "\n"

    def show_running(self) -> str:
        """``show running-config`` as printed, volatile lines included."""
        body = self.running_config()
        stamp = time.strftime("%H:%M:%S", self.changed_at)
        header = ["Building configuration...", "", f"Current configuration : {len(body)} bytes"]
        rest = body.split("\n", 1)[1]  # after the first "!": the change stamp goes between the two
        return "\n".join(
            [*header, "!", f"! Last configuration change at {stamp} UTC Sat Dec 5 2026 by admin", rest]
        )

    def new_session(self, user: str) -> DeviceSession:
        """A CLI login in privileged exec."""
        return IosSession(self, user)

    def tick(self, now: float) -> None:
        """Roll back to the snapshot once the revert timer expires."""
        if self.revert_at is not None and now >= self.revert_at:
            self.revert()

    def changed(self) -> None:
        """Record a change (the stamp in ``show running-config``) and write the state file."""
        self.changed_at = time.gmtime()
        self.saved()

    def revert(self) -> None:
        """Restore the rollback point now and end the pending change (logins are answered again)."""
        if self.snapshot is not None:
            self.acls = {name: acl.copy() for name, acl in self.snapshot.items()}
        if self.addressing_snapshot is not None:
            self.addressing = self.addressing_snapshot.copy()
        self.snapshot, self.addressing_snapshot, self.revert_at = None, None, None
        self.changed()
        self.accepting = True  # last: whoever sees logins answered again sees the restored state file

    def arm(self, minutes: int) -> str:
        """Start (or restart) the revert timer; the rollback point is taken unless one is pending."""
        message = "Rollback Confirmed Change: Resetting the revert timer"
        if self.snapshot is None:
            self.archives += 1
            self.snapshot = {name: acl.copy() for name, acl in self.acls.items()}
            self.addressing_snapshot = self.addressing.copy()
            message = f"Rollback Confirmed Change: Backing up current running config to flash:rollback-{self.archives}"
        self.revert_at = self.clock() + self.minutes(minutes)
        return message


class IosSession(DeviceSession):
    """One IOS CLI login: privileged exec, global configuration, an ACL or an interface sub-mode."""

    device: IosDevice

    def __init__(self, device: IosDevice, user: str) -> None:
        super().__init__(device, user)
        self.mode = "exec"  # exec, config, acl, interface
        self.acl: str | None = None
        self.interface: str | None = None
        self.changes = 0
        self.with_revert = False  # this config session was entered with a revert timer

    def prompt(self) -> str:
        """``fw-ios-01#``, ``fw-ios-01(config)#``, ``(config-ext-nacl)#``, ``(config-ipv6-acl)#``, ``(config-if)#``."""
        if self.mode == "exec":
            return f"{self.device.name}#"
        if self.mode in ("config", "interface"):
            return f"{self.device.name}(config{'-if' if self.mode == 'interface' else ''})#"
        kind = self.device.acls[self.acl].kind if self.acl in self.device.acls else "extended"
        return f"{self.device.name}(config-{'ext-nacl' if kind == 'extended' else 'ipv6-acl'})#"

    def handle(self, line: str) -> Reply:
        """Answer one line; errors get the caret under the bad word, counted from the prompt."""
        prompt = self.prompt()
        words = split_words(line)
        try:
            if not words:
                return Reply()
            if self.mode == "acl":
                return self._acl(line, words)
            if self.mode == "interface":
                return self._interface(line, words)
            if self.mode == "config":
                return self._config(line, words)
            return self._exec(words)
        except CliError as err:
            if err.kind == "incomplete":
                return Reply("% Incomplete command.\n")
            if err.kind == "message":
                return Reply(err.message)
            return Reply(f"{' ' * (len(prompt) + err.column)}^\n{INVALID}\n")

    def _exec(self, words: list[Word]) -> Reply:
        device = self.device
        if keyword(words, "terminal"):
            return Reply()
        if keyword(words, "show", "running-config"):
            return self._show_running(words)
        if keyword(words, "configure", "terminal"):
            if len(words) == 2:
                return self._enter_config(CONFIG_HINT, revert=False)
            if not keyword(words[2:], "revert", "timer"):
                raise invalid(words[2])
            if len(words) < 5:
                raise CliError("incomplete")
            count = words[4]
            if not count.text.isdigit() or not 1 <= int(count.text) <= 120:
                raise invalid(count)
            if len(words) > 5:
                raise invalid(words[5])
            return self._enter_config(f"{device.arm(int(count.text))}\n{CONFIG_HINT}", revert=True)
        if keyword(words, "configure", "confirm") and len(words) == 2:
            if device.snapshot is None:
                return Reply(NO_ROLLBACK)
            device.snapshot, device.addressing_snapshot, device.revert_at = None, None, None
            return Reply()
        if keyword(words, "configure", "revert", "now") and len(words) == 3:
            if device.snapshot is None:
                return Reply(NO_ROLLBACK)
            device.revert()
            return Reply("Rollback Done")
        if keyword(words, "write", "memory") and len(words) == 2:
            device.startup_config = device.running_config()
            return Reply("Building configuration...\n[OK]")
        if len(words) == 1 and words[0].text.lower() in ("exit", "logout", "quit"):
            return Reply(close=True)
        raise invalid(words[0])

    def _show_running(self, words: list[Word]) -> Reply:
        text = self.device.show_running().rstrip("\n")
        if len(words) == 2:
            return Reply(text)
        if words[2].text != "|" or len(words) < 5:
            raise invalid(words[2]) if words[2].text != "|" else CliError("incomplete")
        pattern = " ".join(w.text for w in words[4:])
        try:
            regex = re.compile(pattern)
        except re.error:
            raise invalid(words[4]) from None
        if keyword(words[3:], "include"):
            return Reply("\n".join(line for line in text.split("\n") if regex.search(line)))
        if not keyword(words[3:], "section"):
            raise invalid(words[3])
        blocks: list[list[str]] = []
        for line in self.device.running_config().rstrip("\n").split("\n"):
            if line.startswith(" ") and blocks:
                blocks[-1].append(line)
            else:
                blocks.append([line])
        hits = [block for block in blocks if any(regex.search(line) for line in block)]
        return Reply("\n".join(line for block in hits for line in block))

    def _enter_config(self, output: str, *, revert: bool) -> Reply:
        self.mode, self.changes, self.with_revert = "config", 0, revert
        return Reply(output)

    def _leave_config(self) -> Reply:
        self.mode, self.acl, self.interface = "exec", None, None
        device = self.device
        if self.with_revert and device.revert_at is not None and device.fire(NO_RETURN_AFTER_COMMIT):
            device.accepting = False  # until the timer restores the rollback point (IosDevice.revert)
            return Reply(close=True)
        return Reply()

    def _config(self, line: str, words: list[Word]) -> Reply:
        first = words[0].text.lower()
        if first == "end" and len(words) == 1:
            return self._leave_config()
        if first == "exit" and len(words) == 1:
            return self._leave_config()
        if first == "do" and len(words) > 1:
            return self._exec(words[1:])
        book, end = self.device.addressing, len(line)
        if keyword(words, "interface"):
            self.interface, self.acl = book.interface_name(words[1:], end), None
            self.mode = "interface"
            return Reply()
        for remove, rest in ((False, words), (True, words[1:] if first == "no" else [])):
            if keyword(rest, "ip", "route"):
                return self._outcome(book.route(rest[2:], end, remove=remove))
            if keyword(rest, "ipv6", "route"):
                return self._outcome(book.route6(rest[2:], end, remove=remove))
        if keyword(words, "ip", "access-list", "extended") or keyword(words, "ipv6", "access-list"):
            kind = "ipv6" if words[0].text.lower() == "ipv6" else "extended"
            name_index = 2 if kind == "ipv6" else 3
            if len(words) != name_index + 1:
                raise CliError("incomplete") if len(words) <= name_index else invalid(words[name_index + 1])
            name = words[name_index].text
            existing = self.device.acls.get(name)
            if existing is not None and existing.kind != kind:
                return Reply(f"% {name} already exists as a different access-list type")
            if existing is None:
                self.device.acls[name] = Acl(kind)
                self.device.changed()
            self.mode, self.acl = "acl", name
            return Reply()
        if first == "no" and keyword(words[1:], "ip", "access-list", "extended") and len(words) == 5:
            name = words[4].text
            if name not in self.device.acls:
                return Reply()
            return self._change(lambda: self.device.acls.pop(name))
        raise invalid(words[0])

    def _acl(self, line: str, words: list[Word]) -> Reply:
        first = words[0].text.lower()
        if first in ("remark", "permit", "deny", "no") or first.isdigit():
            return self._acl_entry(line, words)
        if first == "exit" and len(words) == 1:
            self.mode, self.acl = "config", None
            return Reply()
        # As IOS does, a line the sub-mode does not know is tried in global configuration.
        return self._config(line, words)

    def _interface(self, line: str, words: list[Word]) -> Reply:
        if self.interface is None:
            raise invalid(words[0])
        first, book = words[0].text.lower(), self.device.addressing
        if first == "exit" and len(words) == 1:
            self.mode, self.interface = "config", None
            return Reply()
        remove = first == "no"
        rest = words[1:] if remove else words
        if keyword(rest, "ip", "address"):
            return self._outcome(book.secondary(self.interface, rest[2:], len(line), remove=remove))
        return self._config(line, words)  # as IOS does: a line the sub-mode does not know is tried globally

    def _outcome(self, outcome: Outcome) -> Reply:
        """Print an error, ignore a line that changes nothing, or apply a change."""
        if outcome is None:
            return Reply()
        return Reply(outcome) if isinstance(outcome, str) else self._change(outcome)

    def _acl_entry(self, line: str, words: list[Word]) -> Reply:
        if self.acl is None:
            raise invalid(words[0])
        acl = self.device.acls[self.acl]
        style: Style = "ios" if acl.kind == "extended" else "ipv6"
        remove = words[0].text.lower() == "no"
        rest = words[1:] if remove else words
        if not rest:
            raise CliError("incomplete")
        if rest[0].text.lower() == "remark":
            if len(rest) < 2:
                raise CliError("incomplete")
            entry = Entry(f"remark {line[rest[1].column :].rstrip()}")
        elif rest[0].text.isdigit():
            seq = int(rest[0].text)
            if remove and len(rest) == 1:
                found = next((e for e in acl.entries if e.ace is not None and e.seq == seq), None)
                return Reply() if found is None else self._change(lambda: acl.entries.remove(found))
            ace = parse_ace(rest[1:], style, len(line))
            entry = Entry(ace.text(style), ace, seq)
        else:
            ace = parse_ace(rest, style, len(line))
            entry = Entry(ace.text(style), ace)
        same = [e for e in acl.entries if (e.ace == entry.ace if entry.ace else e.text == entry.text)]
        if remove:
            return Reply() if not same else self._change(lambda: acl.entries.remove(same[0]))
        if entry.ace is not None and same:
            return Reply()  # IOS ignores a duplicate entry without a word
        if entry.seq and any(e.seq == entry.seq and e.ace is not None for e in acl.entries):
            return Reply("% Duplicate sequence number")
        return self._change(lambda: _insert(acl, entry))

    def _change(self, apply: Callable[[], object]) -> Reply:
        self.changes += 1
        device = self.device
        if self.changes == 2 and device.fire(REJECT_SECOND_LINE):
            return Reply(f"% Configuration change rejected: the configuration database is locked\n{INVALID}")
        apply()
        device.changed()
        if self.changes == 1 and device.fire(DROP_AFTER_FIRST_LINE):
            return Reply(close=True)
        return Reply()


def _insert(acl: Acl, entry: Entry) -> None:
    """Put ``entry`` in sequence order (a new entry gets the last sequence number + 10; a remark goes last)."""
    last = max((e.seq for e in acl.entries), default=0)
    if entry.ace is None:
        acl.entries.append(Entry(entry.text, None, last))
        return
    if entry.seq == 0:
        acl.entries.append(Entry(entry.text, entry.ace, (last // 10 + 1) * 10))
        return
    position = next((i for i, e in enumerate(acl.entries) if e.ace is not None and e.seq > entry.seq), None)
    acl.entries.insert(len(acl.entries) if position is None else position, entry)
