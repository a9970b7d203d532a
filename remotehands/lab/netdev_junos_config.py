"""A Junos configuration as display-set statements: the lab baseline, the commit history entries, how the
SRX builds candidates, checks them and diffs them, and the routing table a committed configuration makes.

The configuration is an ordered list of paths (display-set lines without ``set``). A candidate is never
stored as a copy: it is the committed configuration with the session's ``Edit`` list replayed over it, so
when a commit or a confirmed-commit rollback changes the committed configuration every candidate follows,
as Junos's private candidates do.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from remotehands.lab.netdev_model import Zone

_POLICY = re.compile(r"^security policies from-zone (\S+) to-zone (\S+) policy (\S+) (.+)$")
PREDEFINED_APPLICATIONS = frozenset({"any", "junos-ssh", "junos-https", "junos-http", "junos-ping"})


@dataclass(frozen=True)
class Edit:
    """One change to a candidate: ``set`` a path (replacing the value under ``leaf``), ``delete`` a path
    and everything below it, or ``load`` a whole configuration (``rollback N``)."""

    kind: str  # set | delete | load
    path: str = ""
    leaf: str | None = None
    lines: tuple[str, ...] = ()


def _shared_words(a: list[str], b: list[str]) -> int:
    count = 0
    for left, right in zip(a, b, strict=False):
        if left != right:
            break
        count += 1
    return count


def apply_set(lines: list[str], path: str, leaf: str | None) -> list[str]:
    """``lines`` with ``path`` set: unchanged if present, replacing the old value of a leaf, else inserted
    after its closest relative so the display-set order stays hierarchical, as Junos keeps it."""
    if path in lines:
        return lines
    if leaf is not None:
        for index, line in enumerate(lines):
            if line.startswith(leaf) and " " not in line[len(leaf) :]:
                rest = [
                    x for x in lines[index + 1 :] if not (x.startswith(leaf) and " " not in x[len(leaf) :])
                ]
                return [*lines[:index], path, *rest]
    words = path.split()
    best, where = 0, len(lines)
    for index, line in enumerate(lines):
        shared = _shared_words(words, line.split())
        if shared and shared >= best:
            best, where = shared, index + 1
    return [*lines[:where], path, *lines[where:]]


def below(line: str, path: str) -> bool:
    """True if ``line`` is ``path`` or a statement under it."""
    return line == path or line.startswith(path + " ")


def apply_delete(lines: list[str], path: str) -> list[str]:
    """``lines`` without ``path`` and everything under it."""
    return [line for line in lines if not below(line, path)]


def replay(committed: Iterable[str], edits: Iterable[Edit]) -> list[str]:
    """The candidate: ``committed`` with ``edits`` applied in order."""
    lines = list(committed)
    for edit in edits:
        if edit.kind == "set":
            lines = apply_set(lines, edit.path, edit.leaf)
        elif edit.kind == "delete":
            lines = apply_delete(lines, edit.path)
        else:
            lines = list(edit.lines)
    return lines


def _names(lines: list[str], prefix: str) -> set[str]:
    return {line[len(prefix) :].split()[0] for line in lines if line.startswith(prefix)}


def check(lines: list[str]) -> list[str]:
    """What ``commit check`` finds wrong in ``lines``, in Junos's words (empty when the commit may go on):
    policies naming undefined zones, addresses or applications, or lacking a match or an action."""
    zones = _names(lines, "security zones security-zone ")
    addresses = _names(lines, "security address-book global address ") | {"any"}
    applications = _names(lines, "applications application ") | PREDEFINED_APPLICATIONS
    errors: list[str] = []
    seen: dict[str, set[str]] = {}
    zone_reported: set[str] = set()
    for line in lines:
        match = _POLICY.match(line)
        if not match:
            continue
        source, destination, policy, rest = match.groups()
        context = f"[edit security policies from-zone {source} to-zone {destination} policy {policy}]"
        seen.setdefault(context, set()).add(" ".join(rest.split()[:2]))
        word, value = rest.split()[-2:] if len(rest.split()) >= 2 else ("", "")
        if source not in zones or destination not in zones:
            if context not in zone_reported:
                zone_reported.add(context)
                missing = source if source not in zones else destination
                errors.append(
                    f"{context}\n  'from-zone {source} to-zone {destination}'\n"
                    f"    error: Security zone '{missing}' is not defined"
                )
            continue
        problem = ""
        if word in ("source-address", "destination-address") and value not in addresses:
            problem = f"Referenced address '{value}' is not defined"
        elif word == "application" and value not in applications:
            problem = f"Referenced application '{value}' is not defined"
        if problem:
            errors.append(f"{context}\n  '{rest}'\n    error: {problem}")
    for context, statements in seen.items():
        for needed in ("match source-address", "match destination-address", "match application"):
            if needed not in statements:
                errors.append(f"{context}\n    error: Missing mandatory statement: '{needed}'")
        if not any(s.startswith("then ") for s in statements):
            errors.append(f"{context}\n    error: Missing mandatory statement: 'then'")
    return errors


def compare(committed: list[str], candidate: list[str]) -> str:
    """``show | compare``: the statements removed (``-``) and added (``+``) under their ``[edit ...]``
    parent, the way Junos groups them."""
    old, new = set(committed), set(candidate)
    changes = [("-", line) for line in committed if line not in new]
    changes += [("+", line) for line in candidate if line not in old]
    out: list[str] = []
    last = ""
    for sign, line in changes:
        words = line.split()
        parent = " ".join(words[:-2]) if len(words) > 2 else words[0]
        statement = " ".join(words[-2:]) if len(words) > 2 else " ".join(words[1:])
        if parent != last:
            out.append(f"[edit {parent}]")
            last = parent
        out.append(f"{sign}  {statement};")
    return "\n".join(out)


VERSION = "22.4R3.25"
# Realistic-looking sha512-crypt hashes: the redactor must recognise and hide them.
ROOT_HASH = "$6$Qx3vL9aK$Vj0fC2mZp7yR1sT4uW8eH6nB5dG3kJ9lA0qX2cF7vN4mS1tY8wE6rU3iO5pL0zK9hD2gB7aQ4xM1nC8vT6"
ADMIN_HASH = "$6$tR8wE2qZ$mN5bV3cX1zL7kJ9hG4fD6sA2pO8iU0yT3rE5wQ1aZ7xC9vB4nM6lK2jH8gF0dS3aP5oI7uY1tR9eW4qQ2"
DEFAULT_CONFIRM_MINUTES = 10


@dataclass(frozen=True)
class Commit:
    """One entry of ``show system commit``: the configuration it made and who made it, how and why."""

    lines: tuple[str, ...]
    user: str
    via: str  # cli | other
    comment: str = ""
    confirm_minutes: int | None = None
    wall_time: float = 0.0


def baseline(zones: dict[str, Zone], hostname: str) -> list[str]:
    """The SRX as the lab builds it: two zones from the inventory, management SSH into the inside."""
    outside, inside = zones["outside"].interface, zones["inside"].interface
    return [
        f"version {VERSION}",
        f"system host-name {hostname}",
        f'system root-authentication encrypted-password "{ROOT_HASH}"',
        "system login user admin uid 2000",
        "system login user admin class super-user",
        f'system login user admin authentication encrypted-password "{ADMIN_HASH}"',
        "system services ssh",
        "interfaces ge-0/0/0 unit 0 family inet address 203.0.113.2/24",
        "interfaces ge-0/0/1 unit 0 family inet address 198.51.100.1/24",
        f"security zones security-zone {outside} interfaces ge-0/0/0.0",
        f"security zones security-zone {inside} interfaces ge-0/0/1.0",
        "security address-book global address h-198.51.100.10 198.51.100.10/32",
        *(
            f"security policies from-zone {outside} to-zone {inside} policy allow-ssh-mgmt {rest}"
            for rest in (
                "match source-address any",
                "match destination-address h-198.51.100.10",
                "match application junos-ssh",
                "then permit",
            )
        ),
    ]


# The routing table ``show route`` prints, derived from the committed configuration: a Direct and a Local
# route per interface address, a Static route per ``routing-options`` route whose next-hop is on one of
# those subnets (any other static route is hidden, as Junos hides a route it cannot resolve).
_ADDRESS = re.compile(r"^interfaces (\S+) unit (\d+) family inet6? address (\S+)$")
_STATIC = re.compile(r"^routing-options (?:rib inet6\.0 )?static route (\S+) next-hop (\S+)$")
_LEGEND = "+ = Active Route, - = Last Active, * = Both"
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Route:
    """One route of ``inet.0``/``inet6.0``: where it came from (its configuration statements, which
    date it), its protocol and preference, and its next-hop lines (the first one selected)."""

    prefix: IPNetwork
    protocol: str  # Direct | Local | Static
    preference: int
    hops: tuple[str, ...]
    statements: tuple[str, ...]


def routing_table(lines: Iterable[str]) -> tuple[list[Route], list[Route]]:
    """The active and the hidden routes ``lines`` (a committed configuration) make."""
    active: list[Route] = []
    connected: list[tuple[ipaddress.IPv4Interface | ipaddress.IPv6Interface, str]] = []
    statics: dict[IPNetwork, list[tuple[str, str]]] = {}
    for line in lines:
        if match := _ADDRESS.match(line):
            interface = ipaddress.ip_interface(match.group(3))
            name = f"{match.group(1)}.{match.group(2)}"
            connected.append((interface, name))
            active.append(Route(interface.network, "Direct", 0, (f"via {name}",), (line,)))
            local = ipaddress.ip_network(interface.ip)
            active.append(Route(local, "Local", 0, (f"Local via {name}",), (line,)))
        elif match := _STATIC.match(line):
            statics.setdefault(ipaddress.ip_network(match.group(1)), []).append((match.group(2), line))
    hidden: list[Route] = []
    for prefix, hops in statics.items():
        resolved = []
        for hop, _ in hops:
            address = ipaddress.ip_address(hop)
            via = next((n for i, n in connected if address in i.network and address != i.ip), None)
            if via is not None:
                resolved.append(f"to {hop} via {via}")
        route = Route(prefix, "Static", 5, tuple(resolved), tuple(line for _, line in hops))
        (active if resolved else hidden).append(route)
    return active, hidden


def _age(seconds: float) -> str:
    # Junos writes a route's age as 00:00:10, 1d 02:03:04 or 1w2d 03:04:05
    whole = int(seconds)
    weeks, rest = divmod(whole, 7 * 86400)
    days, rest = divmod(rest, 86400)
    clock = f"{rest // 3600:02d}:{rest // 60 % 60:02d}:{rest % 60:02d}"
    if weeks:
        return f"{weeks}w{days}d {clock}"
    return f"{days}d {clock}" if days else clock


def show_route(lines: Iterable[str], prefix: IPNetwork, age: Callable[[tuple[str, ...]], float]) -> str:
    """``show route PREFIX exact``: the table's header, then the active routes for exactly ``prefix``
    (none: the header alone); ``age`` says how long the given statements have been committed."""
    active, hidden = routing_table(lines)
    table = "inet.0" if prefix.version == 4 else "inet6.0"
    active = [r for r in active if r.prefix.version == prefix.version]
    hidden = [r for r in hidden if r.prefix.version == prefix.version]
    destinations = len({r.prefix for r in active + hidden})
    total = len(active) + len(hidden)
    out = [
        "",
        f"{table}: {destinations} destinations, {total} routes ({len(active)} active, 0 holddown, "
        f"{len(hidden)} hidden)",
        _LEGEND,
    ]
    matching = sorted((r for r in active if r.prefix == prefix), key=lambda r: r.preference)
    for number, route in enumerate(matching):
        # the best route carries the prefix and the ``*``; the others line up under it
        head = f"{prefix!s:<18} *" if number == 0 else f"{'':<18}  "
        out += [""] if number == 0 else []
        out.append(f"{head}[{route.protocol}/{route.preference}] {_age(age(route.statements))}")
        for index, hop in enumerate(route.hops):
            selected = number == 0 and index == 0 and not hop.startswith("Local")
            out.append(f"{' ' * 20}{'>' if selected else ' '}  {hop}")
    return "\n".join(out)
