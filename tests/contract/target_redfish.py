"""Redfish (RedfishBmc) against the lab's own Redfish simulator and against sushy-tools' emulator.

- ``redfish_lab_target``: ``remotehands.lab.redfish_sim`` in this process, its lab CA pinned. ``received``
  counts the simulator's command-log lines of that kind that it carried out (status < 300).
- ``sushy_emulator_target``: ``sushy-emulator --fake`` (sushy-tools) in a subprocess on 127.0.0.1, HTTPS with
  a lab CA, an htpasswd file (bcrypt) so wrong credentials are refused, its SQLite state in a fresh
  directory. It has no session service, so the driver speaks HTTP Basic; it offers no ``PowerCycle``, so a
  cycle is ``ForceRestart``. ``received`` counts the emulator's own log lines ``System "<id>" power state
  set to "<ResetType>"``, which it writes after carrying a reset out (its INFO log, on stderr).

  The fake driver applies a power change 1-11 s (random) after the request, and has no setting for it.
  The emulator is started through ``python -c`` with ``random.randint`` pinned to its lower bound, so a
  change lands within a second; nothing else of the emulator is touched.

DMTF's static mockup (``sushy-static``) takes no writes: it is checked read-only in ``test_power_readonly``.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import bcrypt
import pytest

from remotehands.bmc.base import PowerAction
from remotehands.bmc.redfish import RedfishBmc
from remotehands.lab.bmc_sim import CommandLog
from remotehands.lab.lab_ca import issue_lab_tls
from remotehands.lab.process import read_bmc_log
from remotehands.lab.redfish_sim import serve_redfish
from tests.contract.target import ContractTarget

FIXTURES = ["redfish_lab_target", "sushy_emulator_target"]

_LAB_COMMAND = {
    PowerAction.ON: "power_on",
    PowerAction.OFF: "power_off",
    PowerAction.CYCLE: "cycle",
    PowerAction.SOFT_OFF: "soft_off",
}
_SUSHY_ACTION = {
    "On": PowerAction.ON,
    "ForceOn": PowerAction.ON,
    "ForceOff": PowerAction.OFF,
    "GracefulShutdown": PowerAction.SOFT_OFF,
    "ForceRestart": PowerAction.CYCLE,
    "GracefulRestart": PowerAction.CYCLE,
    "PowerCycle": PowerAction.CYCLE,
}
_SUSHY_RESET_LINE = re.compile(r'System "(?P<system>[^"]+)" power state set to "(?P<reset>[^"]+)"')
_SUSHY_LAUNCHER = (
    "import logging, random, sys\n"
    "random.randint = lambda low, high: low  # the fake driver's power delay: 1 s, not 1-11 s\n"
    "logging.basicConfig(level=logging.INFO, stream=sys.stderr, format='%(asctime)s %(name)s %(message)s')\n"
    "from sushy_tools.emulator.main import main\n"
    "sys.argv = ['sushy-emulator', *sys.argv[1:]]\n"
    "sys.exit(main())\n"
)


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def redfish_lab_target(tmp_path_factory: pytest.TempPathFactory):
    where = tmp_path_factory.mktemp("redfish-contract")
    log_path = where / "bmc-log.jsonl"
    command_log = CommandLog(log_path)
    host = "rf-contract"
    password = "lab-" + uuid.uuid4().hex[:12]
    lab = serve_redfish([host, "rf-other"], command_log, where / "ca", cycle_delay=0.5, password=password)

    def make(password: str | None = None, port: int | None = None, timeout: float = 3.0) -> RedfishBmc:
        return RedfishBmc(
            "127.0.0.1",
            port or lab.port,
            "admin",
            password or lab.password,
            system_id=host,
            tls_ca=str(lab.ca_file),
            timeout=timeout,
        )

    def received(action: PowerAction) -> int:
        lines = read_bmc_log(log_path, host=host, command=_LAB_COMMAND[action])
        return len([e for e in lines if int(e.get("status", 0)) < 300])

    try:
        yield ContractTarget(
            "redfish-lab", make, received, settle=3.0, secret=password, extra={"dead_port": free_tcp_port}
        )
    finally:
        lab.stop()
        command_log.close()


@pytest.fixture(scope="session")
def sushy_emulator_target(tmp_path_factory: pytest.TempPathFactory):
    where = tmp_path_factory.mktemp("sushy-emulator")
    tls = issue_lab_tls(where / "tls")
    secret = "sushy-" + uuid.uuid4().hex[:12]
    hashed = bcrypt.hashpw(secret.encode(), bcrypt.gensalt(rounds=4)).decode()  # checked on every request
    (where / "htpasswd").write_text(f"admin:{hashed}\n")
    system_uuid = str(uuid.uuid4())
    listen_port = free_tcp_port()
    config = where / "emulator.conf"
    config.write_text(
        f"SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'\n"
        f"SUSHY_EMULATOR_LISTEN_PORT = {listen_port}\n"
        f"SUSHY_EMULATOR_SSL_CERT = {str(tls.cert_file)!r}\n"
        f"SUSHY_EMULATOR_SSL_KEY = {str(tls.key_file)!r}\n"
        f"SUSHY_EMULATOR_AUTH_FILE = {str(where / 'htpasswd')!r}\n"
        f"SUSHY_EMULATOR_STATE_DIR = {str(where / 'state')!r}\n"
        "SUSHY_EMULATOR_FAKE_SYSTEMS = [{"
        f"'uuid': {system_uuid!r}, 'name': 'contract-01', 'power_state': 'On', "
        "'nics': [{'mac': '00:5c:52:31:3a:9c', 'ip': '172.22.0.100'}]}]\n"
    )
    log_path = where / "emulator.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", _SUSHY_LAUNCHER, "--fake", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_port(listen_port, proc, log_path)

        def make(password: str | None = None, port: int | None = None, timeout: float = 3.0) -> RedfishBmc:
            return RedfishBmc(
                "127.0.0.1",
                port or listen_port,
                "admin",
                password or secret,
                tls_ca=str(tls.ca_file),
                timeout=timeout,
            )

        def received(action: PowerAction) -> int:
            text = log_path.read_text(errors="replace")
            return len(
                [
                    m
                    for m in _SUSHY_RESET_LINE.finditer(text)
                    if m["system"] == system_uuid and _SUSHY_ACTION.get(m["reset"]) is action
                ]
            )

        yield ContractTarget(
            "sushy-emulator", make, received, settle=3.0, secret=secret, extra={"dead_port": free_tcp_port}
        )
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log_path: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"sushy-emulator exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(
        f"sushy-emulator did not listen on {port} within {timeout}s:\n{log_path.read_text(errors='replace')}"
    )
