"""Redfish fleets for the Redfish benchmark: the lab's own Redfish service or sushy-tools' emulator, in K
processes serving M systems between them (started through ``remotehands.lab.fleet``'s process entry)."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remotehands.lab.fleet import (
    USERNAME,
    _Group,
    _spawn,
    _until_signalled,
    _write_ready,
    write_secret,
)

log = logging.getLogger("remotehands.lab.fleet")

SUSHY_LAUNCHER = (
    "import logging, random, sys\n"
    "random.randint = lambda low, high: low  # the fake driver's power delay: 1 s, not 1-11 s\n"
    "logging.basicConfig(level=logging.INFO, stream=sys.stderr, format='%(asctime)s %(name)s %(message)s')\n"
    "from sushy_tools.emulator.main import main\n"
    "sys.argv = ['sushy-emulator', *sys.argv[1:]]\n"
    "sys.exit(main())\n"
)


@dataclass(frozen=True)
class RedfishService:
    """One HTTPS Redfish service of a fleet and the system ids it serves."""

    address: str
    port: int
    ca_file: Path
    systems: tuple[str, ...]
    pid: int


class RedfishFleet:
    """Running Redfish services. ``services``; credentials ``username`` and ``password()``; ``stop()``."""

    def __init__(
        self, emulator: str, services: list[RedfishService], password_file: Path, group: _Group
    ) -> None:
        self.emulator = emulator
        self.services = services
        self.username = USERNAME
        self.password_file = password_file
        self._group = group

    @property
    def pids(self) -> list[int]:
        return self._group.pids()

    def password(self) -> str:
        return self.password_file.read_text().strip()

    def systems(self) -> list[tuple[RedfishService, str]]:
        """Every (service, system id), in service order."""
        return [(s, system) for s in self.services for system in s.systems]

    def stop(self) -> None:
        """Stop every service process. Safe to call twice."""
        self._group.stop()

    def __enter__(self) -> RedfishFleet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_redfish_fleet(
    state_dir: Path,
    n: int,
    *,
    processes: int = 4,
    emulator: str = "lab",
    cycle_delay: float = 1.0,
    timeout: float = 60.0,
) -> RedfishFleet:
    """Serve ``n`` Redfish systems (``rf-0001`` ...) from ``processes`` HTTPS services on 127.0.0.1.

    ``emulator`` is ``lab`` (``remotehands.lab.redfish_sim``) or ``sushy-tools`` (``sushy-emulator
    --fake``; system ids are then UUIDs, names ``rf-NNNN``). Raises ``ValueError`` for a bad argument and
    ``FleetError`` when a service fails to start within ``timeout``.
    """
    if emulator not in ("lab", "sushy-tools"):
        raise ValueError(f"emulator is lab or sushy-tools, not {emulator!r}")
    if n < 1 or processes < 1:
        raise ValueError("need n >= 1 and processes >= 1")
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    for stale in state_dir.glob("ready-*.json"):
        stale.unlink()
    password_file = write_secret(state_dir / "secrets", "redfish_password")
    width = max(4, len(str(n)))
    names = [f"rf-{i:0{width}d}" for i in range(1, n + 1)]
    per = -(-n // processes)
    group = _Group()
    try:
        for k, first in enumerate(range(0, n, per)):
            spec = {
                "systems": names[first : first + per],
                "username": USERNAME,
                "password_file": str(password_file),
                "dir": str(state_dir / f"{emulator}-{k}"),
                "ready": str(state_dir / f"ready-{k}.json"),
                "cycle_delay": cycle_delay,
            }
            mode = "redfish" if emulator == "lab" else "sushy"
            group.processes.append(_spawn(state_dir, f"{mode}-{k}", mode, spec))
        ready = group.wait_ready(timeout)
    except BaseException:
        group.stop()
        raise
    services = sorted(
        (
            RedfishService(
                "127.0.0.1", int(r["port"]), Path(r["ca_file"]), tuple(r["systems"]), int(r["pid"])
            )
            for r in ready
        ),
        key=lambda s: s.systems[0],
    )
    return RedfishFleet(emulator, services, password_file, group)


# -- shared helpers ----------------------------------------------------------------------------------------


def _serve_redfish(spec: dict[str, Any]) -> int:
    from remotehands.lab.bmc_sim import CommandLog
    from remotehands.lab.redfish_sim import serve_redfish

    where = Path(spec["dir"])
    where.mkdir(parents=True, exist_ok=True)
    command_log = CommandLog(where / "bmc-log.jsonl")
    lab = serve_redfish(
        list(spec["systems"]),
        command_log,
        where / "ca",
        cycle_delay=float(spec["cycle_delay"]),
        username=spec["username"],
        password=Path(spec["password_file"]).read_text().strip(),
    )
    _write_ready(
        Path(spec["ready"]), {"port": lab.port, "ca_file": str(lab.ca_file), "systems": spec["systems"]}
    )
    _until_signalled()
    lab.stop()
    command_log.close()
    return 0


def _serve_sushy(spec: dict[str, Any]) -> int:
    """Run one ``sushy-emulator --fake`` for ``spec["systems"]`` as a child; report it ready once it listens."""
    import uuid

    import bcrypt

    from remotehands.lab.lab_ca import issue_lab_tls

    where = Path(spec["dir"])
    where.mkdir(parents=True, exist_ok=True)
    tls = issue_lab_tls(where / "tls")
    password = Path(spec["password_file"]).read_text().strip()
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()  # checked per request
    (where / "htpasswd").write_text(f"{spec['username']}:{hashed}\n")
    systems = [
        {"uuid": str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}.fleet")), "name": name, "power_state": "On"}
        for name in spec["systems"]
    ]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    state = where / "state"
    if state.exists():  # the fake driver keeps its state across runs: start clean
        for stale in state.iterdir():
            stale.unlink()
    config = where / "emulator.conf"
    config.write_text(
        f"SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'\n"
        f"SUSHY_EMULATOR_LISTEN_PORT = {port}\n"
        f"SUSHY_EMULATOR_SSL_CERT = {str(tls.cert_file)!r}\n"
        f"SUSHY_EMULATOR_SSL_KEY = {str(tls.key_file)!r}\n"
        f"SUSHY_EMULATOR_AUTH_FILE = {str(where / 'htpasswd')!r}\n"
        f"SUSHY_EMULATOR_STATE_DIR = {str(state)!r}\n"
        f"SUSHY_EMULATOR_FAKE_SYSTEMS = {systems!r}\n"
    )
    with (where / "emulator.log").open("wb") as out:
        child = subprocess.Popen(
            [sys.executable, "-c", SUSHY_LAUNCHER, "--fake", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        while True:
            if child.poll() is not None:
                raise RuntimeError(f"sushy-emulator exited with {child.returncode}; see {where}/emulator.log")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.1)
        ids = [s["uuid"] for s in systems]
        _write_ready(
            Path(spec["ready"]),
            {"port": port, "ca_file": str(tls.ca_file), "systems": ids, "child": child.pid},
        )
        _until_signalled()
    finally:
        child.terminate()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return 0
