"""A firewall rule in each platform's own syntax, and how to find it in that platform's running config.

``change(rule, device, config)`` gives the configuration lines that add or remove the rule (removal reads
the running config: an ASA remark or a FortiOS policy id is only known there) and ``parts(...)`` says how
many of the rule's parts the running config holds, so the pipeline can tell present, absent and half-done.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass

from remotehands.errors import InvalidRequest
from remotehands.inventory.ip_plan import IpNetwork
from remotehands.inventory.models import NetworkDevice
from remotehands.network.rules import FirewallRule


@dataclass(frozen=True)
class Change:
    """Config lines to send, in order; ``inverse[i]`` undoes ``lines[i]`` (None: a mode line)."""

    lines: tuple[str, ...]
    inverse: tuple[str | None, ...]


def _acl(rule: FirewallRule, device: NetworkDevice) -> str:
    zone = device.zones[rule.from_zone]
    if not zone.acl:
        raise InvalidRequest(
            f"zone {rule.from_zone!r} of {device.name} names no ACL",
            fix=f"add acl: <name of the ACL bound inbound to {zone.interface}> to the zone in the inventory",
        )
    return zone.acl


# --- Cisco ASA: access-list lines, masks, ``host``; removal is ``no`` + the line --------------------------


def _asa_address(net: IpNetwork | None) -> str:
    if net is None:
        return "any"
    if net.num_addresses == 1:
        return f"host {net.network_address}"
    return f"{net.network_address} {net.netmask}" if net.version == 4 else str(net)


def _ports(rule: FirewallRule) -> str:
    if rule.ports is None:
        return ""
    if rule.ports.first == rule.ports.last:
        return f" eq {rule.ports.first}"
    return f" range {rule.ports.first} {rule.ports.last}"


def _asa_ace(rule: FirewallRule, device: NetworkDevice) -> str:
    src, dst = _asa_address(rule.source), _asa_address(rule.destination)
    return (
        f"access-list {_acl(rule, device)} extended {rule.action} {rule.protocol} {src} {dst}{_ports(rule)}"
    )


def _asa_change(rule: FirewallRule, device: NetworkDevice, config: str) -> Change:
    acl, ace = _acl(rule, device), _asa_ace(rule, device)
    if rule.op == "add":
        remark = f"access-list {acl} remark {rule.name} {rule.ticket_id}"
        return Change((remark, ace), (f"no {remark}", f"no {ace}"))
    present = config_lines(config)
    remarks = [line for line in present if line.startswith(f"access-list {acl} remark {rule.name}")]
    lines = [f"no {line}" for line in [ace, *remarks] if line in present]
    return Change(tuple(lines), tuple(line.removeprefix("no ") for line in lines))


def _asa_parts(rule: FirewallRule, device: NetworkDevice, config: str) -> tuple[int, int]:
    return (int(_asa_ace(rule, device) in config_lines(config)), 1)


# --- Cisco IOS: a named extended ACL, wildcard masks; entries inside its sub-mode ------------------------


def _ios_address(net: IpNetwork | None) -> str:
    if net is None:
        return "any"
    if net.num_addresses == 1:
        return f"host {net.network_address}"
    return f"{net.network_address} {net.hostmask}" if net.version == 4 else str(net)


def _ios_header(rule: FirewallRule, device: NetworkDevice) -> str:
    if rule.version != 4:
        # The zone names one (IPv4) ACL; IPv6 needs its own, bound with ipv6 traffic-filter.
        raise InvalidRequest(
            "request.params: IPv6 rules on cisco_ios are not supported yet",
            fix="ask for the IPv4 rule, or make the IPv6 change by hand",
        )
    return f"ip access-list extended {_acl(rule, device)}"


def _ios_entry(rule: FirewallRule) -> str:
    src, dst = _ios_address(rule.source), _ios_address(rule.destination)
    protocol = "ipv6" if rule.protocol == "ip" and rule.version == 6 else rule.protocol
    return f"{rule.action} {protocol} {src} {dst}{_ports(rule)}"


def _ios_block(config: str, header: str) -> list[str]:
    block: list[str] = []
    inside = False
    for line in config.replace("\r\n", "\n").split("\n"):
        if not line.startswith(" "):
            inside = line.strip() == header
            continue
        if inside:
            block.append(line.strip())
    return block


def _ios_change(rule: FirewallRule, device: NetworkDevice, config: str) -> Change:
    header, entry = _ios_header(rule, device), _ios_entry(rule)
    if rule.op == "add":
        remark = f"remark {rule.name} {rule.ticket_id}"
        return Change((header, remark, entry), (header, f"no {remark}", f"no {entry}"))
    block = _ios_block(config, header)
    remarks = [line for line in block if line.startswith(f"remark {rule.name}")]
    body = [f"no {line}" for line in [entry, *remarks] if line in block]
    if not body:
        return Change((), ())
    return Change((header, *body), (header, *(line.removeprefix("no ") for line in body)))


def _ios_parts(rule: FirewallRule, device: NetworkDevice, config: str) -> tuple[int, int]:
    return (int(_ios_entry(rule) in _ios_block(config, _ios_header(rule, device))), 1)


# --- Junos (SRX): address-book entries, an application and a policy, as display-set lines ----------------


def _junos_lines(rule: FirewallRule, device: NetworkDevice) -> list[str]:
    name = rule.name
    lines: list[str] = []
    addresses = {}
    for role, net in (("src", rule.source), ("dst", rule.destination)):
        if net is None:
            addresses[role] = "any"
        else:
            addresses[role] = f"{name}-{role}"
            lines.append(f"set security address-book global address {name}-{role} {net}")
    application = "any"
    if rule.protocol != "ip":
        application = name
        lines.append(f"set applications application {name} protocol {rule.protocol}")
        if rule.ports is not None:
            lines.append(f"set applications application {name} destination-port {rule.ports}")
    from_zone = device.zones[rule.from_zone].interface
    to_zone = device.zones[rule.to_zone].interface
    policy = f"set security policies from-zone {from_zone} to-zone {to_zone} policy {name}"
    action = {"permit": "permit", "deny": "deny"}[rule.action]
    lines += [
        f"{policy} match source-address {addresses['src']}",
        f"{policy} match destination-address {addresses['dst']}",
        f"{policy} match application {application}",
        f"{policy} then {action}",
        f"{policy} description {rule.ticket_id}",
    ]
    return lines


def _junos_change(rule: FirewallRule, device: NetworkDevice, config: str) -> Change:
    lines = _junos_lines(rule, device)
    if rule.op == "add":
        return Change(tuple(lines), tuple(None for _ in lines))
    present = config_lines(config)
    from_zone = device.zones[rule.from_zone].interface
    to_zone = device.zones[rule.to_zone].interface
    name = rule.name
    deletes = [
        f"security policies from-zone {from_zone} to-zone {to_zone} policy {name}",
        f"applications application {name}",
        f"security address-book global address {name}-src",
        f"security address-book global address {name}-dst",
    ]
    found = [path for path in deletes if any(line.startswith(f"set {path} ") for line in present)]
    return Change(tuple(f"delete {path}" for path in found), tuple(None for _ in found))


def _junos_parts(rule: FirewallRule, device: NetworkDevice, config: str) -> tuple[int, int]:
    present = set(config_lines(config))
    # The description carries the ticket that added the rule; another ticket's identical rule is present.
    wanted = [line for line in _junos_lines(rule, device) if " description " not in line]
    return (sum(line in present for line in wanted), len(wanted))


# --- FortiOS: address objects, a custom service, a policy found by name ----------------------------------


def fortios_blocks(config: str, section: str) -> dict[str, list[str]]:
    """``edit`` key -> its ``set`` lines, of ``config <section>`` in ``config``."""
    blocks: dict[str, list[str]] = {}
    inside, key = False, None
    for raw in config.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if raw.startswith("config "):
            inside = line == f"config {section}"
        elif inside and line.startswith("edit "):
            key = line[5:].strip().strip('"')
            blocks[key] = []
        elif inside and key is not None and line.startswith("set "):
            blocks[key].append(line)
        elif raw.startswith("end"):
            inside = False
    return blocks


def _fortios_address(net: IpNetwork) -> str:
    if net.version != 4:
        raise InvalidRequest(
            "request.params: IPv6 rules on fortinet are not supported yet",
            fix="ask for the IPv4 rule, or make the IPv6 change by hand",
        )
    return f"set subnet {net.network_address} {net.netmask}"


def _fortios_plan(rule: FirewallRule, device: NetworkDevice) -> tuple[list[str], list[str], list[str]]:
    """(address lines, service lines, policy set lines)."""
    name = rule.name
    addresses: list[str] = []
    refs = {}
    for role, net in (("src", rule.source), ("dst", rule.destination)):
        if net is None:
            refs[role] = "all"
        else:
            refs[role] = f"{name}-{role}"
            addresses += [f'edit "{name}-{role}"', _fortios_address(net), "next"]
    service: list[str] = []
    if rule.protocol == "ip":
        service_name = "ALL"
    else:
        service_name = name
        if rule.protocol == "icmp":
            body = "set protocol ICMP"
        else:
            body = f"set {rule.protocol}-portrange {rule.ports or '1-65535'}"
        service = [f'edit "{name}"', body, "next"]
    policy = [
        f'set name "{name}"',
        f'set srcintf "{device.zones[rule.from_zone].interface}"',
        f'set dstintf "{device.zones[rule.to_zone].interface}"',
        f'set srcaddr "{refs["src"]}"',
        f'set dstaddr "{refs["dst"]}"',
        f"set action {'accept' if rule.action == 'permit' else 'deny'}",
        'set schedule "always"',
        f'set service "{service_name}"',
        f'set comments "{rule.ticket_id}"',
    ]
    return addresses, service, policy


def _fortios_change(rule: FirewallRule, device: NetworkDevice, config: str) -> Change:
    addresses, service, policy = _fortios_plan(rule, device)
    lines: list[str] = []
    if rule.op == "add":
        if addresses:
            lines += ["config firewall address", *addresses, "end"]
        if service:
            lines += ["config firewall service custom", *service, "end"]
        lines += ["config firewall policy", "edit 0", *policy, "next", "end"]
        return Change(tuple(lines), tuple(None for _ in lines))
    policies = fortios_blocks(config, "firewall policy")
    ids = [key for key, sets in policies.items() if f'set name "{rule.name}"' in sets]
    if ids:
        lines += ["config firewall policy", *(f"delete {key}" for key in ids), "end"]
    if rule.name in fortios_blocks(config, "firewall service custom"):
        lines += ["config firewall service custom", f'delete "{rule.name}"', "end"]
    existing = fortios_blocks(config, "firewall address")
    names = [f"{rule.name}-{role}" for role in ("src", "dst") if f"{rule.name}-{role}" in existing]
    if names:
        lines += ["config firewall address", *(f'delete "{n}"' for n in names), "end"]
    return Change(tuple(lines), tuple(None for _ in lines))


def _fortios_parts(rule: FirewallRule, device: NetworkDevice, config: str) -> tuple[int, int]:
    _, _, policy = _fortios_plan(rule, device)
    wanted = [line for line in policy if not line.startswith("set comments")]
    named = [sets for sets in fortios_blocks(config, "firewall policy").values() if wanted[0] in sets]
    return (max((sum(line in sets for line in wanted) for sets in named), default=0), len(wanted))


def config_lines(config: str) -> list[str]:
    return [line.strip() for line in config.replace("\r\n", "\n").split("\n") if line.strip()]


_Render = Callable[[FirewallRule, NetworkDevice, str], Change]
_Parts = Callable[[FirewallRule, NetworkDevice, str], tuple[int, int]]
_BY_PLATFORM: dict[str, tuple[_Render, _Parts]] = {
    "cisco_asa": (_asa_change, _asa_parts),
    "cisco_ios": (_ios_change, _ios_parts),
    "juniper_junos": (_junos_change, _junos_parts),
    "fortinet": (_fortios_change, _fortios_parts),
}


def change(rule: FirewallRule, device: NetworkDevice, config: str) -> Change:
    """The config lines that make ``rule`` happen on ``device`` whose running config is ``config``."""
    return _BY_PLATFORM[device.platform][0](rule, device, config)


def parts(rule: FirewallRule, device: NetworkDevice, config: str) -> tuple[int, int]:
    """(how many of the rule's parts ``config`` holds, how many it has)."""
    return _BY_PLATFORM[device.platform][1](rule, device, config)


def is_present(rule: FirewallRule, device: NetworkDevice, config: str) -> bool:
    found, total = parts(rule, device, config)
    return found == total


def is_absent(rule: FirewallRule, device: NetworkDevice, config: str) -> bool:
    """Nothing of the rule is left in ``config``: removing it would send no line."""
    return not change(dataclasses.replace(rule, op="remove"), device, config).lines


def is_done(rule: FirewallRule, device: NetworkDevice, config: str) -> bool:
    """``config`` is as the rule's op wants it: the rule present (add) or gone (remove)."""
    return is_present(rule, device, config) if rule.op == "add" else is_absent(rule, device, config)


def packet_trace(rule: FirewallRule, device: NetworkDevice) -> str | None:
    """The ASA ``packet-tracer`` command that proves an added rule, or None where there is no such tool."""
    if device.platform != "cisco_asa" or rule.op != "add":
        return None
    interface = device.zones[rule.from_zone].interface
    src, dst, port = rule.probe()
    if rule.protocol == "icmp":
        return f"packet-tracer input {interface} icmp {src} 8 0 {dst}"
    protocol = "tcp" if rule.protocol == "ip" else rule.protocol
    return f"packet-tracer input {interface} {protocol} {src} 1025 {dst} {port}"


def trace_allowed(output: str) -> bool | None:
    """What an ASA packet-tracer output says: True for allow, False for drop, None if it says neither."""
    match = re.search(r"^Action:\s*(allow|drop)", output, re.MULTILINE)
    return None if match is None else match.group(1) == "allow"
