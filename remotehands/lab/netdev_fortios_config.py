"""A FortiOS configuration tree and the lab baseline built in it: sections by path, single-object sections holding ordered settings and
table sections holding named (or, for policies and static routes, numbered) entries, and what each setting may hold.

``check_setting`` answers like FortiOS does when a ``set`` is refused: a ``Refusal`` names which error
form the CLI prints and the word it points at.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from remotehands.lab.netdev_model import Zone

Settings = dict[str, list[str]]
TABLES = (
    "system admin",
    "system interface",
    "firewall address",
    "firewall address6",
    "firewall service custom",
    "firewall schedule recurring",
    "firewall policy",
    "router static",
)
# Tables whose entries are numbered (``edit 0`` takes the next free number, ``show`` writes ``edit 3``).
NUMBERED = ("firewall policy", "router static")
SINGLES = ("system global", "system console")
ORDER = ("system global", "system console", *TABLES)
# Values FortiOS shows in double quotes: names and references; enums and numbers stay bare.
QUOTED = frozenset(
    {"name", "srcintf", "dstintf", "srcaddr", "dstaddr", "service", "schedule", "comments", "comment"}
    | {"hostname", "alias", "accprofile", "vdom", "category", "description", "device"}
)
_PORTS = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?$")
# A realistic FortiOS SHA256 admin password hash: the redactor must recognise and hide it.
ADMIN_ENC = "SH2kz9Qm1L3pV7xR2tY5uW8eB4nC6dF0gH1jK3lM5oP7qS9vX2zA4cE6iG8rT0yU1wQ3sD5fJ7hN9bV="
UUIDS = ("firewall address", "firewall address6", "firewall schedule recurring", "firewall policy")
_UUID_SPACE = uuid.UUID("6ba7b812-9dad-11d1-80b4-00c04fd430c8")


@dataclass
class Section:
    """One ``config PATH`` block: ``settings`` for a single object, ``entries`` for a table."""

    path: str
    settings: Settings = field(default_factory=dict)
    entries: dict[str, Settings] = field(default_factory=dict)

    @property
    def table(self) -> bool:
        """True for a table section (``edit``/``next``/``delete``)."""
        return self.path in TABLES


Tree = dict[str, Section]


@dataclass(frozen=True)
class Refusal:
    """Why a line is refused: ``parse`` (unknown command or key, -61), ``value`` (bad value, -8),
    ``datasource`` (reference to a missing entry, -3) or ``used`` (entry still referenced, -23)."""

    kind: str
    word: str = ""

    def message(self) -> str:
        """The lines FortiOS prints for this refusal."""
        if self.kind == "datasource":
            return f"entry not found in datasource\n\nvalue parse error before '{self.word}'\nCommand fail. Return code -3"
        if self.kind == "used":
            return "entry is used\nCommand fail. Return code -23"
        if self.kind == "value":
            return f"value parse error before '{self.word}'\nCommand fail. Return code -8"
        return f"command parse error before '{self.word}'\nCommand fail. Return code -61"


def entry_uuid(path: str, key: str) -> str:
    """The uuid FortiOS gives a new address or policy; derived from its name so a re-created entry (and
    therefore the configuration text) comes back byte-identical."""
    return str(uuid.uuid5(_UUID_SPACE, f"{path}/{key}"))


def _subnet(values: list[str]) -> list[str] | Refusal:
    text = " ".join(values)
    try:
        if len(values) == 1 and "/" in values[0]:
            network = ipaddress.IPv4Network(values[0], strict=False)
        elif len(values) == 2:
            network = ipaddress.IPv4Network(f"{values[0]}/{values[1]}", strict=False)
            if str(network.netmask) != ipaddress.IPv4Address(values[1]).exploded:
                raise ValueError(text)
        else:
            return Refusal("value", values[0] if values else "")
    except ValueError:
        return Refusal("value", values[-1] if values else "")
    return [str(network.network_address), str(network.netmask)]


def _interface_ip(values: list[str]) -> list[str] | Refusal:
    if len(values) != 2:
        return Refusal("value", values[0] if values else "")
    try:
        ipaddress.IPv4Interface(f"{values[0]}/{values[1]}")
    except ValueError:
        return Refusal("value", values[1])
    return values


def _ip4(values: list[str]) -> list[str] | Refusal:
    try:
        if len(values) != 1:
            raise ValueError
        return [str(ipaddress.IPv4Address(values[0]))]
    except ValueError:
        return Refusal("value", values[0] if values else "")


def _ip6(values: list[str]) -> list[str] | Refusal:
    try:
        if len(values) != 1:
            raise ValueError
        return [str(ipaddress.IPv6Network(values[0], strict=True))]
    except ValueError:
        return Refusal("value", values[0] if values else "")


def _ports(values: list[str]) -> list[str] | Refusal:
    for value in values or [""]:
        match = _PORTS.match(value)
        low = int(match.group(1)) if match else 0
        high = int(match.group(2) or low) if match else 0
        if not 1 <= low <= high <= 65535:
            return Refusal("value", value)
    return values


def _choice(*allowed: str) -> Callable[[list[str]], list[str] | Refusal]:
    def check(values: list[str]) -> list[str] | Refusal:
        if len(values) != 1 or values[0] not in allowed:
            return Refusal("value", values[0] if values else "")
        return values

    return check


def _number(low: int, high: int) -> Callable[[list[str]], list[str] | Refusal]:
    def check(values: list[str]) -> list[str] | Refusal:
        if len(values) != 1 or not values[0].isdigit() or not low <= int(values[0]) <= high:
            return Refusal("value", values[0] if values else "")
        return values

    return check


def _text(values: list[str]) -> list[str] | Refusal:
    return [" ".join(values)] if values else Refusal("value", "")


def _words(values: list[str]) -> list[str] | Refusal:
    return values or Refusal("value", "")


def _word(values: list[str]) -> list[str] | Refusal:
    return values if len(values) == 1 else Refusal("value", values[1] if values else "")


Check = Callable[[list[str]], list[str] | Refusal]
# For references: key -> the section whose entries it must name.
REFERENCES: dict[str, dict[str, str]] = {
    "firewall policy": {
        "srcintf": "system interface",
        "dstintf": "system interface",
        "srcaddr": "firewall address",
        "dstaddr": "firewall address",
        "service": "firewall service custom",
        "schedule": "firewall schedule recurring",
    },
    "router static": {"device": "system interface"},
}
KEYS: dict[str, dict[str, Check]] = {
    "system global": {
        "alias": _text,
        "hostname": _text,
        "timezone": _number(0, 87),
        "admintimeout": _number(1, 480),
        "cfg-save": _choice("automatic", "manual", "revert"),
        "cfg-revert-timeout": _number(10, 4294967295),
    },
    "system console": {"output": _choice("standard", "more"), "baudrate": _number(9600, 115200)},
    "system admin": {"accprofile": _text, "vdom": _text, "password": _words, "trusthost1": _words},
    "system interface": {
        "vdom": _text,
        "ip": _interface_ip,
        "allowaccess": _words,
        "type": _choice("physical", "vlan", "loopback"),
        "role": _choice("lan", "wan", "dmz", "undefined"),
        "snmp-index": _number(1, 65535),
        "alias": _text,
        "description": _text,
    },
    "firewall address": {"uuid": _text, "subnet": _subnet, "comment": _text, "associated-interface": _text},
    "firewall address6": {"uuid": _text, "ip6": _ip6, "comment": _text},
    "firewall service custom": {
        "category": _text,
        "protocol": _choice("TCP/UDP/SCTP", "ICMP", "ICMP6", "IP"),
        "tcp-portrange": _ports,
        "udp-portrange": _ports,
        "comment": _text,
    },
    "firewall schedule recurring": {"uuid": _text, "day": _words},
    "firewall policy": {
        "name": _text,
        "uuid": _text,
        "srcintf": _words,
        "dstintf": _words,
        "action": _choice("accept", "deny"),
        "srcaddr": _words,
        "dstaddr": _words,
        "schedule": _words,
        "service": _words,
        "logtraffic": _choice("all", "utm", "disable"),
        "nat": _choice("enable", "disable"),
        "status": _choice("enable", "disable"),
        "comments": _text,
    },
    "router static": {
        "status": _choice("enable", "disable"),
        "dst": _subnet,
        "gateway": _ip4,
        "distance": _number(1, 255),
        "device": _word,
        "comment": _text,
    },
}


def check_setting(tree: Tree, path: str, key: str, values: list[str]) -> list[str] | Refusal:
    """The stored form of ``set KEY VALUES`` in section ``path``, or why FortiOS refuses it."""
    check = KEYS.get(path, {}).get(key)
    if check is None:
        return Refusal("parse", key)
    target = REFERENCES.get(path, {}).get(key)
    if target is not None:
        for value in values or [""]:
            if value not in tree[target].entries:
                return Refusal("datasource", value)
    return check(values)


def referrers(tree: Tree, path: str, key: str) -> list[str]:
    """Entries (policies, static routes) that name entry ``key`` of section ``path``: FortiOS will not
    delete it while they do."""
    users = []
    for section, references in REFERENCES.items():
        for policy, settings in tree[section].entries.items():
            if any(target == path and key in settings.get(k, []) for k, target in references.items()):
                users.append(policy)
    return users


def _setting(key: str, values: list[str]) -> str:
    shown = " ".join(f'"{v}"' for v in values) if key in QUOTED else " ".join(values)
    return f"set {key} {shown}"


def render(section: Section, only: str | None = None) -> list[str]:
    """A section as ``show`` prints it (``only``: just that entry, as ``show`` inside ``edit`` does)."""
    lines = [f"config {section.path}"]
    if not section.table:
        lines += [f"    {_setting(k, v)}" for k, v in section.settings.items()]
    for key, settings in section.entries.items():
        if only is not None and key != only:
            continue
        lines.append(f"    edit {key}" if section.path in NUMBERED else f'    edit "{key}"')
        lines += [f"        {_setting(k, v)}" for k, v in settings.items()]
        lines.append("    next")
    lines.append("end")
    return lines


def new_entry(path: str, key: str, **settings: list[str]) -> tuple[str, Settings]:
    head = {"uuid": [entry_uuid(path, key)]} if path in UUIDS else {}
    return key, head | {k.replace("_", "-"): v for k, v in settings.items()}


def baseline(zones: dict[str, Zone], hostname: str, revert_timeout: int) -> Tree:
    """The FortiGate as the lab builds it: revert save mode, two ports from the inventory, SSH inwards."""
    outside, inside = zones["outside"].interface, zones["inside"].interface
    tree = {path: Section(path) for path in ORDER}
    tree["system global"].settings = {
        "alias": ["FortiGate-VM64"],
        "hostname": [hostname],
        "timezone": ["04"],
        "cfg-save": ["revert"],
        "cfg-revert-timeout": [str(revert_timeout)],
    }
    tree["system console"].settings = {"output": ["standard"]}
    rows: dict[str, list[tuple[str, Settings]]] = {
        "system admin": [
            new_entry(
                "system admin",
                "admin",
                accprofile=["super_admin"],
                vdom=["root"],
                password=["ENC", ADMIN_ENC],
            )
        ],
        "system interface": [
            new_entry(
                "system interface",
                outside,
                vdom=["root"],
                ip=["203.0.113.2", "255.255.255.0"],
                allowaccess=["ping", "https", "ssh"],
                type=["physical"],
                role=["wan"],
                snmp_index=["1"],
            ),
            new_entry(
                "system interface",
                inside,
                vdom=["root"],
                ip=["198.51.100.1", "255.255.255.0"],
                allowaccess=["ping"],
                type=["physical"],
                role=["lan"],
                snmp_index=["2"],
            ),
        ],
        "firewall address": [
            new_entry("firewall address", "all"),
            new_entry("firewall address", "h-198.51.100.10", subnet=["198.51.100.10", "255.255.255.255"]),
        ],
        "firewall address6": [new_entry("firewall address6", "all")],
        "firewall service custom": [
            new_entry("firewall service custom", "ALL", category=["General"], protocol=["IP"]),
            new_entry("firewall service custom", "HTTPS", category=["Web Access"], tcp_portrange=["443"]),
            new_entry("firewall service custom", "SSH", category=["Remote Access"], tcp_portrange=["22"]),
        ],
        "firewall schedule recurring": [
            new_entry(
                "firewall schedule recurring",
                "always",
                day=["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"],
            )
        ],
        # id 2: policy 1 was deleted long ago, as on most real boxes; ``edit 0`` then gives 3
        "firewall policy": [
            new_entry(
                "firewall policy",
                "2",
                name=["allow-ssh-mgmt"],
                srcintf=[outside],
                dstintf=[inside],
                action=["accept"],
                srcaddr=["all"],
                dstaddr=["h-198.51.100.10"],
                schedule=["always"],
                service=["SSH"],
            )
        ],
    }
    for path, entries in rows.items():
        tree[path].entries = {key: in_schema_order(path, settings) for key, settings in entries}
    return tree


def in_schema_order(path: str, settings: Settings) -> Settings:
    """``settings`` in the order FortiOS shows them (its schema's), whatever order they were typed in."""
    return {k: settings[k] for k in KEYS[path] if k in settings}
