"""The lab's simulated Cisco ASA and IOS devices, driven at the wire by real Netmiko with host keys checked."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
import pytest
from netmiko import ConnectHandler
from netmiko.exceptions import NetmikoAuthenticationException, NetmikoTimeoutException, ReadTimeout

from remotehands.lab.netdev_asa import AsaDevice
from remotehands.lab.netdev_ios import IosDevice
from remotehands.lab.netdev_model import (
    DROP_AFTER_FIRST_LINE,
    NO_RETURN_AFTER_COMMIT,
    REJECT_SECOND_LINE,
    NetDevice,
    Zone,
)
from remotehands.lab.netdev_sim import NetDevServer

USER, PASSWORD = "admin", "lab-Passw0rd"
SCALE = 0.5  # real seconds per simulated minute
ASA_ZONES = {"outside": Zone("outside", "outside_access_in"), "inside": Zone("inside", "inside_access_in")}
IOS_ZONES = {
    "outside": Zone("GigabitEthernet0/0", "OUTSIDE_IN"),
    "inside": Zone("GigabitEthernet0/1", "INSIDE_IN"),
}
ASA_REMARK = "access-list outside_access_in remark rh-1a2b3c4d RH-12"
ASA_ACE = (
    "access-list outside_access_in extended permit tcp 203.0.113.0 255.255.255.0 host 198.51.100.20 eq 443"
)
IOS_ACL = "ip access-list extended OUTSIDE_IN"
IOS_REMARK = "remark rh-1a2b3c4d RH-12"
IOS_ACE = "permit tcp 203.0.113.0 0.0.0.255 host 198.51.100.20 eq 443"
ASA_INVALID = "ERROR: % Invalid input detected at '^' marker."
IOS_INVALID = "% Invalid input detected at '^' marker."


@dataclass
class Lab:
    server: NetDevServer
    asa: AsaDevice
    ios: IosDevice
    known_hosts: Path

    def connect(self, device: NetDevice, known_hosts: Path | None = None, **extra: Any) -> Any:
        return ConnectHandler(
            device_type=device.platform,
            host="127.0.0.1",
            port=self.server.port(device.name),
            username=extra.pop("username", USER),
            password=extra.pop("password", PASSWORD),
            ssh_strict=True,
            system_host_keys=False,
            alt_host_keys=True,
            alt_key_file=str(known_hosts or self.known_hosts),
            fast_cli=True,
            conn_timeout=5,
            **extra,
        )


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


def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def login_works(lab: Lab, device: NetDevice) -> bool:
    """A plain paramiko login (much faster than Netmiko's session preparation)."""
    client = paramiko.SSHClient()
    client.load_host_keys(str(lab.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(
            "127.0.0.1",
            port=lab.server.port(device.name),
            username=USER,
            password=PASSWORD,
            look_for_keys=False,
        )
        return True
    except (paramiko.SSHException, OSError):
        return False
    finally:
        client.close()


def in_config(conn: Any, line: str) -> str:
    """One line in the config mode the session is already in, its output (echo and prompt included)."""
    return str(conn.send_config_set([line], enter_config_mode=False, exit_config_mode=False))


# --- Cisco ASA -------------------------------------------------------------------------------------------


def test_asa_rule_is_applied_traced_saved_and_rolled_back(lab: Lab) -> None:
    asa = lab.asa
    baseline = asa.running_config()
    assert "enable password $sha512$5000$" in baseline and " pbkdf2 privilege 15" in baseline
    assert "access-group outside_access_in in interface outside" in baseline
    with lab.connect(asa) as conn:
        out = conn.send_config_set([ASA_REMARK, ASA_ACE], error_pattern=r"ERROR|WARNING")
        assert "fw-asa-01(config)#" in out
        shown = conn.send_command("show running-config access-list outside_access_in")
        assert shown.splitlines() == [
            "access-list outside_access_in extended permit tcp any host 198.51.100.10 eq 22",
            ASA_REMARK,
            ASA_ACE,
        ]
        assert conn.send_command("show running-config access-list no_such_acl") == ""
        allow = conn.send_command("packet-tracer input outside tcp 203.0.113.1 1025 198.51.100.20 443")
        assert allow.rstrip().endswith("Action: allow") and ASA_ACE in allow
        drop = conn.send_command("packet-tracer input outside tcp 192.0.2.1 1025 198.51.100.20 443")
        assert "Action: drop" in drop
        assert "Drop-reason: (acl-drop) Flow is denied by configured rule" in drop
        assert "Action: drop" in conn.send_command(
            "packet-tracer input outside udp 203.0.113.1 1025 198.51.100.20 443"
        )
        assert "Action: allow" in conn.send_command(
            "packet-tracer input inside icmp 10.0.1.5 8 0 198.51.100.20"
        )
        duplicate = conn.send_config_set([ASA_ACE])
        assert "WARNING: <outside_access_in> found duplicate element" in duplicate
        assert shown == conn.send_command("show running-config access-list outside_access_in")
        saved = conn.send_command("write memory")
        assert saved.startswith("Building configuration...") and saved.rstrip().endswith("[OK]")
        full = conn.send_command("show running-config")
        assert full.startswith(": Saved") and "Cryptochecksum:" in full and full.rstrip().endswith(": end")
        assert asa.startup_config == asa.running_config() == full + "\n"
        assert asa.state_file.read_text() == asa.running_config()
        rollback = conn.send_config_set([f"no {ASA_ACE}", f"no {ASA_REMARK}"], error_pattern="ERROR")
        assert "ERROR" not in rollback
    assert asa.running_config() == baseline
    assert asa.state_file.read_text() == baseline


def test_asa_login_prompts_and_bad_lines_that_change_nothing(lab: Lab) -> None:
    asa = lab.asa
    baseline = asa.running_config()
    port_line = "access-list outside_access_in extended permit tcp any any eq 70000"
    cases = {
        "access-list outside_access_in extended permit tcp 203.0.113.5 255.255.255.0 any": (
            "ERROR: IP address,mask <203.0.113.5,255.255.255.0> doesn't pair"
        ),
        "access-list outside_access_in extended permit tcp 203.0.113.0 255.0.255.0 any": (
            "ERROR: IP address,mask <203.0.113.0,255.0.255.0> doesn't pair"
        ),
        "access-list outside_access_in extended allow tcp any any": ASA_INVALID,
        "access-list outside_access_in extended permit icmp any any eq 22": ASA_INVALID,
        "access-list outside_access_in extended permit tcp any": "ERROR: % Incomplete command",
        "access-list outside_access_in extended permit tcp any any range 90 80": ASA_INVALID,
        "no access-list outside_access_in extended permit tcp any any eq 443": (
            "ERROR: Specified access-list does not exist"
        ),
    }
    with lab.connect(asa) as conn:
        # auto-enable: privileged exec at once, as Netmiko's session preparation found
        assert conn.base_prompt == "fw-asa-01"
        assert conn.find_prompt() == "fw-asa-01#"
        assert {"show curpriv", "login", "terminal pager 0", "terminal width 511"} <= set(asa.commands)
        assert "Current privilege level : 15" in conn.send_command("show curpriv")
        conn.config_mode()
        assert conn.find_prompt() == "fw-asa-01(config)#"
        out = in_config(conn, port_line)
        assert f"{port_line}\n{' ' * port_line.index('70000')}^\n{ASA_INVALID}" in out
        for line, expected in cases.items():
            assert expected in in_config(conn, line), line
        conn.exit_config_mode()
        assert conn.find_prompt() == "fw-asa-01#"
        assert conn.send_command("packet-tracer input dmz tcp 192.0.2.1 1025 198.51.100.20 443").startswith(
            "ERROR:"
        )
    assert asa.running_config() == baseline
    assert asa.state_file.read_text() == baseline


# --- Cisco IOS -------------------------------------------------------------------------------------------


def test_ios_prompts_and_sub_modes(lab: Lab) -> None:
    ios = lab.ios
    with lab.connect(ios) as conn:
        assert conn.base_prompt == "fw-ios-01"
        assert conn.find_prompt() == "fw-ios-01#"
        conn.config_mode()
        assert conn.find_prompt() == "fw-ios-01(config)#"
        in_config(conn, IOS_ACL)
        assert conn.find_prompt() == "fw-ios-01(config-ext-nacl)#"
        in_config(conn, "exit")
        in_config(conn, "ipv6 access-list V6_IN")
        assert conn.find_prompt() == "fw-ios-01(config-ipv6-acl)#"
        in_config(conn, "permit tcp 2001:db8:1::/48 host 2001:db8::10 eq 443")
        conn.exit_config_mode()
        assert conn.find_prompt() == "fw-ios-01#"
        section = conn.send_command("show running-config | section ipv6 access-list")
    assert section.splitlines() == [
        "ipv6 access-list V6_IN",
        " permit tcp 2001:DB8:1::/48 host 2001:DB8::10 eq 443",
    ]
    assert {"terminal width 511", "terminal length 0"} <= set(ios.commands)


def test_ios_change_confirmed_and_saved(lab: Lab) -> None:
    ios = lab.ios
    with lab.connect(ios) as conn:
        out = conn.send_config_set(
            [IOS_ACL, IOS_REMARK, IOS_ACE], config_mode_command="configure terminal revert timer 5"
        )
        assert "Rollback Confirmed Change: Backing up current running config to flash:rollback-1" in out
        section = conn.send_command("show running-config | section ip access-list extended OUTSIDE_IN")
        assert section.splitlines() == [
            IOS_ACL,
            " permit tcp any host 198.51.100.10 eq 22",
            f" {IOS_REMARK}",
            f" {IOS_ACE}",
        ]
        assert conn.send_command("configure confirm") == ""
        with ios.lock:  # long past the timer: a confirmed change stays
            ios.tick(ios.clock() + ios.minutes(60))
        assert f" {IOS_ACE}" in ios.running_config()
        assert conn.send_command("configure confirm") == "% No Rollback Confirmed Change pending"
        saved = conn.send_command("write memory")
        assert saved.splitlines() == ["Building configuration...", "[OK]"]
        shown = conn.send_command("show running-config").splitlines()
    assert shown[0] == "Building configuration..." and shown[2].startswith("Current configuration : ")
    assert shown[4].startswith("! Last configuration change at ") and shown[4].endswith(
        " UTC Sat Dec 5 2026 by admin"
    )
    assert "\n".join(shown[3:4] + shown[5:]) + "\n" == ios.running_config()
    assert "snmp-server community LabRoCommunity1 RO" in shown and " path flash:rollback" in shown
    assert ios.startup_config == ios.running_config() == ios.state_file.read_text()


def test_ios_revert_now_restores_byte_identical(lab: Lab) -> None:
    ios = lab.ios
    baseline = ios.running_config()
    with lab.connect(ios) as conn:
        conn.send_config_set(
            [IOS_ACL, IOS_REMARK, IOS_ACE], config_mode_command="configure terminal revert timer 5"
        )
        assert ios.running_config() != baseline
        assert conn.send_command("configure revert now") == "Rollback Done"
        assert ios.running_config() == baseline
        assert conn.send_command("configure revert now") == "% No Rollback Confirmed Change pending"
    assert ios.state_file.read_text() == baseline


def test_ios_revert_timer_expiry_restores_byte_identical(lab: Lab) -> None:
    ios = lab.ios
    baseline = ios.running_config()
    with lab.connect(ios) as conn:
        started = time.monotonic()
        conn.send_config_set(
            [IOS_ACL, IOS_REMARK, IOS_ACE], config_mode_command="configure terminal revert timer 1"
        )
        assert f" {IOS_ACE}" in ios.running_config()
        until(lambda: ios.running_config() == baseline, timeout=5 * SCALE)
        assert time.monotonic() - started >= 0.9 * SCALE
    assert ios.state_file.read_text() == baseline


def test_ios_bad_lines_change_nothing(lab: Lab) -> None:
    ios = lab.ios
    baseline = ios.running_config()
    prompt = "fw-ios-01(config-ext-nacl)#"
    port_line = "permit tcp any any eq 70000"
    mask_line = "permit tcp 203.0.113.0 255.255.255.0 any"
    with lab.connect(ios) as conn:
        conn.config_mode()
        in_config(conn, IOS_ACL)
        out = in_config(conn, port_line)
        assert f"{' ' * (len(prompt) + port_line.index('70000'))}^\n{IOS_INVALID}" in out
        out = in_config(conn, mask_line)
        assert f"{' ' * (len(prompt) + mask_line.index('255.'))}^\n{IOS_INVALID}" in out
        assert "% Incomplete command." in in_config(conn, "permit tcp any")
        assert IOS_INVALID in in_config(conn, "allow ip any any")
        assert IOS_INVALID in in_config(conn, "permit ip any any eq 22")
        duplicate = in_config(conn, "permit tcp any host 198.51.100.10 eq 22")
        assert "%" not in duplicate
        conn.exit_config_mode()
        assert IOS_INVALID in conn.send_command("configure terminal revert timer 121")
        assert conn.find_prompt() == "fw-ios-01#"
    assert ios.running_config() == baseline


# --- faults (both platforms) -----------------------------------------------------------------------------

CHANGES: dict[str, tuple[list[str], str]] = {
    "asa": ([ASA_REMARK, ASA_ACE], ASA_ACE),
    "ios": ([IOS_ACL, IOS_REMARK, IOS_ACE], f" {IOS_ACE}"),
}


def device_of(lab: Lab, platform: str) -> NetDevice:
    return lab.asa if platform == "asa" else lab.ios


@pytest.mark.parametrize("platform", ["asa", "ios"])
def test_reject_second_line_rejects_once(lab: Lab, platform: str) -> None:
    device = device_of(lab, platform)
    lines, applied = CHANGES[platform]
    lab.server.set_fault(device.name, REJECT_SECOND_LINE, True)
    with lab.connect(device) as conn:
        out = conn.send_config_set(lines)
        assert (ASA_INVALID if platform == "asa" else IOS_INVALID) in out
        assert "rh-1a2b3c4d RH-12" in device.running_config()
        assert applied not in device.running_config()
        assert REJECT_SECOND_LINE not in device.faults
        conn.send_config_set(lines[-1:] if platform == "asa" else [lines[0], lines[-1]])
    assert applied in device.running_config()
    assert device.state_file.read_text() == device.running_config()


@pytest.mark.parametrize("platform", ["asa", "ios"])
def test_drop_after_first_line_applies_it_then_drops(lab: Lab, platform: str) -> None:
    device = device_of(lab, platform)
    lines, applied = CHANGES[platform]
    lab.server.set_fault(device.name, DROP_AFTER_FIRST_LINE, True)
    conn = lab.connect(device)
    try:
        with pytest.raises(ReadTimeout):
            conn.send_config_set(lines, read_timeout=1)
        assert not conn.is_alive()
    finally:
        conn.disconnect()
    assert "rh-1a2b3c4d RH-12" in device.running_config()
    assert applied not in device.running_config()
    assert lines[-1] not in device.commands
    assert DROP_AFTER_FIRST_LINE not in device.faults and device.accepting


def test_asa_no_return_after_write_memory(lab: Lab) -> None:
    asa = lab.asa
    lab.server.set_fault(asa.name, NO_RETURN_AFTER_COMMIT, True)
    conn = lab.connect(asa)
    try:
        conn.send_config_set([ASA_REMARK, ASA_ACE])
        conn.write_channel("write memory\n")
        until(lambda: not asa.accepting, timeout=2)
        # Netmiko's reads do not notice a closed channel: disconnecting before the close arrives waits 10 s.
        until(lambda: not conn.is_alive(), timeout=2)
        with pytest.raises(NetmikoTimeoutException):
            lab.connect(asa)
    finally:
        conn.disconnect()
    assert asa.startup_config == asa.running_config() and ASA_ACE in asa.running_config()
    until(lambda: asa.accepting, timeout=4 * SCALE)
    assert login_works(lab, asa)
    assert ASA_ACE in asa.running_config()  # no revert on an ASA: the saved change stays


def test_ios_no_return_after_revert_session_until_timer_restores(lab: Lab) -> None:
    ios = lab.ios
    baseline = ios.running_config()
    lab.server.set_fault(ios.name, NO_RETURN_AFTER_COMMIT, True)
    conn = lab.connect(ios)
    try:
        conn.send_config_set(
            [IOS_ACL, IOS_REMARK, IOS_ACE],
            config_mode_command="configure terminal revert timer 4",
            exit_config_mode=False,
        )
        conn.write_channel("end\n")
        until(lambda: not ios.accepting, timeout=2)
        until(lambda: not conn.is_alive(), timeout=2)
        assert f" {IOS_ACE}" in ios.running_config()
        with pytest.raises(NetmikoTimeoutException):
            lab.connect(ios)
    finally:
        conn.disconnect()
    until(lambda: ios.accepting, timeout=6 * SCALE)
    assert ios.running_config() == baseline == ios.state_file.read_text()
    assert ios.snapshot is None and login_works(lab, ios)


# --- the SSH server --------------------------------------------------------------------------------------


def test_wrong_host_key_unknown_host_and_bad_password_fail(lab: Lab, tmp_path: Path) -> None:
    port = lab.server.port(lab.asa.name)
    other = lab.server.host_key(lab.ios.name)
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(f"[127.0.0.1]:{port} {other.get_name()} {other.get_base64()}\n")
    with pytest.raises(NetmikoTimeoutException, match="Host key"):
        lab.connect(lab.asa, known_hosts=wrong)
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(NetmikoTimeoutException, match="not found in known_hosts"):
        lab.connect(lab.asa, known_hosts=empty)
    with pytest.raises(NetmikoAuthenticationException):
        lab.connect(lab.ios, password="wrong")
    assert lab.asa.commands == [] and lab.ios.commands == []


def test_exec_is_refused_and_fortinet_kex_negotiates(lab: Lab) -> None:
    client = paramiko.SSHClient()
    client.load_host_keys(str(lab.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    # What Netmiko's fortinet driver leaves enabled under paramiko 5: group exchange only.
    fortinet_kex = {"diffie-hellman-group-exchange-sha256"}
    disabled = [k for k in paramiko.Transport._preferred_kex if k not in fortinet_kex]
    client.connect(
        "127.0.0.1",
        port=lab.server.port(lab.ios.name),
        username=USER,
        password=PASSWORD,
        look_for_keys=False,
        allow_agent=False,
        disabled_algorithms={"kex": disabled},
    )
    try:
        transport = client.get_transport()
        assert transport is not None and transport.remote_version == "SSH-2.0-Cisco-1.25"
        # The client offered group exchange only, so the login above proves the server negotiated it.
        assert transport.preferred_kex == ("diffie-hellman-group-exchange-sha256",)
        with pytest.raises(paramiko.SSHException):
            client.exec_command("show running-config")
    finally:
        client.close()
