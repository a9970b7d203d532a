"""Routes, static NAT and secondary addresses on the lab's simulated Cisco ASA and IOS devices, driven at the
wire by real Netmiko: each command applies and shows, its ``no`` form restores the configuration byte for
byte, and bad input changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from remotehands.lab.netdev_asa import AsaDevice
from remotehands.lab.netdev_ios import IosDevice
from remotehands.lab.netdev_model import REJECT_SECOND_LINE
from remotehands.lab.netdev_sim import NetDevServer
from tests.test_lab_network_sim import (
    ASA_INVALID,
    ASA_ZONES,
    IOS_INVALID,
    IOS_ZONES,
    PASSWORD,
    SCALE,
    USER,
    Lab,
)

ASA_DEFAULT_ROUTE = "route outside 0.0.0.0 0.0.0.0 203.0.113.1 1"
ASA_HOST_ROUTE = "route inside 198.51.100.20 255.255.255.255 10.10.0.20"
ASA_NET_ROUTE = "route inside 198.51.100.0 255.255.255.0 10.10.0.30 5"
ASA_OBJECT = ["object network web-01", "host 10.10.0.20", "nat (inside,outside) static 198.51.100.20"]
IOS_HOST_ROUTE = "ip route 198.51.100.20 255.255.255.255 10.0.1.20"
IOS_NET_ROUTE = "ip route 198.51.100.0 255.255.255.0 10.0.1.30"
IOS_V6_ROUTE = "ipv6 route 2001:db8:100::/64 2001:db8::1"
IOS_SECONDARY = "ip address 198.51.100.33 255.255.255.224 secondary"
IOS_ADDED = [IOS_HOST_ROUTE, IOS_NET_ROUTE, IOS_V6_ROUTE, "interface GigabitEthernet0/1", IOS_SECONDARY]
IOS_REMOVED = [
    f"no {IOS_HOST_ROUTE}",
    "no ip route 198.51.100.0 255.255.255.0",  # without the gateway: every route to that network
    f"no {IOS_V6_ROUTE}",
    "interface Gi0/1",
    f"no {IOS_SECONDARY}",
]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    server = NetDevServer(USER, PASSWORD)
    asa = AsaDevice("fw-asa-01", ASA_ZONES, tmp_path / "fw-asa-01.cfg", time_scale=SCALE)
    ios = IosDevice("fw-ios-01", IOS_ZONES, tmp_path / "fw-ios-01.cfg", time_scale=SCALE)
    server.add(asa)
    server.add(ios)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"{server.known_hosts_line(asa.name)}\n{server.known_hosts_line(ios.name)}\n")
    server.start()
    try:
        yield Lab(server, asa, ios, known_hosts)
    finally:
        server.stop()


def in_order(text: str, *lines: str) -> bool:
    """True if every one of ``lines`` is a line of ``text``, in this order."""
    rows = text.splitlines()
    found = [rows.index(line) for line in lines]
    return found == sorted(found) and len(set(found)) == len(found)


def answers(out: str, lines: list[str]) -> list[str]:
    """What Netmiko read from each of ``lines`` (its echo) up to the next one's echo."""
    starts: list[int] = []
    for line in lines:
        starts.append(out.index(line, starts[-1] + len(lines[len(starts) - 1]) if starts else 0))
    return [out[start:end] for start, end in zip(starts, [*starts[1:], len(out)], strict=True)]


# --- Cisco ASA -------------------------------------------------------------------------------------------


def test_network_asa_route_and_static_nat_apply_show_and_remove(lab: Lab) -> None:
    asa = lab.asa
    baseline = asa.running_config()
    with lab.connect(asa) as conn:
        out = conn.send_config_set([ASA_HOST_ROUTE, ASA_NET_ROUTE, *ASA_OBJECT], error_pattern=r"ERROR")
        assert "fw-asa-01(config-network-object)#" in out
        routes = conn.send_command("show running-config route")
        assert routes.splitlines() == [
            ASA_DEFAULT_ROUTE,
            f"{ASA_HOST_ROUTE} 1",  # the ASA shows the default metric
            ASA_NET_ROUTE,
        ]
        assert conn.send_command("show running-config object network web-01").splitlines() == [
            "object network web-01",
            " host 10.10.0.20",
        ]
        assert conn.send_command("show running-config nat").splitlines() == [
            "object network web-01",
            " nat (inside,outside) static 198.51.100.20",
        ]
        config = asa.running_config()
        assert in_order(
            config,
            "ftp mode passive",
            "object network web-01",
            " host 10.10.0.20",
            "access-list outside_access_in extended permit tcp any host 198.51.100.10 eq 22",
            "mtu inside 1500",
            " nat (inside,outside) static 198.51.100.20",
            "access-group inside_access_in in interface inside",
            ASA_DEFAULT_ROUTE,
            f"{ASA_HOST_ROUTE} 1",
            ASA_NET_ROUTE,
            "aaa authentication ssh console LOCAL",
        )
        assert config.count("object network web-01\n") == 2
        assert asa.state_file.read_text() == config
        removed = conn.send_config_set(
            [f"no {ASA_HOST_ROUTE}", f"no {ASA_NET_ROUTE}", "no object network web-01"],
            error_pattern=r"ERROR",
        )
        assert "ERROR" not in removed
    assert asa.running_config() == baseline == asa.state_file.read_text()


def test_network_asa_bad_route_and_nat_lines_change_nothing(lab: Lab) -> None:
    asa = lab.asa
    baseline = asa.running_config()
    dmz_route = "route dmz 198.51.100.20 255.255.255.255 10.10.0.20"
    bad_gateway = "route inside 198.51.100.20 255.255.255.255 300.1.1.1"
    cases = [
        (
            "route inside 198.51.100.21 255.255.255.0 10.10.0.20",
            "ERROR: IP address,mask <198.51.100.21,255.255.255.0> doesn't pair",
        ),
        (
            "route inside 198.51.100.0 255.0.255.0 10.10.0.20",
            "ERROR: IP address,mask <198.51.100.0,255.0.255.0> doesn't pair",
        ),
        (dmz_route, f"{dmz_route}\n      ^\n{ASA_INVALID}"),
        (bad_gateway, f"{bad_gateway}\n{' ' * bad_gateway.index('300')}^\n{ASA_INVALID}"),
        ("route inside 300.1.1.1 255.255.255.255 10.10.0.20", ASA_INVALID),
        ("route inside 198.51.100.20 255.255.255.255 10.10.0.20 256", ASA_INVALID),
        ("route inside 0.0.0.0 0.0.0.0 10.10.0.1", "ERROR: Cannot add route entry, possible conflict"),
        (f"no {ASA_HOST_ROUTE}", "ERROR: Route entry does not exist"),
        ("no object network web-99", "ERROR: Object (web-99) does not exist."),
        ("object network web-02", "fw-asa-01(config-network-object)#"),
        ("host 300.1.1.1", ASA_INVALID),
        ("nat (inside,outside) static 198.51.100.21", "ERROR: NAT is not supported for an object without"),
        ("nat (inside,dmz) static 198.51.100.21", ASA_INVALID),
        ("nat (inside,outside) static 300.1.1.1", ASA_INVALID),
        ("exit", "fw-asa-01(config)#"),
        ("no object network web-02", "fw-asa-01(config)#"),
    ]
    with lab.connect(asa) as conn:
        out = conn.send_config_set([line for line, _ in cases])
    for (line, expected), answer in zip(cases, answers(out, [line for line, _ in cases]), strict=True):
        assert expected in answer, line
    assert out.count(ASA_INVALID) == 7
    assert asa.running_config() == baseline == asa.state_file.read_text()


# --- Cisco IOS -------------------------------------------------------------------------------------------


def test_network_ios_routes_and_secondary_address_apply_show_and_remove(lab: Lab) -> None:
    ios = lab.ios
    baseline = ios.running_config()
    with lab.connect(ios) as conn:
        out = conn.send_config_set(IOS_ADDED, error_pattern=r"%|Bad mask")
        assert "fw-ios-01(config-if)#" in out
        included = conn.send_command("show running-config | include ip route")
        assert included.splitlines() == [IOS_NET_ROUTE, IOS_HOST_ROUTE]  # sorted by network, then mask
        section = conn.send_command("show running-config | section interface GigabitEthernet0/1")
        assert section.splitlines() == [
            "interface GigabitEthernet0/1",
            " ip address 10.0.1.1 255.255.255.0",
            f" {IOS_SECONDARY}",
            " ip access-group INSIDE_IN in",
            " negotiation auto",
        ]
        config = ios.running_config()
        assert in_order(
            config,
            "interface GigabitEthernet0/1",
            IOS_NET_ROUTE,
            IOS_HOST_ROUTE,
            "ipv6 route 2001:DB8:100::/64 2001:DB8::1",
            "ip access-list extended INSIDE_IN",
            "line vty 0 4",
        )
        assert ios.state_file.read_text() == config
        removed = conn.send_config_set(IOS_REMOVED, error_pattern=r"%|Bad mask")
        assert "%" not in removed
    assert ios.running_config() == baseline == ios.state_file.read_text()


def test_network_ios_revert_now_restores_routes_and_addresses(lab: Lab) -> None:
    ios = lab.ios
    baseline = ios.running_config()
    with lab.connect(ios) as conn:
        conn.send_config_set(IOS_ADDED, config_mode_command="configure terminal revert timer 5")
        assert f" {IOS_SECONDARY}" in ios.running_config() and IOS_HOST_ROUTE in ios.running_config()
        assert conn.send_command("configure revert now") == "Rollback Done"
    assert ios.running_config() == baseline == ios.state_file.read_text()


def test_network_ios_bad_route_and_address_lines_change_nothing(lab: Lab) -> None:
    ios = lab.ios
    baseline = ios.running_config()
    lab.server.set_fault(ios.name, REJECT_SECOND_LINE, True)  # counts changing lines only: none here
    cases = [
        ("ip route 198.51.100.21 255.255.255.0 10.0.1.20", "%Inconsistent address and mask"),
        ("ip route 198.51.100.0 255.0.255.0 10.0.1.20", "%Inconsistent address and mask"),
        ("ip route 198.51.100.0 255.255.255.0 300.1.1.1", IOS_INVALID),
        ("ip route 198.51.100.0 255.255.255.0 10.0.1.1", "%Invalid next hop address (it's this router)"),
        (f"no {IOS_HOST_ROUTE}", "%No matching route to delete"),
        (f"no {IOS_V6_ROUTE}", "%No matching route to delete"),
        ("interface GigabitEthernet0/9", IOS_INVALID),
        ("interface GigabitEthernet0/1", "fw-ios-01(config-if)#"),
        ("ip address 198.51.100.33 255.0.255.224 secondary", "Bad mask 0xFF00FFE0 for address 198.51.100.33"),
        ("ip address 198.51.100.32 255.255.255.224 secondary", "Bad mask /27 for address 198.51.100.32"),
        ("ip address 300.1.1.1 255.255.255.0 secondary", IOS_INVALID),
        (
            "ip address 203.0.113.9 255.255.255.0 secondary",
            "% 203.0.113.0 overlaps with GigabitEthernet0/0\nGigabitEthernet0/1: incorrect IP address assignment",
        ),
    ]
    with lab.connect(ios) as conn:
        out = conn.send_config_set([line for line, _ in cases])
    for (line, expected), answer in zip(cases, answers(out, [line for line, _ in cases]), strict=True):
        assert expected in answer, line
    assert out.count(IOS_INVALID) == 3
    assert ios.running_config() == baseline == ios.state_file.read_text()
    assert REJECT_SECOND_LINE in ios.faults  # nothing changed, so the fault is still armed
