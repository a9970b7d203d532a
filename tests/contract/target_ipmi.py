"""IPMI (pyghmi) against the lab's simulated BMC."""

from __future__ import annotations

import socket

import pytest

from remotehands.bmc.base import PowerAction
from remotehands.bmc.ipmi import IpmiPower
from remotehands.lab.process import read_bmc_log
from tests.contract.target import ContractTarget

FIXTURES = ["ipmi_lab_target"]

_COMMAND = {
    PowerAction.ON: "power_on",
    PowerAction.OFF: "power_off",
    PowerAction.CYCLE: "cycle",
    PowerAction.SOFT_OFF: "soft_off",
}


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def ipmi_lab_target(lab) -> ContractTarget:
    host = "esx-02"
    bmc = lab.hosts[host]

    def make(password: str | None = None, port: int | None = None, timeout: float = 3.0) -> IpmiPower:
        return IpmiPower(bmc.address, port or bmc.port, "admin", password or lab.password(), timeout=timeout)

    def received(action: PowerAction) -> int:
        return len(read_bmc_log(lab.log_path, host=host, command=_COMMAND[action]))

    return ContractTarget(
        "ipmi-lab", make, received, settle=3.0, secret=lab.password(), extra={"dead_port": _free_udp_port}
    )
