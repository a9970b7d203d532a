"""The lab BMC answers a second, independent IPMI client: ipmitool (Debian package, installed by make test).

This keeps the simulator honest: our driver and our simulator could agree on something wrong; ipmitool
decoding our SEL record as "Power Unit | Power cycle" shows the record is what the IPMI spec says.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.conftest import mark

IPMITOOL = shutil.which("ipmitool")


@pytest.fixture
def ipmitool(lab):
    if IPMITOOL is None:
        if os.environ.get("RH_REQUIRE_SERVICES"):
            pytest.fail("ipmitool is not installed; make test installs it when run as root")
        pytest.skip("ipmitool is not installed (Debian package ipmitool; make test installs it as root)")

    def run(host: str, *args: str) -> str:
        bmc = lab.hosts[host]
        cmd = [IPMITOOL, "-I", "lanplus", "-C", "3", "-H", bmc.address, "-p", str(bmc.port), "-U", "admin"]
        cmd += ["-f", str(lab.password_file), *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    return run


def test_ipmitool_reads_power_cycles_and_decodes_the_sel(lab, ipmitool):
    m = mark(lab, "esx-04")
    assert "Chassis Power is on" in ipmitool("esx-04", "chassis", "power", "status")
    assert "Cycle" in ipmitool("esx-04", "chassis", "power", "cycle")
    assert len(m.commands("cycle")) == 1
    sel = ipmitool("esx-04", "sel", "list")
    assert "Power Unit" in sel and "Power cycle" in sel
