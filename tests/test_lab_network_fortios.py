"""The lab's simulated FortiGate, line by line: the configuration tree, the revert timer and ``execute cfg``
save/reload, faults, static routes and the routing table. Real Netmiko against it is in
``test_lab_network_netmiko_junos_fortios``."""

from __future__ import annotations

import time
from pathlib import Path

from remotehands.lab.netdev_fortios import FortiosDevice
from remotehands.lab.netdev_model import (
    DROP_AFTER_FIRST_LINE,
    NO_RETURN_AFTER_COMMIT,
    REJECT_SECOND_LINE,
    Zone,
)
from tests.test_lab_network_junos import SCALE, run, ticking, wait_for

FORTI_ZONES = {"outside": Zone("port1"), "inside": Zone("port2")}
FORTI_CHANGE = [
    "config firewall address",
    'edit "rh-1a2b3c4d-src"',
    "set subnet 203.0.113.0 255.255.255.0",
    "next",
    'edit "rh-1a2b3c4d-dst"',
    "set subnet 198.51.100.20 255.255.255.255",
    "next",
    "end",
    "config firewall service custom",
    'edit "rh-1a2b3c4d"',
    "set tcp-portrange 443",
    "next",
    "end",
    "config firewall policy",
    "edit 0",
    'set name "rh-1a2b3c4d"',
    'set srcintf "port1"',
    'set dstintf "port2"',
    'set srcaddr "rh-1a2b3c4d-src"',
    'set dstaddr "rh-1a2b3c4d-dst"',
    "set action accept",
    'set schedule "always"',
    'set service "rh-1a2b3c4d"',
    'set comments "RH-12"',
    "next",
    "end",
]
FORTI_REMOVAL = [
    "config firewall policy",
    "delete 3",
    "end",
    "config firewall service custom",
    'delete "rh-1a2b3c4d"',
    "end",
    "config firewall address",
    'delete "rh-1a2b3c4d-src"',
    'delete "rh-1a2b3c4d-dst"',
    "end",
]


def fgt(tmp_path: Path, timeout: int = 600) -> FortiosDevice:
    return FortiosDevice(
        "fw-fgt-01", FORTI_ZONES, tmp_path / "fgt.conf", time_scale=SCALE, revert_timeout=timeout
    )


# FortiOS


def test_fortios_change_save_and_removal(tmp_path: Path) -> None:
    device = fgt(tmp_path)
    before = device.running_config()
    assert "set password ENC SH2" in before and "#conf_file_ver" not in before
    session = device.new_session("admin")
    prompts = []
    for line in FORTI_CHANGE:
        assert session.handle(line).output == "", line
        prompts.append(session.prompt())
    assert prompts[0] == "fw-fgt-01 (address) # "
    assert prompts[1] == "fw-fgt-01 (rh-1a2b3c4d-src) # "
    assert prompts[14] == "fw-fgt-01 (3) # "
    assert prompts[-1] == "fw-fgt-01 # "
    assert device.revert_deadline is not None  # revert mode: the first change armed the timer
    policy = run(session, ["show firewall policy"])[0]
    assert '    edit 3\n        set name "rh-1a2b3c4d"\n        set uuid ' in policy
    assert 'set srcaddr "rh-1a2b3c4d-src"' in policy and "set action accept" in policy
    assert 'set comments "RH-12"\n    next\nend' in policy
    address = run(session, ["show firewall address"])[0]
    assert 'edit "rh-1a2b3c4d-dst"' in address and "set subnet 198.51.100.20 255.255.255.255" in address
    assert "set tcp-portrange 443" in run(session, ["show firewall service custom"])[0]
    assert run(session, ["execute cfg save"]) == [""]
    assert device.revert_deadline is None
    shown = run(session, ["show"])[0].split("\n")
    assert shown[0].startswith("#config-version=FGVM64-7.2.5-FW-build1517")
    assert shown[1].startswith("#conf_file_ver=")
    assert device.state_file.read_text() == device.running_config()
    assert run(session, FORTI_REMOVAL) == [""] * len(FORTI_REMOVAL)
    assert device.running_config() == before


def test_fortios_rejections_change_nothing(tmp_path: Path) -> None:
    device = fgt(tmp_path)
    before = device.running_config()
    session = device.new_session("admin")
    cases = [
        (["config firewall address", 'edit "h-198.51.100.10"'], "set subnet 203.0.113.0 255.0.255.0", "-8"),
        (["config firewall service custom", 'edit "SSH"'], "set tcp-portrange 70000", "-8"),
        (["config firewall policy", "edit 2"], 'set srcintf "port9"', "-3"),
        (["config firewall policy", "edit 2"], 'set dstaddr "nowhere"', "-3"),
        (["config firewall policy", "edit 2"], "set frobnicate yes", "-61"),
        (["config firewall address"], 'delete "h-198.51.100.10"', "-23"),
    ]
    for enter, line, code in cases:
        run(session, enter)
        out = run(session, [line])[0]
        assert out.endswith(f"Command fail. Return code {code}"), line
        run(session, ["end"])
        assert device.running_config() == before, line
    out = run(session, ['set srcintf "port9"'])[0]
    assert out == "command parse error before 'set'\nCommand fail. Return code -61"
    datasource = (
        "entry not found in datasource\n\nvalue parse error before 'port9'\nCommand fail. Return code -3"
    )
    assert run(session, ["config firewall policy", "edit 2", 'set srcintf "port9"'])[2] == datasource


def test_fortios_status_global_console_and_grep(tmp_path: Path) -> None:
    session = fgt(tmp_path).new_session("admin")
    assert run(session, ["get system status | grep Virtual"])[0].split("\n") == [
        "Virtual domains status: 1 in NAT mode, 0 in TP mode",
        "Virtual domain configuration: disable",
    ]
    status = run(session, ["get system status"])[0]
    assert "Version: FortiGate-VM64 v7.2.5,build1517,230606 (GA.F)" in status
    assert "Hostname: fw-fgt-01" in status
    assert run(session, ["get system global | grep cfg-save"]) == ["cfg-save            : revert"]
    assert "output              : standard" in run(session, ["get system console"])[0]


def test_fortios_reload_and_abort(tmp_path: Path) -> None:
    device = fgt(tmp_path)
    before = device.running_config()
    session = device.new_session("admin")
    run(session, FORTI_CHANGE)
    assert run(session, ["execute cfg reload"]) == [
        "This operation will discard all unsaved changes and reload the saved configuration."
    ]
    assert session.prompt() == "Do you want to continue? (y/n)"
    assert run(session, ["n"]) == [""]
    assert "rh-1a2b3c4d" in device.running_config()
    assert run(session, ["execute cfg reload", "y"])[1] == "Configuration reloaded."
    assert device.running_config() == before and device.revert_deadline is None
    run(session, ["config firewall address", 'edit "x"', "set subnet 192.0.2.0/24", "abort"])
    assert session.prompt() == "fw-fgt-01 # "
    assert device.running_config() == before


def test_fortios_revert_timer_restores_saved(tmp_path: Path) -> None:
    device = fgt(tmp_path, timeout=12)  # 12 s = 0.2 simulated minutes = 0.1 real seconds
    before = device.running_config()
    run(device.new_session("admin"), FORTI_CHANGE)
    assert device.running_config() != before
    wait_for(lambda: ticking(device) and device.revert_deadline is None)
    assert device.running_config() == before
    assert device.state_file.read_text() == before


def test_fortios_automatic_save_on_end(tmp_path: Path) -> None:
    device = fgt(tmp_path)
    session = device.new_session("admin")
    run(session, ["config system global", "set cfg-save automatic", "end"])
    assert device.saved_tree == device.running and device.revert_deadline is None
    run(session, FORTI_CHANGE[:8])
    assert "rh-1a2b3c4d-src" in device.running_config()
    assert device.saved_tree == device.running and device.revert_deadline is None


def test_fortios_faults(tmp_path: Path) -> None:
    device = fgt(tmp_path)
    before = device.running_config()
    session = device.new_session("admin")
    device.faults.add(REJECT_SECOND_LINE)
    outs = run(session, FORTI_CHANGE[:8])
    # changing lines: edit (creates) 1, set 2 (rejected), edit 3, set 4
    assert outs[2] == "command parse error before 'subnet'\nCommand fail. Return code -61"
    assert "Command fail" not in "".join(outs[:2] + outs[3:])
    assert "set subnet 203.0.113.0" not in device.running_config()
    run(session, ["execute cfg reload", "y"])

    device.faults.add(DROP_AFTER_FIRST_LINE)
    session = device.new_session("admin")
    run(session, ["config firewall address"])
    assert session.handle('edit "x"').close
    assert 'edit "x"' in device.running_config()
    run(device.new_session("admin"), ["execute cfg reload", "y"])
    assert device.running_config() == before

    device.faults.add(NO_RETURN_AFTER_COMMIT)
    session = device.new_session("admin")
    run(session, ["config firewall address"])
    assert session.handle('edit "y"').close
    assert not device.accepting
    device.tick(time.monotonic() + 600 / 60 * SCALE + 1)
    assert device.accepting and device.running_config() == before


# FortiOS static routes (a customer's additional addresses)

ROUTE_CHANGE = [
    "config router static",
    "edit 0",
    "set dst 198.51.100.20 255.255.255.255",
    "set gateway 198.51.100.10",
    'set device "port2"',
    'set comment "RH-12 additional IP"',
    "next",
    "end",
]
ROUTE_BLOCK = """config router static
    edit 1
        set dst 198.51.100.20 255.255.255.255
        set gateway 198.51.100.10
        set device "port2"
        set comment "RH-12 additional IP"
    next
end"""
TABLE = "Routing table for VRF=0\nS       198.51.100.20/32 [10/0] via 198.51.100.10, port2, [1/0]"


def test_fortios_network_static_route_applies_shows_and_deletes(tmp_path: Path) -> None:
    device = fgt(tmp_path)
    before = device.running_config()
    assert "config router static\nend\n" in before
    session = device.new_session("admin")
    assert run(session, ["get router info routing-table static"]) == ["Routing table for VRF=0"]
    prompts = []
    for line in ROUTE_CHANGE:
        assert session.handle(line).output == "", line
        prompts.append(session.prompt())
    assert prompts[:2] == ["fw-fgt-01 (static) # ", "fw-fgt-01 (1) # "]  # edit 0: the next free id
    assert run(session, ["show router static"]) == [ROUTE_BLOCK]
    assert ROUTE_BLOCK + "\n" in device.running_config()
    assert run(session, ["get router info routing-table static"]) == [TABLE]
    # a second route: the next id, a default route, and one whose gateway is on no subnet of its port
    more = ["config router static", "edit 0", "set gateway 203.0.113.1", 'set device "port1"', "next"]
    more += ["edit 0", "set dst 192.0.2.0/24", "set gateway 10.9.9.9", 'set device "port2"', "next", "end"]
    run(session, more)
    assert "    edit 3\n        set dst 192.0.2.0 255.255.255.0\n" in run(session, ["show router static"])[0]
    assert run(session, ["get router info routing-table static"]) == [
        "Routing table for VRF=0\nS*      0.0.0.0/0 [10/0] via 203.0.113.1, port1, [1/0]\n"
        + TABLE.split("\n")[1]
    ]
    assert run(session, ["config router static", "delete 2", "delete 3", "delete 1", "end"]) == [""] * 5
    assert device.running_config() == before
    assert run(session, ["get router info routing-table static"]) == ["Routing table for VRF=0"]
    # revert semantics are unchanged: an unsaved route goes with ``execute cfg reload``
    run(session, [*ROUTE_CHANGE, "execute cfg reload", "y"])
    assert device.running_config() == before


def test_fortios_network_static_route_rejections_change_nothing(tmp_path: Path) -> None:
    device = fgt(tmp_path)
    session = device.new_session("admin")
    run(session, [*ROUTE_CHANGE, "execute cfg save"])
    before = device.running_config()
    datasource = (
        "entry not found in datasource\n\nvalue parse error before 'port9'\nCommand fail. Return code -3"
    )
    cases = {
        "set dst 198.51.100.20 255.0.255.0": "value parse error before '255.0.255.0'\nCommand fail. Return code -8",
        "set dst 198.51.100.300 255.255.255.255": "value parse error before '255.255.255.255'\n"
        "Command fail. Return code -8",
        "set gateway 2001:db8::1": "value parse error before '2001:db8::1'\nCommand fail. Return code -8",
        'set device "port9"': datasource,
        "set metric 5": "command parse error before 'metric'\nCommand fail. Return code -61",
    }
    for line, refusal in cases.items():
        assert run(session, ["config router static", "edit 1", line, "end"])[2] == refusal, line
        assert device.running_config() == before, line
    outs = run(session, ["config router static", "edit web", "delete 7", "end"])
    assert outs[1] == "command parse error before 'web'\nCommand fail. Return code -61"
    assert outs[2].endswith("value parse error before '7'\nCommand fail. Return code -3")
    used = run(session, ["config system interface", 'delete "port2"', "end"])[1]
    assert used == "entry is used\nCommand fail. Return code -23"
    assert device.running_config() == before and device.revert_deadline is None
    # route lines count for the faults like any other change
    device.faults.add(REJECT_SECOND_LINE)
    outs = run(
        device.new_session("admin"), ["config router static", "edit 0", "set dst 198.51.100.21/32", "end"]
    )
    assert outs[2] == "command parse error before 'dst'\nCommand fail. Return code -61"
    assert "198.51.100.21" not in device.running_config()
