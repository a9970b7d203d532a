"""Real Netmiko sessions against the lab's simulated SRX and FortiGate through the lab's SSH server on
127.0.0.1: configuration changes, commits and saves, refusals, static routes and the routing tables."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from netmiko import BaseConnection, ConnectHandler
from netmiko.juniper import JuniperSSH

from remotehands.lab.netdev_fortios import FortiosDevice
from remotehands.lab.netdev_junos import JunosDevice
from remotehands.lab.netdev_sim import NetDevServer
from tests.test_lab_network_fortios import FORTI_CHANGE, FORTI_REMOVAL, FORTI_ZONES, ROUTE_CHANGE
from tests.test_lab_network_junos import JUNOS_CHANGE, JUNOS_REMOVAL, JUNOS_ZONES, ROUTE, RULE, SCALE


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetDevServer]:
    root = tmp_path_factory.mktemp("netdev")
    served = NetDevServer("admin", "lab-pass")
    served.add(JunosDevice("fw-srx-01", JUNOS_ZONES, root / "srx.conf", time_scale=SCALE))
    served.add(FortiosDevice("fw-fgt-01", FORTI_ZONES, root / "fgt.conf", time_scale=SCALE))
    served.start()
    yield served
    served.stop()


def connect(server: NetDevServer, name: str, device_type: str, tmp_path: Path) -> BaseConnection:
    known = tmp_path / "known_hosts"
    known.write_text(server.known_hosts_line(name) + "\n")
    return ConnectHandler(
        device_type=device_type,
        host="127.0.0.1",
        port=server.port(name),
        username="admin",
        password="lab-pass",
        ssh_strict=True,
        system_host_keys=False,
        alt_host_keys=True,
        alt_key_file=str(known),
        fast_cli=True,
    )


def test_netmiko_junos(server: NetDevServer, tmp_path: Path) -> None:
    device = server.device("fw-srx-01")
    assert isinstance(device, JunosDevice)
    before = device.running_config()
    conn = connect(server, "fw-srx-01", "juniper_junos", tmp_path)
    assert isinstance(conn, JuniperSSH)
    try:
        assert conn.base_prompt == "admin@fw-srx-01"
        out = conn.send_config_set(
            JUNOS_CHANGE, config_mode_command="configure exclusive", exit_config_mode=False
        )
        assert "syntax error" not in out
        assert conn.check_config_mode()
        assert "configuration check succeeds" in conn.commit(check=True)
        assert "commit complete" in conn.commit(confirm=True, confirm_delay=5, comment="RH-12")
        shown = conn.send_command("run show configuration | display set")
        assert RULE + "then permit" in shown
        conn.commit(comment="RH-12 confirmed")
        conn.exit_config_mode()
        assert not conn.check_config_mode()
        assert all(line in device.running_config() for line in JUNOS_CHANGE)
        bad = conn.send_config_set(
            ["set applications application x destination-port 70000"],
            config_mode_command="configure exclusive",
        )
        assert "syntax error." in bad
        conn.send_config_set(JUNOS_REMOVAL, config_mode_command="configure exclusive", exit_config_mode=False)
        conn.commit()
        conn.exit_config_mode()
        assert device.running_config() == before
        assert "Junos: 22.4R3.25" in conn.send_command("show version")
    finally:
        conn.disconnect()


def test_netmiko_fortios(server: NetDevServer, tmp_path: Path) -> None:
    device = server.device("fw-fgt-01")
    assert isinstance(device, FortiosDevice)
    before = device.running_config()
    conn = connect(server, "fw-fgt-01", "fortinet", tmp_path)
    try:
        assert conn.base_prompt == "fw-fgt-01 "
        out = conn.send_config_set(FORTI_CHANGE)
        assert "Command fail" not in out
        policy = conn.send_command("show firewall policy")
        assert '    edit 3\n        set name "rh-1a2b3c4d"' in policy
        assert "set subnet 203.0.113.0 255.255.255.0" in conn.send_command("show firewall address")
        conn.send_command("execute cfg save")
        assert device.revert_deadline is None and device.saved_tree == device.running
        bad = conn.send_config_set(
            ["config firewall address", 'edit "z"', "set subnet 10.0.0.0 255.0.255.0", "end"]
        )
        assert "value parse error before '255.0.255.0'" in bad
        conn.send_config_set(["config firewall address", 'delete "z"', "end"])
        conn.send_config_set(FORTI_REMOVAL)
        assert device.running_config() == before
        asked = conn.send_command("execute cfg reload", expect_string=r"\(y/n\)")
        assert "discard all unsaved changes" in asked
        # an explicit expect_string: without one Netmiko first sends an empty line to find the prompt,
        # and an empty answer to (y/n) cancels, as on a real FortiGate
        assert "Configuration reloaded." in conn.send_command("y", expect_string=r"# $")
        assert "rh-1a2b3c4d" in device.running_config()  # the saved configuration had the rule
    finally:
        conn.disconnect()


def test_netmiko_network_junos_static_route(server: NetDevServer, tmp_path: Path) -> None:
    device = server.device("fw-srx-01")
    before = device.running_config()
    conn = connect(server, "fw-srx-01", "juniper_junos", tmp_path)
    try:
        out = conn.send_config_set([ROUTE], config_mode_command="configure exclusive", exit_config_mode=False)
        assert "syntax error" not in out
        assert "commit complete" in conn.commit(confirm=True, confirm_delay=5)
        conn.commit()
        conn.exit_config_mode()
        assert ROUTE in conn.send_command("show configuration | display set | match routing-options")
        route = conn.send_command("show route 198.51.100.20/32 exact")
        assert "198.51.100.20/32   *[Static/5] " in route
        assert "                    >  to 198.51.100.10 via ge-0/0/1.0" in route
        bad = conn.send_config_set(
            ["set routing-options static route 198.51.100.20/32 next-hop 2001:db8::1"],
            config_mode_command="configure exclusive",
        )
        assert "syntax error." in bad
        conn.send_config_set(
            ["delete routing-options static route 198.51.100.20/32"],
            config_mode_command="configure exclusive",
            exit_config_mode=False,
        )
        conn.commit()
        conn.exit_config_mode()
        assert device.running_config() == before
        assert "Static" not in conn.send_command("show route 198.51.100.20/32 exact")
    finally:
        conn.disconnect()


def test_netmiko_network_fortios_static_route(server: NetDevServer, tmp_path: Path) -> None:
    device = server.device("fw-fgt-01")
    before = device.running_config()
    conn = connect(server, "fw-fgt-01", "fortinet", tmp_path)
    try:
        assert "Command fail" not in conn.send_config_set(ROUTE_CHANGE)
        shown = conn.send_command("show router static")
        assert "        set dst 198.51.100.20 255.255.255.255\n        set gateway 198.51.100.10\n" in shown
        number = re.findall(r"edit (\d+)", shown)[-1]
        table = conn.send_command("get router info routing-table static")
        assert "S       198.51.100.20/32 [10/0] via 198.51.100.10, port2, [1/0]" in table
        bad = conn.send_config_set(["config router static", f"edit {number}", 'set device "port9"', "end"])
        assert "entry not found in datasource" in bad
        conn.send_config_set(["config router static", f"delete {number}", "end"])
        assert device.running_config() == before
        assert "198.51.100.20" not in conn.send_command("get router info routing-table static")
    finally:
        conn.disconnect()
