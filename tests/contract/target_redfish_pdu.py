"""A Redfish rack PDU's outlet (RedfishOutlet) against the lab's Redfish simulator, its lab CA pinned.

The service has one rack PDU, so the driver is given no PDU id and finds it. The outlet's name is checked
before every change. ``received`` counts the PowerControl lines of that outlet the simulator carried out
(status < 300); an outlet has no soft-off, so SOFT_OFF counts none.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import pytest

from remotehands.bmc.base import PowerAction
from remotehands.bmc.redfish_outlet import RedfishOutlet
from remotehands.lab.bmc_sim import CommandLog
from remotehands.lab.process import read_bmc_log
from remotehands.lab.redfish_sim import serve_redfish
from tests.contract.target import ContractTarget

FIXTURES = ["redfish_pdu_target"]

PDU = "contract-rack-pdu"
OUTLET = "2"
_COMMAND = {
    PowerAction.ON: "outlet_on",
    PowerAction.OFF: "outlet_off",
    PowerAction.CYCLE: "outlet_power_cycle",
    PowerAction.SOFT_OFF: "outlet_soft_off",  # outlets have none; counted as zero
}


def _free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def redfish_pdu_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContractTarget]:
    where = tmp_path_factory.mktemp("redfish-pdu-contract")
    log_path = where / "bmc-log.jsonl"
    command_log = CommandLog(log_path)
    password = "lab-" + uuid.uuid4().hex[:12]
    lab = serve_redfish(
        [],
        command_log,
        where / "ca",
        cycle_delay=0.5,
        password=password,
        pdus={PDU: ["mac-a", "mac-contract", "mac-c"]},
    )

    def make(password: str | None = None, port: int | None = None, timeout: float = 3.0) -> RedfishOutlet:
        return RedfishOutlet(
            "127.0.0.1",
            port or lab.port,
            "admin",
            password or lab.password,
            outlet=int(OUTLET),
            expected_name="mac-contract",
            tls_ca=str(lab.ca_file),
            timeout=timeout,
        )

    def received(action: PowerAction) -> int:
        lines = read_bmc_log(log_path, host=PDU, command=_COMMAND[action])
        return len([e for e in lines if e.get("outlet") == OUTLET and int(e.get("status", 0)) < 300])

    try:
        yield ContractTarget(
            "redfish-pdu", make, received, settle=2.0, secret=password, extra={"dead_port": _free_tcp_port}
        )
    finally:
        lab.stop()
        command_log.close()
