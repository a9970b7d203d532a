"""Bulk IPMI status and cycle+confirm (``remotehands.bmc.ipmi_bulk``) against a small lab fleet.

Correctness only; speed is measured by ``benchmarks/power.py``. The fleet: 24 simulated BMCs on distinct
127.30.0.x addresses, one UDP port, over two processes. The ipmipower tests need FreeIPMI's ipmipower
(Debian package freeipmi-tools): skipped without it, failed without it when RH_REQUIRE_SERVICES is set.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from remotehands.bmc.base import Confirmation, PowerAction, PowerState
from remotehands.bmc.ipmi import IpmiPower
from remotehands.bmc.ipmi_bulk import (
    IpmipowerRunner,
    IpmiTarget,
    Route,
    bulk_cycle_and_confirm,
    bulk_status,
    ipmipower_path,
    plan,
)
from remotehands.errors import DeviceRefused, DeviceUnreachable, InvalidRequest
from remotehands.lab.fleet import Fleet, start_fleet

pytestmark = pytest.mark.slow

FLEET = 24
DEAD = "127.30.9.9"  # nothing listens there


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory):
    with start_fleet(
        tmp_path_factory.mktemp("fleet"), FLEET, per_process=12, first_address="127.30.0.1", cycle_delay=0.5
    ) as running:
        yield running


@pytest.fixture
def needs_ipmipower():
    if ipmipower_path() is None:
        if os.environ.get("RH_REQUIRE_SERVICES"):
            pytest.fail(
                "ipmipower is not installed (Debian package freeipmi-tools; make test installs it as root)"
            )
        pytest.skip(
            "ipmipower is not installed (Debian package freeipmi-tools; make test installs it as root)"
        )


def targets(fleet: Fleet, count: int = 20, *, password: str | None = None) -> list[IpmiTarget]:
    secret = fleet.password() if password is None else password
    return [IpmiTarget(b.name, b.address, b.port, fleet.username, secret) for b in fleet.bmcs[:count]]


def cycles_since(fleet: Fleet, before: Counter[str]) -> Counter[str]:
    time.sleep(0.1)  # the fleet processes flush each line as they answer; give the last one a moment
    return fleet.commands("cycle", code=0) - before


def test_plan_sends_groups_to_ipmipower_and_the_rest_to_pyghmi(fleet, needs_ipmipower):
    many = targets(fleet, 10)
    odd = IpmiTarget("odd", "127.30.0.99", fleet.port, "admin", 'has "quotes"')
    other_port = IpmiTarget("other-port", "127.30.0.98", fleet.port + 1, "admin", "secret1")
    same_bmc = IpmiTarget("same-bmc", many[0].address, fleet.port, "admin", "secret1")
    batches, refused = plan([*many, odd, other_port, same_bmc])
    routes = {b.route: {t.name for t in b.targets} for b in batches}
    assert routes[Route.IPMIPOWER] == {t.name for t in many}
    assert routes[Route.PYGHMI] == {"odd", "other-port"}
    assert isinstance(refused["same-bmc"], InvalidRequest) and many[0].name in str(refused["same-bmc"])
    assert {b.route for b in plan(many, method="pyghmi")[0]} == {Route.PYGHMI}
    with pytest.raises(InvalidRequest):
        plan([many[0], many[0]])


def test_status_of_every_bmc_through_ipmipower(fleet, needs_ipmipower):
    found = bulk_status(targets(fleet))
    assert found == {b.name: PowerState.ON for b in fleet.bmcs[:20]}


def test_status_of_every_bmc_through_pyghmi(fleet):
    found = bulk_status(targets(fleet), method="pyghmi")
    assert found == {b.name: PowerState.ON for b in fleet.bmcs[:20]}


@pytest.mark.parametrize("method", ["ipmipower", "pyghmi"])
def test_cycle_and_confirm_cycles_each_bmc_exactly_once(fleet, method, request):
    if method == "ipmipower":
        request.getfixturevalue("needs_ipmipower")
    chosen = targets(fleet)
    before = fleet.commands("cycle", code=0)
    found = bulk_cycle_and_confirm(chosen, method=method, timeout=15)
    assert all(isinstance(v, Confirmation) for v in found.values()), found
    assert {name for name, v in found.items() if v.state is PowerState.ON} == {t.name for t in chosen}
    assert cycles_since(fleet, before) == Counter({t.name: 1 for t in chosen})


@pytest.mark.parametrize("method", ["ipmipower", "pyghmi"])
def test_dead_bmc_and_wrong_password_are_reported_per_host(fleet, method, request):
    if method == "ipmipower":
        request.getfixturevalue("needs_ipmipower")
    good = targets(fleet, 18)
    dead = IpmiTarget("dead", DEAD, fleet.port, fleet.username, fleet.password())
    wrong = IpmiTarget("wrong", fleet.bmcs[18].address, fleet.port, fleet.username, "not-the-password")
    found = bulk_status([*good, dead, wrong], method=method, timeout=2)
    assert {t.name: found[t.name] for t in good} == {t.name: PowerState.ON for t in good}
    assert isinstance(found["dead"], DeviceUnreachable) and DEAD in str(found["dead"])
    assert isinstance(found["wrong"], DeviceRefused), found["wrong"]
    assert "not-the-password" not in str(found["wrong"])
    if method == "ipmipower":
        assert "connection timeout" in str(found["dead"]) and "password invalid" in str(found["wrong"])


def test_cycle_reports_each_failure_and_cycles_only_the_others(fleet, needs_ipmipower):
    good = targets(fleet, 16)
    off = fleet.bmcs[16]
    dead = IpmiTarget("dead", DEAD, fleet.port, fleet.username, fleet.password())
    wrong = IpmiTarget("wrong", fleet.bmcs[17].address, fleet.port, fleet.username, "not-the-password")
    was_off = IpmiTarget(off.name, off.address, off.port, fleet.username, fleet.password())
    with IpmiPower(off.address, off.port, fleet.username, fleet.password(), timeout=3) as driver:
        driver.set_state(PowerAction.OFF)
    before = fleet.commands("cycle", code=0)
    try:
        found = bulk_cycle_and_confirm(
            [*good, dead, wrong, was_off], method="ipmipower", timeout=3, session_timeout=2
        )
    finally:
        with IpmiPower(off.address, off.port, fleet.username, fleet.password(), timeout=3) as driver:
            driver.set_state(PowerAction.ON)
    assert all(isinstance(found[t.name], Confirmation) for t in good), found
    assert isinstance(found["dead"], DeviceUnreachable), found["dead"]
    assert isinstance(found["wrong"], DeviceRefused), found["wrong"]
    # a BMC refuses to cycle a host that is off (0xD5), and ipmipower prints nothing for it
    assert isinstance(found[off.name], DeviceRefused) and "reads off" in str(found[off.name])
    assert cycles_since(fleet, before) == Counter({t.name: 1 for t in good})


def test_credentials_travel_in_a_private_file_never_on_the_command_line(fleet, needs_ipmipower):
    """While ipmipower runs (held up by a dead BMC), its argv and environment hold no password, its
    config file is 0600 in a 0700 directory; afterwards both are gone."""
    password = fleet.password()
    chosen = [*targets(fleet, 8), IpmiTarget("dead", DEAD, fleet.port, fleet.username, password)]
    seen: list[tuple[bytes, bytes, Path, int, int]] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set() and not seen:
            for proc in Path("/proc").iterdir():
                try:
                    argv = (proc / "cmdline").read_bytes()
                    if b"ipmipower" not in argv or b"--config-file" not in argv or DEAD.encode() not in argv:
                        continue
                    args = argv.split(b"\0")
                    config = Path(args[args.index(b"--config-file") + 1].decode())
                    seen.append(
                        (
                            argv,
                            (proc / "environ").read_bytes(),
                            config,
                            config.stat().st_mode,
                            config.parent.stat().st_mode,
                        )
                    )
                    return
                except (OSError, ValueError):
                    continue
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        found = bulk_status(chosen, method="ipmipower", timeout=2)
    finally:
        done.set()
        watcher.join()
    assert isinstance(found["dead"], DeviceUnreachable)
    assert seen, "no running ipmipower was seen"
    argv, environ, config, file_mode, dir_mode = seen[0]
    assert password.encode() not in argv and password.encode() not in environ
    assert b"-D\0LAN_2_0" in argv
    assert stat.S_IMODE(file_mode) == 0o600 and stat.S_IMODE(dir_mode) == 0o700
    assert not config.exists() and not config.parent.exists()


def test_the_command_line_built_holds_no_secret(fleet, needs_ipmipower):
    chosen = targets(fleet, 3, password="s3cret-Value")
    with IpmipowerRunner(chosen) as runner:
        argv = runner.argv("--cycle", chosen)
        assert runner.config_file is not None
        assert runner.config_file.read_text() == "username admin\npassword s3cret-Value\n"
    assert not any("s3cret" in arg for arg in argv)
    assert argv[argv.index("-h") + 1] == ",".join(f"{t.address}:{t.port}" for t in chosen)
    assert argv[-1] == "--cycle"
