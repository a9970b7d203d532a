"""A large lab fleet for benchmarks: many simulated BMCs (IPMI) or Redfish systems, over several processes.

``start_fleet(state_dir, n)`` starts N ``SimulatedBmc`` on distinct loopback addresses (127.10.0.1,
127.10.0.2, ...; last octets 0 and 255 are skipped), all on the same UDP port: FreeIPMI's ``ipmipower``
labels its output by host without the port, so the address alone must tell BMCs apart. The BMCs are spread
over processes of at most ``per_process`` each (pyghmi ``select()``s on every socket of a process: stay well
under 1,024), started as ``python -m remotehands.lab.fleet ipmi --spec FILE``. ``start_fleet`` returns once
every process has probed each of its BMCs. Each process appends to its own command log
(``DIR/bmc-log-K.jsonl``, the format of ``remotehands.lab.bmc_sim``); ``Fleet.commands()`` counts them
per BMC.

``start_redfish_fleet(state_dir, n, processes=K)`` serves N Redfish systems from K processes: the lab's own
``serve_redfish`` (``emulator="lab"``), or sushy-tools' ``sushy-emulator --fake`` (``emulator="sushy-tools"``,
HTTP Basic with an htpasswd file, its power delay pinned to 1 s as in the contract suite). Each process is
one HTTPS service on 127.0.0.1 with its own lab CA.

Why the IPMI fleet process routes packets itself (``_route_by_address``): pyghmi's server files a session
under (client address, server *port*), and a client that talks to several BMCs of one process from one UDP
socket (pyghmi's client shares a socket among up to 64 sessions) would have its sessions mixed up, since
every BMC here has the same port: sessions are filed under (client address, server address and port).
And when a login starts from a client socket that already had a session with a BMC, pyghmi's session
object deletes *every* session of that client address, on every BMC of the process (measured: 12 of 200
status reads timed out on the second round of logins); such packets go straight to the BMC instead.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("remotehands.lab.fleet")

USERNAME = "admin"
FIRST_ADDRESS = "127.10.0.1"
PER_PROCESS = 200
MAX_PER_PROCESS = 400


class FleetError(RuntimeError):
    """A fleet process failed to start or to become ready; the message ends with its output."""


@dataclass(frozen=True)
class FleetBmc:
    name: str
    address: str
    port: int


@dataclass
class _Process:
    proc: subprocess.Popen[bytes]
    out_path: Path
    ready_path: Path


@dataclass
class _Group:
    """The processes of a fleet: started together, ready together, stopped together."""

    processes: list[_Process] = field(default_factory=list)

    def wait_ready(self, timeout: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        pending = list(self.processes)
        found: list[dict[str, Any]] = []
        while pending:
            for p in list(pending):
                if p.proc.poll() is not None:
                    self.stop()
                    raise FleetError(f"fleet process exited with {p.proc.returncode}:\n{_tail(p.out_path)}")
                with contextlib.suppress(OSError, ValueError):
                    found.append(json.loads(p.ready_path.read_text()))
                    pending.remove(p)
            if pending and time.monotonic() >= deadline:
                self.stop()
                raise FleetError(
                    f"{len(pending)} fleet process(es) not ready within {timeout:g}s:\n{_tail(pending[0].out_path)}"
                )
            if pending:
                time.sleep(0.05)
        return found

    def stop(self, timeout: float = 10.0) -> None:
        for p in self.processes:
            if p.proc.poll() is None:
                p.proc.terminate()
        deadline = time.monotonic() + timeout
        for p in self.processes:
            try:
                p.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.proc.kill()
                p.proc.wait()

    def pids(self) -> list[int]:
        return [p.proc.pid for p in self.processes]


class Fleet:
    """A running IPMI fleet. ``bmcs`` in address order; all share ``port``, ``username`` and the password
    in ``password_file`` (mode 0600). ``stop()`` ends every process (also on leaving a ``with`` block)."""

    def __init__(
        self, state_dir: Path, bmcs: list[FleetBmc], port: int, password_file: Path, group: _Group
    ) -> None:
        self.state_dir = state_dir
        self.bmcs = bmcs
        self.port = port
        self.username = USERNAME
        self.password_file = password_file
        self._group = group

    @property
    def addresses(self) -> list[str]:
        return [b.address for b in self.bmcs]

    @property
    def pids(self) -> list[int]:
        """Process ids of the simulator processes (for measuring their CPU)."""
        return self._group.pids()

    def password(self) -> str:
        return self.password_file.read_text().strip()

    def log_entries(self, command: str | None = None) -> Iterator[dict[str, Any]]:
        """Every complete line of every process's command log (optionally of one ``command``)."""
        for path in sorted(self.state_dir.glob("bmc-log-*.jsonl")):
            for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
                if not line.endswith("\n"):
                    break  # being written right now
                entry = json.loads(line)
                if command is None or entry.get("command") == command:
                    yield entry

    def commands(self, command: str | None = None, *, code: int | None = None) -> Counter[str]:
        """How many requests of ``command`` (all, when None) each BMC answered, by BMC name; with ``code``,
        only those answered with that completion code (0: carried out)."""
        return Counter(
            str(e["bmc"]) for e in self.log_entries(command) if code is None or e.get("code") == code
        )

    def stop(self) -> None:
        """Stop every fleet process (SIGTERM, then SIGKILL after 10 s). Safe to call twice."""
        self._group.stop()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def fleet_addresses(n: int, first: str = FIRST_ADDRESS) -> list[str]:
    """``n`` loopback addresses from ``first`` upwards, skipping last octets 0 and 255."""
    start = ipaddress.IPv4Address(first)
    if not start.is_loopback:
        raise ValueError(f"a fleet lives on loopback addresses only, not {first}")
    found: list[str] = []
    current = int(start)
    while len(found) < n:
        address = ipaddress.IPv4Address(current)
        if not address.is_loopback:
            raise ValueError(f"{n} addresses from {first} leave 127.0.0.0/8")
        if current & 0xFF not in (0, 255):
            found.append(str(address))
        current += 1
    return found


def free_udp_port(address: str) -> int:
    """A UDP port free on ``address`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def start_fleet(
    state_dir: Path,
    n: int,
    *,
    per_process: int = PER_PROCESS,
    port: int | None = None,
    first_address: str = FIRST_ADDRESS,
    cycle_delay: float = 1.0,
    timeout: float = 60.0,
) -> Fleet:
    """Start ``n`` simulated BMCs (``fleet-0001`` ...) and return once every one answers.

    Raises ``ValueError`` for a bad size or address, ``FleetError`` when a process fails or is not ready
    within ``timeout`` (the other processes are stopped then).
    """
    if n < 1 or not 1 <= per_process <= MAX_PER_PROCESS:
        raise ValueError(f"need n >= 1 and 1 <= per_process <= {MAX_PER_PROCESS}")
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*state_dir.glob("bmc-log-*.jsonl"), *state_dir.glob("ready-*.json")]:
        stale.unlink()
    addresses = fleet_addresses(n, first_address)
    port = port or free_udp_port(addresses[0])
    password_file = write_secret(state_dir / "secrets", "bmc_password")
    width = max(4, len(str(n)))
    bmcs = [FleetBmc(f"fleet-{i:0{width}d}", a, port) for i, a in enumerate(addresses, start=1)]
    group = _Group()
    try:
        for k, first in enumerate(range(0, n, per_process)):
            chunk = bmcs[first : first + per_process]
            spec = {
                "bmcs": [[b.name, b.address] for b in chunk],
                "port": port,
                "username": USERNAME,
                "password_file": str(password_file),
                "log": str(state_dir / f"bmc-log-{k}.jsonl"),
                "ready": str(state_dir / f"ready-{k}.json"),
                "cycle_delay": cycle_delay,
            }
            group.processes.append(_spawn(state_dir, f"ipmi-{k}", "ipmi", spec))
        group.wait_ready(timeout)
    except BaseException:
        group.stop()
        raise
    return Fleet(state_dir, bmcs, port, password_file, group)


# -- Redfish ---------------------------------------------------------------------------------------------


def write_secret(directory: Path, name: str) -> Path:
    """A random 16-character password in ``directory/name`` (dir 0700, file 0600; IPMI 2.0 allows 20)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(secrets.token_urlsafe(12) + "\n")
    return path


def _spawn(state_dir: Path, label: str, mode: str, spec: dict[str, Any]) -> _Process:
    spec_path = state_dir / f"spec-{label}.json"
    spec_path.write_text(json.dumps(spec))
    out_path = state_dir / f"{label}.out"
    with out_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "remotehands.lab.fleet", mode, "--spec", str(spec_path)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C meant for the benchmark does not kill the fleet first
        )
    return _Process(proc, out_path, Path(spec["ready"]))


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) or "(empty)"
    except OSError:
        return "(missing)"


def _write_ready(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), **data}))
    tmp.replace(path)


def _until_signalled() -> None:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass


# -- the fleet processes -----------------------------------------------------------------------------------


def _route_by_address() -> None:
    """Route packets by the BMC's address and port, and logins to the BMC (module docstring)."""
    from pyghmi.ipmi.private import session as ipmisession

    from remotehands.lab.bmc_sim_session import starts_login

    def graball(mysockets: Any, iowaiters: Any) -> list[Any]:
        sockaddrs = []
        for mysocket in mysockets:
            while True:
                rdata = ipmisession._io_recvfrom(mysocket, 3000)
                if rdata is None:
                    break
                if len(rdata[0]) < 4:
                    continue
                key = mysocket.getsockname()[:2]
                rdata = (*rdata, mysocket)
                relsession = None
                handlers = ipmisession.Session.bmc_handlers
                if starts_login(rdata[0]) and rdata[2] in handlers:
                    # A new login from a client socket that had a session here: pyghmi's old session object
                    # would drop every session of that client address, on every BMC of this process.
                    rdata = (*rdata, False)
                    relsession = handlers[rdata[2]][0]
                elif rdata[1] in handlers and key in handlers[rdata[1]]:
                    rdata = (*rdata, True)
                    relsession = handlers[rdata[1]][key]
                elif rdata[2] in handlers:
                    rdata = (*rdata, False)
                    relsession = handlers[rdata[2]][0]
                if relsession is not None:
                    relsession.pktqueue.append(rdata)
                    ipmisession.sessionqueue.append(relsession)
                if rdata[1] in iowaiters:
                    for waiter in iowaiters[rdata[1]]:
                        waiter[1].set()
                    del iowaiters[rdata[1]]
                sockaddrs.append(rdata[1])
        return sockaddrs

    ipmisession._io_graball = graball


def _serve_ipmi(spec: dict[str, Any]) -> int:
    from remotehands.lab.bmc_sim import CommandLog, SimulatedBmc, probe, serve_forever

    _route_by_address()
    password = Path(spec["password_file"]).read_text().strip()
    command_log = CommandLog(Path(spec["log"]))
    port = int(spec["port"])
    bmcs = []
    for name, address in spec["bmcs"]:
        bmc = SimulatedBmc(
            name,
            username=spec["username"],
            password=password,
            command_log=command_log,
            address=address,
            port=port,
            cycle_delay=float(spec["cycle_delay"]),
        )
        # pyghmi's server session files itself under bmc.port: make it the key graball looks up
        bmc.port = (address, port)
        bmcs.append(bmc)
    stop = threading.Event()
    threading.Thread(target=serve_forever, args=(stop,), name="ipmi-listener", daemon=True).start()
    for bmc in bmcs:
        if not any(probe(bmc.address, port, timeout=1.0) for _ in range(5)):
            raise RuntimeError(f"BMC {bmc.name} on {bmc.address}:{port} does not answer")
    _write_ready(Path(spec["ready"]), {"count": len(bmcs)})
    log.info("fleet process up: %d BMCs on port %d", len(bmcs), port)
    _until_signalled()
    for bmc in bmcs:
        bmc.stop()
    stop.set()
    command_log.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    from remotehands.lab.fleet_redfish import _serve_redfish, _serve_sushy

    """Command-line entry of one fleet process (started by ``start_fleet``/``start_redfish_fleet``)."""
    parser = argparse.ArgumentParser(
        prog="python -m remotehands.lab.fleet", description=__doc__.split("\n")[0]
    )
    parser.add_argument("mode", choices=("ipmi", "redfish", "sushy"))
    parser.add_argument("--spec", type=Path, required=True, help="JSON written by start_fleet")
    args = parser.parse_args(argv)
    spec = json.loads(args.spec.read_text())
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(process)d %(threadName)s %(levelname)s %(name)s: %(message)s",
    )
    serve = {"ipmi": _serve_ipmi, "redfish": _serve_redfish, "sushy": _serve_sushy}[args.mode]
    try:
        return serve(spec)
    except Exception as exc:
        log.exception("the fleet process failed")
        print(f"fleet process failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
