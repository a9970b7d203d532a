"""Switched-PDU outlets (SnmpOutlet, SNMPv3 authPriv) against the lab's simulated APC rPDU and Raritan PX."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from remotehands.bmc.base import PowerAction
from remotehands.bmc.pdu import SnmpOutlet
from remotehands.lab.bmc_sim import CommandLog
from remotehands.lab.pdu_sim import PduLab, PduSpec, serve_pdus
from tests.contract.target import ContractTarget

FIXTURES = ["pdu_apc_rpdu_target", "pdu_raritan_target"]

V3_USER = "contract"
AUTH_KEY = "contract-auth-key-5521"
PRIV_KEY = "contract-priv-key-8812"
OUTLET = 2
_COMMAND = {
    PowerAction.ON: "outlet_on",
    PowerAction.OFF: "outlet_off",
    PowerAction.CYCLE: "outlet_reboot",
    PowerAction.SOFT_OFF: "outlet_soft_off",  # outlets have none; counted as zero
}


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_lab(tmp_path_factory: pytest.TempPathFactory) -> tuple[PduLab, CommandLog]:
    log = CommandLog(tmp_path_factory.mktemp("pdu-contract") / "commands.jsonl")
    specs = [
        PduSpec(
            name,
            model,
            8,
            {OUTLET: "mac-contract"},
            community="contract-community-1",
            v3_user=V3_USER,
            v3_auth_key=AUTH_KEY,
            v3_priv_key=PRIV_KEY,
        )
        for name, model in (("contract-apc", "apc-rpdu"), ("contract-raritan", "raritan-px"))
    ]
    return serve_pdus(specs, log, cycle_delay=0.5), log


def _target(name: str, lab: PduLab, log: CommandLog) -> ContractTarget:
    def make(password: str | None = None, port: int | None = None, timeout: float = 3.0) -> SnmpOutlet:
        return SnmpOutlet(
            "127.0.0.1",
            port or lab.port_of(name),
            OUTLET,
            version="v3",
            v3_user=V3_USER,
            v3_auth_key=password or AUTH_KEY,
            v3_priv_key=PRIV_KEY,
            expected_name="mac-contract",
            timeout=timeout,
        )

    def received(action: PowerAction) -> int:
        lines = (json.loads(line) for line in log.path.read_text().splitlines())
        return sum(1 for e in lines if e["bmc"] == name and e["command"] == _COMMAND[action])

    return ContractTarget(
        name, make, received, settle=2.0, secret=AUTH_KEY, extra={"dead_port": _free_udp_port}
    )


# The conftest registers only the fixtures named in FIXTURES, so the first target owns the lab (both PDUs)
# and the second one borrows it from the first.
@pytest.fixture(scope="session")
def pdu_apc_rpdu_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContractTarget]:
    lab, log = _start_lab(tmp_path_factory)
    target = _target("contract-apc", lab, log)
    target.extra.update(lab=lab, log=log)
    yield target
    lab.stop()
    log.close()


@pytest.fixture(scope="session")
def pdu_raritan_target(pdu_apc_rpdu_target: ContractTarget) -> ContractTarget:
    lab, log = pdu_apc_rpdu_target.extra["lab"], pdu_apc_rpdu_target.extra["log"]
    assert isinstance(lab, PduLab) and isinstance(log, CommandLog)
    return _target("contract-raritan", lab, log)
