"""The lab's simulated Juniper SRX, line by line: candidates, commit check, commit confirmed and its timer,
rollback, faults, static routes and ``show route``. Real Netmiko against it is in
``test_lab_network_netmiko_junos_fortios``; the helpers here (``run``, ``wait_for``, ``ticking``) serve the
FortiOS tests too."""

from __future__ import annotations

import re
import time
from dataclasses import replace
from pathlib import Path

from remotehands.lab.netdev_junos import JunosDevice
from remotehands.lab.netdev_model import (
    DROP_AFTER_FIRST_LINE,
    NO_RETURN_AFTER_COMMIT,
    REJECT_SECOND_LINE,
    DeviceSession,
    NetDevice,
    Zone,
)

SCALE = 0.5  # real seconds per simulated minute
JUNOS_ZONES = {"outside": Zone("untrust"), "inside": Zone("trust")}
LEGEND = "+ = Active Route, - = Last Active, * = Both"
RULE = "set security policies from-zone untrust to-zone trust policy rh-1a2b3c4d "
JUNOS_CHANGE = [
    "set security address-book global address rh-1a2b3c4d-src 203.0.113.0/24",
    "set security address-book global address rh-1a2b3c4d-dst 198.51.100.20/32",
    "set applications application rh-1a2b3c4d protocol tcp",
    "set applications application rh-1a2b3c4d destination-port 443",
    RULE + "match source-address rh-1a2b3c4d-src",
    RULE + "match destination-address rh-1a2b3c4d-dst",
    RULE + "match application rh-1a2b3c4d",
    RULE + "then permit",
    RULE + "description RH-12",
]
JUNOS_REMOVAL = [
    "delete security policies from-zone untrust to-zone trust policy rh-1a2b3c4d",
    "delete applications application rh-1a2b3c4d",
    "delete security address-book global address rh-1a2b3c4d-src",
    "delete security address-book global address rh-1a2b3c4d-dst",
]


def srx(tmp_path: Path, scale: float = SCALE) -> JunosDevice:
    return JunosDevice("fw-srx-01", JUNOS_ZONES, tmp_path / "srx.conf", time_scale=scale)


def run(session: DeviceSession, lines: list[str]) -> list[str]:
    """Feed lines as the server would; the outputs, in order."""
    outputs = []
    for line in lines:
        reply = session.handle(line)
        outputs.append(reply.output)
        assert not reply.close, f"dropped after {line!r}"
    return outputs


def wait_for(condition: object, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("condition never came true")


def ticking(device: NetDevice) -> bool:
    device.tick(time.monotonic())
    return True


# Junos


def test_junos_change_commit_confirmed_and_confirm(tmp_path: Path) -> None:
    device = srx(tmp_path)
    before = device.running_config()
    assert (
        "\nset security policies from-zone untrust to-zone trust policy allow-ssh-mgmt then permit" in before
    )
    assert 'encrypted-password "$6$' in before
    session = device.new_session("admin")
    assert session.prompt() == "admin@fw-srx-01> "
    assert run(session, ["set cli screen-width 511"]) == ["Screen width set to 511"]
    entered = run(session, ["configure exclusive"])[0]
    assert (
        entered
        == "warning: uncommitted changes will be discarded on exit\nEntering configuration mode\n\n[edit]"
    )
    assert session.prompt() == "admin@fw-srx-01# "
    assert run(session, JUNOS_CHANGE) == ["\n[edit]"] * len(JUNOS_CHANGE)
    assert device.running_config() == before  # only the candidate changed
    assert run(session, ["commit check"]) == ["configuration check succeeds\n\n[edit]"]
    out = run(session, ['commit confirmed 5 comment "RH-12"'])[0]
    assert out.startswith(
        "commit confirmed will be automatically rolled back in 5 minutes unless confirmed\n"
    )
    assert "commit complete\n\n# commit confirmed will be rolled back in 5 minutes\n[edit]" in out
    shown = run(session, ["run show configuration | display set"])[0]
    for line in JUNOS_CHANGE:
        assert line in shown
    # a new address lands next to its siblings, as Junos orders statements
    assert (
        "h-198.51.100.10 198.51.100.10/32\nset security address-book global address rh-1a2b3c4d-src" in shown
    )
    assert run(session, ['commit comment "RH-12 confirmed"'])[0] == "commit complete\n\n[edit]"
    assert device.confirm_deadline is None
    assert run(session, ["exit configuration-mode"]) == ["Exiting configuration mode\n"]
    assert device.state_file.read_text() == device.running_config()
    history = run(session, ["show system commit"])[0]
    assert "via cli commit confirmed, rollback in 5mins\n    RH-12" in history
    policies = run(session, ["show configuration security policies | display set"])[0].split("\n")
    assert all(line.startswith("set security policies ") for line in policies)
    assert len(policies) == 9
    # and the removal
    run(session, ["configure exclusive", *JUNOS_REMOVAL, "commit"])
    assert device.running_config() == before


def test_junos_syntax_errors_change_nothing(tmp_path: Path) -> None:
    device = srx(tmp_path)
    session = device.new_session("admin")
    run(session, ["configure exclusive"])
    bad = {  # line: the word the caret must point at
        "set applications application web destination-port 70000": "70000",
        "set security address-book global address web 203.0.113.5/24": "203.0.113.5/24",  # host bits
        "set security address-book global address web 203.0.113.0": "203.0.113.0",
        "set security policies from-zone untrust to-zone trust policy p then allow": "allow",
        "set system frobnicate on": "frobnicate",
    }
    for line, word in bad.items():
        out = run(session, [line])[0]
        assert out == f"{line}\n{' ' * line.rindex(word)}^\nsyntax error.\n\n[edit]", line
    assert run(session, ["delete applications application nope"])[0].startswith(
        "warning: statement not found"
    )
    assert run(session, ["show | compare"])[0] == "\n[edit]"
    assert run(session, ["commit"])[0] == "commit complete\n\n[edit]"
    assert device.running_config() == srx(tmp_path / "fresh").running_config()


def test_junos_commit_check_refuses_unknown_zone_and_undefined_address(tmp_path: Path) -> None:
    device = srx(tmp_path)
    before = device.running_config()
    session = device.new_session("admin")
    zone = "set security policies from-zone dmz to-zone trust policy p "
    rule = "set security policies from-zone untrust to-zone trust policy p "
    cases = {
        "Security zone 'dmz' is not defined": [
            zone + "match source-address any",
            zone + "match destination-address any",
            zone + "match application junos-ssh",
            zone + "then permit",
        ],
        "Referenced address 'ghost' is not defined": [
            rule + "match source-address ghost",
            rule + "match destination-address any",
            rule + "match application junos-https",
            rule + "then permit",
        ],
        "Referenced application 'nope' is not defined": [
            rule + "match source-address any",
            rule + "match destination-address any",
            rule + "match application nope",
            rule + "then permit",
        ],
        "Missing mandatory statement: 'then'": [rule + "match source-address any"],
    }
    for problem, lines in cases.items():
        outs = run(session, ["configure exclusive", *lines, "commit check", "commit", "exit"])
        assert f"error: {problem}" in outs[-3], problem
        assert outs[-3].endswith("error: configuration check-out failed\n\n[edit]")
        assert "commit complete" not in outs[-2]
        assert device.running_config() == before


def test_junos_commit_confirmed_expires_and_rolls_back(tmp_path: Path) -> None:
    device = srx(tmp_path, scale=0.1)
    before = device.running_config()
    session = device.new_session("admin")
    run(session, ["configure exclusive", *JUNOS_CHANGE, "commit confirmed 1"])
    assert "rh-1a2b3c4d" in device.running_config()
    wait_for(lambda: ticking(device) and device.confirm_deadline is None)
    assert device.running_config() == before
    assert device.state_file.read_text() == before
    # the private candidate follows the rollback: nothing left to compare
    assert run(session, ["show | compare"])[0] == "\n[edit]"


def test_junos_rollback_0_and_1(tmp_path: Path) -> None:
    device = srx(tmp_path)
    before = device.running_config()
    session = device.new_session("admin")
    outs = run(session, ["configure exclusive", *JUNOS_CHANGE, "rollback 0", "show | compare", "exit"])
    assert outs[-3] == "load complete\n\n[edit]"
    assert outs[-2] == "\n[edit]"
    run(session, ["configure exclusive", *JUNOS_CHANGE, "commit confirmed 5"])
    changed = device.running_config()
    assert changed != before
    outs = run(session, ["rollback 1", "commit", "exit configuration-mode"])
    assert outs[0] == "load complete\n\n# commit confirmed will be rolled back in 5 minutes\n[edit]"
    assert device.running_config() == before
    assert device.confirm_deadline is None
    assert len(device.commits) == 3


def test_junos_private_candidate_dies_with_session(tmp_path: Path) -> None:
    device = srx(tmp_path)
    session = device.new_session("admin")
    run(session, ["configure private", JUNOS_CHANGE[0]])
    session.closed()
    again = device.new_session("admin")
    assert run(again, ["configure private", "show | compare"])[1] == "\n[edit]"


def test_junos_shared_candidate_asks_before_exit(tmp_path: Path) -> None:
    device = srx(tmp_path)
    session = device.new_session("admin")
    run(session, ["configure", JUNOS_CHANGE[0]])
    assert run(session, ["exit"]) == ["The configuration has been changed but not committed"]
    assert session.prompt() == "Exit with uncommitted changes? [yes,no] (yes) "
    assert run(session, ["yes"]) == ["Exiting configuration mode\n"]
    assert session.prompt() == "admin@fw-srx-01> "
    assert run(session, ["configure private"])[0].startswith("error: shared configuration database modified")


def test_junos_refuses_commit_confirmed_in_private_mode_and_exclusive_locks(tmp_path: Path) -> None:
    device = srx(tmp_path)
    session = device.new_session("admin")
    out = run(session, ["configure private", *JUNOS_CHANGE, "commit confirmed 5"])[-1]
    assert out.startswith("error: 'commit confirmed' is not supported in private mode")
    assert device.confirm_deadline is None and len(device.commits) == 1
    holder, other = device.new_session("admin"), device.new_session("ops")
    run(holder, ["configure exclusive"])
    assert run(other, ["configure exclusive"])[0].startswith("error: configuration database locked by")
    holder.closed()
    assert run(other, ["configure exclusive"])[0].startswith("warning: uncommitted changes will be discarded")


def test_junos_faults(tmp_path: Path) -> None:
    device = srx(tmp_path)
    before = device.running_config()
    session = device.new_session("admin")
    device.faults.add(REJECT_SECOND_LINE)
    outs = run(session, ["configure exclusive", *JUNOS_CHANGE[:3]])
    assert "syntax error." in outs[2]
    assert "syntax error." not in outs[1] + outs[3]
    assert REJECT_SECOND_LINE not in device.faults
    compared = run(session, ["show | compare"])[0]
    assert "rh-1a2b3c4d-src" in compared and "rh-1a2b3c4d-dst" not in compared
    run(session, ["rollback 0", "exit"])

    device.faults.add(DROP_AFTER_FIRST_LINE)
    run(session, ["configure exclusive"])
    assert session.handle(JUNOS_CHANGE[0]).close
    session.closed()
    assert device.running_config() == before

    device.faults.add(NO_RETURN_AFTER_COMMIT)
    session = device.new_session("admin")
    run(session, ["configure exclusive", *JUNOS_CHANGE])
    reply = session.handle("commit confirmed 1")
    assert reply.close and "commit complete" in reply.output
    assert not device.accepting and "rh-1a2b3c4d" in device.running_config()
    device.tick(time.monotonic() + 2 * SCALE)
    assert device.accepting and device.running_config() == before


# Junos static routes (a customer's additional addresses)

ROUTE = "set routing-options static route 198.51.100.20/32 next-hop 198.51.100.10"
ROUTE6 = "set routing-options rib inet6.0 static route 2001:db8:20::/48 next-hop 2001:db8:ffff::10"
HEADER = "\ninet.0: {} destinations, {} routes ({} active, 0 holddown, {} hidden)\n" + LEGEND


def test_junos_network_static_route_applies_shows_and_deletes(tmp_path: Path) -> None:
    device = srx(tmp_path)
    before = device.running_config()
    session = device.new_session("admin")
    v6_interface = "set interfaces ge-0/0/1 unit 0 family inet6 address 2001:DB8:FFFF::1/64"
    unresolved = "set routing-options static route 192.0.2.0/24 next-hop 10.9.9.9"  # on no subnet: hidden
    typed6 = "set routing-options rib inet6.0 static route 2001:DB8:20:0::/48 next-hop 2001:db8:FFFF::10"
    outs = run(
        session, ["configure exclusive", ROUTE, typed6, v6_interface, unresolved, "show | compare", "commit"]
    )
    assert outs[1:5] == ["\n[edit]"] * 4
    assert "[edit routing-options static route 198.51.100.20/32]\n+  next-hop 198.51.100.10;" in outs[5]
    assert outs[6] == "commit complete\n\n[edit]"
    shown = device.running_config()
    assert f"\n{ROUTE}\n" in shown and f"\n{ROUTE6}\n" in shown  # IPv6 as Junos writes it: compressed, lower
    assert "set interfaces ge-0/0/1 unit 0 family inet6 address 2001:db8:ffff::1/64\n" in shown
    route = run(session, ["run show route 198.51.100.20/32 exact"])[0]
    assert re.fullmatch(
        re.escape(HEADER.format(6, 6, 5, 1) + "\n\n198.51.100.20/32   *[Static/5] ")
        + r"00:00:0\d\n                    >  to 198.51.100\.10 via ge-0/0/1\.0\n\n\[edit\]",
        route,
    ), route
    v6 = run(session, ["run show route 2001:db8:20::/48 exact"])[0]
    assert "inet6.0: 3 destinations, 3 routes (3 active, 0 holddown, 0 hidden)" in v6
    assert "2001:db8:20::/48   *[Static/5] " in v6 and ">  to 2001:db8:ffff::10 via ge-0/0/1.0" in v6
    assert run(session, ["run show route 192.0.2.0/24 exact"])[0] == HEADER.format(6, 6, 5, 1) + "\n\n[edit]"
    direct = run(session, ["run show route 198.51.100.0/24 exact"])[0]
    assert "198.51.100.0/24    *[Direct/0] " in direct and ">  via ge-0/0/1.0" in direct
    # the age counts from the commit that made the route: Junos writes weeks and days before the clock
    device.commits = [replace(c, wall_time=c.wall_time - 9 * 86400 - 3723) for c in device.commits]
    assert re.search(
        r"\*\[Static/5\] 1w2d 01:02:0\d\n", run(session, ["run show route 198.51.100.20/32 exact"])[0]
    )
    removal = [
        "delete routing-options static route 198.51.100.20/32",
        "delete routing-options rib inet6.0 static route 2001:db8:20::/48",
        "delete interfaces ge-0/0/1 unit 0 family inet6",
        "delete routing-options static route 192.0.2.0/24",
        "commit",
        "exit",
    ]
    assert run(session, removal)[:4] == ["\n[edit]"] * 4
    assert device.running_config() == before
    assert run(session, ["show route 198.51.100.20/32 exact"]) == [HEADER.format(4, 4, 4, 0)]


def test_junos_network_static_route_syntax_errors_change_nothing(tmp_path: Path) -> None:
    device = srx(tmp_path)
    before = device.running_config()
    session = device.new_session("admin")
    run(session, ["configure exclusive"])
    static = "set routing-options static route "
    bad = {  # line: the word the caret must point at
        static + "198.51.100.20/24 next-hop 198.51.100.10": "198.51.100.20/24",  # host bits
        static + "198.51.100.20 next-hop 198.51.100.10": "198.51.100.20",  # no length
        static + "198.51.100.300/32 next-hop 198.51.100.10": "198.51.100.300/32",
        static + "2001:db8::/48 next-hop 2001:db8::1": "2001:db8::/48",  # IPv6 lives in rib inet6.0
        static + "198.51.100.20/32 next-hop 2001:db8::1": "2001:db8::1",  # wrong family
        static + "198.51.100.20/32 next-hop gw1": "gw1",
        "set routing-options rib inet6.0 static route 2001:db8::/48 next-hop 198.51.100.10": "198.51.100.10",
    }
    for line, word in bad.items():
        out = run(session, [line])[0]
        assert out == f"{line}\n{' ' * line.rindex(word)}^\nsyntax error.\n\n[edit]", line
    warning = run(session, ["delete routing-options static route 198.51.100.20/32"])[0]
    assert warning.startswith("warning: statement not found")
    assert run(session, ["show | compare", "commit"]) == ["\n[edit]", "commit complete\n\n[edit]"]
    assert run(session, ["run show route 198.51.100.3000/32 exact"])[0].endswith("^\nsyntax error.\n\n[edit]")
    assert device.running_config() == before
    # route lines count for the faults like any other change (the second of a configuration session)
    device.faults.add(REJECT_SECOND_LINE)
    outs = run(
        session,
        [
            "exit",
            "configure exclusive",
            ROUTE,
            ROUTE.replace("198.51.100.20/32", "198.51.100.21/32"),
            "show | compare",
        ],
    )
    assert outs[2] == "\n[edit]" and "syntax error." in outs[3]
    assert "198.51.100.20/32" in outs[4] and "198.51.100.21/32" not in outs[4]


def test_junos_network_static_route_commit_confirmed(tmp_path: Path) -> None:
    device = srx(tmp_path, scale=0.1)
    before = device.running_config()
    session = device.new_session("admin")
    run(session, ["configure exclusive", ROUTE, "commit confirmed 1", "commit"])
    time.sleep(0.15)  # past the first commit's deadline: confirmed, nothing rolls back
    device.tick(time.monotonic())
    assert f"\n{ROUTE}\n" in device.running_config()
    assert "*[Static/5]" in run(session, ["run show route 198.51.100.20/32 exact"])[0]
    run(session, ["delete routing-options static route 198.51.100.20/32", "commit"])
    assert device.running_config() == before
    run(session, [ROUTE, "commit confirmed 1"])
    assert f"\n{ROUTE}\n" in device.running_config()
    wait_for(lambda: ticking(device) and device.confirm_deadline is None)
    assert device.running_config() == before
    assert "*[Static/5]" not in run(session, ["run show route 198.51.100.20/32 exact"])[0]
