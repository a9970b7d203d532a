"""IPMI (pyghmi) against a third-party simulator: OpenIPMI's ``ipmi_sim`` (Debian package openipmi).

ipmi_sim switches power through a chassis-control program (NOTES-simulators.md); ours keeps the state in a
file and logs every call, so the log is what the simulator executed. ipmi_sim performs a chassis "cycle"
as ``set power 0`` then ``set power 1`` about a second later: a cycle counts as an off followed by an on
within 3 s.
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from remotehands.bmc.base import PowerAction
from remotehands.bmc.ipmi import IpmiPower
from tests.contract.target import ContractTarget

FIXTURES = ["ipmi_sim_target"]

CHASSIS = """#!/bin/sh
# ipmi_sim chassis_control program: DEVICE get power | set power 0|1 | set boot ...
dir=$(dirname "$0")
[ -f "$dir/power" ] || echo 1 > "$dir/power"
echo "$(date +%s.%N) $*" >> "$dir/commands.log"
case "$2 $3" in
  "get power") echo "power:$(cat "$dir/power")" ;;
  "set power") echo "$4" > "$dir/power" ;;
esac
exit 0
"""


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _sets(log: Path) -> list[tuple[float, str]]:
    if not log.exists():
        return []
    found = []
    for line in log.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[2:4] == ["set", "power"]:
            found.append((float(parts[0]), parts[4]))
    return found


def _cycles(sets: list[tuple[float, str]]) -> int:
    return sum(1 for (t0, a), (t1, b) in itertools.pairwise(sets) if a == "0" and b == "1" and t1 - t0 < 3)


@pytest.fixture(scope="session")
def ipmi_sim_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContractTarget]:
    binary = shutil.which("ipmi_sim")
    if binary is None:
        if os.environ.get("RH_REQUIRE_SERVICES"):
            pytest.fail("ipmi_sim is not installed; make test installs Debian's openipmi when run as root")
        pytest.skip("ipmi_sim is not installed (Debian package openipmi; make test installs it as root)")
    where = tmp_path_factory.mktemp("ipmi_sim")
    sim_password = secrets.token_urlsafe(9)
    sim_port = _free_udp_port()
    chassis = where / "chassis.sh"
    chassis.write_text(CHASSIS)
    chassis.chmod(0o700)
    conf = where / "lan.conf"
    conf.write_text(
        f"""name "rhsim"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 {sim_port}
    priv_limit admin
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "{chassis} 0x20"
  user 2 true "admin" "{sim_password}" admin 10 none md2 md5 straight
"""
    )
    conf.chmod(0o600)
    emu = where / "sim.emu"
    emu.write_text(
        "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\n"
        "sel_enable 0x20 1000 0x0a\nmc_enable 0x20\n"
    )
    (where / "state").mkdir()
    out = (where / "ipmi_sim.out").open("wb")
    proc = subprocess.Popen(
        [binary, "-c", str(conf), "-f", str(emu), "-s", str(where / "state"), "-n"],
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:
        probe = IpmiPower("127.0.0.1", sim_port, "admin", sim_password, timeout=2)
        deadline = time.monotonic() + 15
        while True:
            try:
                probe.state()
                break
            except Exception:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        probe.close()
        log = where / "commands.log"

        def make(password: str | None = None, port: int | None = None, timeout: float = 3.0) -> IpmiPower:
            return IpmiPower(
                "127.0.0.1", port or sim_port, "admin", password or sim_password, timeout=timeout
            )

        def received(action: PowerAction) -> int:
            sets = _sets(log)
            if action is PowerAction.CYCLE:
                return _cycles(sets)
            want = "1" if action is PowerAction.ON else "0"
            return sum(1 for _, value in sets if value == want)

        yield ContractTarget(
            "ipmi_sim", make, received, settle=4.0, secret=sim_password, extra={"dead_port": _free_udp_port}
        )
    finally:
        proc.terminate()
        proc.wait(5)
        out.close()
