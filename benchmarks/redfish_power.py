"""Bulk Redfish power status: remotehands against the ``redfish`` and ``sushy`` libraries, same services.

    python benchmarks/redfish_power.py                          # N = 1,000 systems on the lab's emulator
    python benchmarks/redfish_power.py --quick                  # N = 50
    python benchmarks/redfish_power.py --emulator sushy-tools   # sushy-tools' emulator (slower server)
    python benchmarks/redfish_power.py --emulator both

Serves N systems from K HTTPS services on 127.0.0.1 (``remotehands.lab.fleet_redfish.start_redfish_fleet``: the
lab's ``serve_redfish``, or ``sushy-emulator --fake``), then reads every system's power state with 16
threads, three ways, one after another on the same services:

- remotehands: ``RedfishBmc`` per system, one shared ``RedfishSessionPool`` (one session per service);
- ``redfish`` (DMTF): one ``redfish_client`` per service, logged in once (session, or Basic where the
  service has no session service), shared by the threads, a GET of each system, ``PowerState`` read;
- ``sushy``: one ``Sushy`` per service shared by the threads, ``get_system(uri).power_state``;
- with ``--per-host``, also ``redfish/host``: the ``redfish`` library one host at a time (connect, log
  in, GET, log out), as a script per host would use it.

The services are warmed up first by an untimed read of every system. Each client pins the service's lab
CA. Timed cold: from nothing connected to every state read, TLS
handshakes and logins included (the RESULT figures); then warm: every system read again on the same
sessions (logout untimed). Client CPU is this process's ``process_time`` (the services run in other
processes), per host.
Ends with ``RESULT n=.. status_s=.. cpu_ms_per_host=.. redfish_status_s=.. redfish_cpu_ms_per_host=..
sushy_status_s=.. sushy_cpu_ms_per_host=..`` (for the first emulator) and extra keys.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redfish  # type: ignore[import-untyped]
import requests.adapters
import sushy  # type: ignore[import-untyped]
import urllib3
from sushy import auth as sushy_auth

from remotehands.bmc.redfish import RedfishBmc
from remotehands.bmc.redfish_pool import RedfishSessionPool
from remotehands.errors import RemoteHandsError
from remotehands.lab.fleet_redfish import RedfishFleet, RedfishService, start_redfish_fleet

THREADS = 16


@dataclass
class Run:
    client: str
    wall: float
    cpu: float
    states: Counter[str]
    fleet_cpu: float
    warm_wall: float
    warm_cpu: float

    def ms_per_host(self, n: int) -> float:
        return self.cpu * 1000 / n

    def warm_ms_per_host(self, n: int) -> float:
        return self.warm_cpu * 1000 / n


def fleet_cpu(pids: list[int]) -> float:
    """CPU seconds of the service processes and their children (sushy-emulator runs as a child)."""
    total = 0
    for pid in pids:
        for task in [pid, *_children(pid)]:
            try:
                fields = Path(f"/proc/{task}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


Reader = tuple[Callable[[], list[str]], Callable[[], None]]  # read every system; close


def ours(fleet: RedfishFleet) -> Reader:
    password = fleet.password()
    pool = RedfishSessionPool(max_connections=THREADS)
    drivers = [
        RedfishBmc(
            service.address,
            service.port,
            fleet.username,
            password,
            system_id=system,
            tls_ca=str(service.ca_file),
            sessions=pool,
        )
        for service, system in fleet.systems()
    ]

    def read(driver: RedfishBmc) -> str:
        try:
            return driver.state().value
        except RemoteHandsError as exc:
            return f"error: {type(exc).__name__}"

    return lambda: threaded(read, drivers), pool.close


def redfish_library(fleet: RedfishFleet) -> Reader:
    password = fleet.password()
    auth = "session" if fleet.emulator == "lab" else "basic"  # sushy-tools has no session service
    clients: dict[int, Any] = {}
    for service in fleet.services:
        client = redfish.redfish_client(
            base_url=f"https://{service.address}:{service.port}",
            username=fleet.username,
            password=password,
            cafile=str(service.ca_file),
            https_adapter=requests.adapters.HTTPAdapter(pool_maxsize=THREADS),
        )
        client.login(auth=auth)
        clients[service.port] = client

    def read(item: tuple[RedfishService, str]) -> str:
        service, system = item
        try:
            reply = clients[service.port].get(f"/redfish/v1/Systems/{system}")
            return (
                str(reply.dict.get("PowerState")).lower() if reply.status == 200 else f"HTTP {reply.status}"
            )
        except Exception as exc:
            return f"error: {type(exc).__name__}"

    def close() -> None:
        for client in clients.values():
            client.logout()

    return lambda: threaded(read, fleet.systems()), close


def redfish_per_host(fleet: RedfishFleet) -> Reader:
    """The ``redfish`` library used one host at a time: connect, log in, GET, log out (no sharing)."""
    password = fleet.password()
    auth = "session" if fleet.emulator == "lab" else "basic"

    def read(item: tuple[RedfishService, str]) -> str:
        service, system = item
        try:
            client = redfish.redfish_client(
                base_url=f"https://{service.address}:{service.port}",
                username=fleet.username,
                password=password,
                cafile=str(service.ca_file),
            )
            client.login(auth=auth)
            try:
                reply = client.get(f"/redfish/v1/Systems/{system}")
            finally:
                client.logout()
            return (
                str(reply.dict.get("PowerState")).lower() if reply.status == 200 else f"HTTP {reply.status}"
            )
        except Exception as exc:
            return f"error: {type(exc).__name__}"

    return lambda: threaded(read, fleet.systems()), lambda: None


def sushy_library(fleet: RedfishFleet) -> Reader:
    password = fleet.password()
    roots: dict[int, Any] = {}
    for service in fleet.services:
        roots[service.port] = sushy.Sushy(
            f"https://{service.address}:{service.port}",
            verify=str(service.ca_file),
            auth=sushy_auth.SessionOrBasicAuth(username=fleet.username, password=password),
        )

    def read(item: tuple[RedfishService, str]) -> str:
        service, system = item
        try:
            state = roots[service.port].get_system(f"/redfish/v1/Systems/{system}").power_state
            return str(getattr(state, "value", state)).lower()
        except Exception as exc:
            return f"error: {type(exc).__name__}"

    def close() -> None:
        for root in roots.values():
            root._conn.close()  # logs the session out (Sushy itself has no close in sushy 5)

    return lambda: threaded(read, fleet.systems()), close


def threaded(read: Callable[[Any], str], items: list[Any]) -> list[str]:
    with ThreadPoolExecutor(THREADS) as threads:
        return list(threads.map(read, items))


def measure(fleet: RedfishFleet, client: str, open_client: Callable[[RedfishFleet], Reader]) -> Run:
    """Cold: connect, log in and read every system; then warm: read every system again."""
    fleet0, cpu0, t0 = fleet_cpu(fleet.pids), time.process_time(), time.perf_counter()
    read, close = open_client(fleet)
    states = read()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    cpu1, t1 = time.process_time(), time.perf_counter()
    warm_states = read()
    warm_wall, warm_cpu = time.perf_counter() - t1, time.process_time() - cpu1
    close()
    counts = Counter(states)
    if warm_states != states:
        counts["warm read differs"] += 1
    return Run(client, wall, cpu, counts, fleet_cpu(fleet.pids) - fleet0, warm_wall, warm_cpu)


def bench(emulator: str, n: int, processes: int, work_dir: Path, per_host: bool) -> dict[str, Run]:
    print(f"starting {n} Redfish systems on {processes} {emulator} service processes ...", flush=True)
    started = time.perf_counter()
    runs: dict[str, Run] = {}
    with start_redfish_fleet(work_dir / emulator, n, processes=processes, emulator=emulator) as fleet:
        print(f"services up in {time.perf_counter() - started:.1f}s", flush=True)
        # Untimed: sushy-tools' emulator spends about 30 s of CPU on the first read of its 1,000 systems
        # (its fake driver filling its SQLite state); whichever client went first would pay for it.
        warm_up = measure(fleet, "warm-up", redfish_library)
        print(f"  emulator warm-up (untimed) {warm_up.wall:.1f}s {dict(warm_up.states)}", flush=True)
        clients = [("remotehands", ours), ("redfish", redfish_library), ("sushy", sushy_library)]
        if per_host:
            clients.append(("redfish/host", redfish_per_host))
        for client, read in clients:
            run = measure(fleet, client, read)
            runs[client] = run
            print(
                f"  {client:<12} {run.wall:7.3f}s  {run.ms_per_host(n):6.3f} ms CPU/host  "
                f"(warm {run.warm_wall:.3f}s {run.warm_ms_per_host(n):.3f} ms)  {dict(run.states)}",
                flush=True,
            )
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 50")
    parser.add_argument("--n", type=int, default=1000, help="number of Redfish systems (default 1000)")
    parser.add_argument("--processes", type=int, default=4, help="service processes (default 4)")
    parser.add_argument("--emulator", choices=("lab", "sushy-tools", "both"), default="lab")
    parser.add_argument(
        "--per-host", action="store_true", help="also the redfish library with a session per host"
    )
    args = parser.parse_args()
    n = 50 if args.quick else args.n
    logging.basicConfig(level=logging.ERROR)  # sushy warns about every unverified TLS-less detail
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    work_dir = Path(tempfile.mkdtemp(prefix="rh-bench-redfish-"))
    emulators = ["lab", "sushy-tools"] if args.emulator == "both" else [args.emulator]
    results = {
        emulator: bench(emulator, n, args.processes, work_dir, args.per_host) for emulator in emulators
    }
    shutil.rmtree(work_dir, ignore_errors=True)
    print()
    print(f"Redfish power status of {n} systems, {THREADS} threads (ratio = wall / remotehands')")
    header = f"{'emulator':<12} {'client':<12} {'wall s':>8} {'ratio':>6} {'CPU s':>7} {'ms CPU/host':>11}"
    header += f" {'warm wall s':>11} {'warm ms/host':>12} {'server CPU s':>12}  states"
    print(header)
    print("-" * len(header))
    for emulator, runs in results.items():
        base = runs["remotehands"].wall
        for run in runs.values():
            print(
                f"{emulator:<12} {run.client:<12} {run.wall:8.3f} {run.wall / base:6.2f} {run.cpu:7.3f} "
                f"{run.ms_per_host(n):11.3f} {run.warm_wall:11.3f} {run.warm_ms_per_host(n):12.3f} "
                f"{run.fleet_cpu:12.2f}  {dict(run.states)}"
            )
    first = results[emulators[0]]
    ours_run = first["remotehands"]
    print()
    print(
        f"remotehands: {ours_run.ms_per_host(n):.3f} ms client CPU per host, logins and TLS included "
        f"({ours_run.warm_ms_per_host(n):.3f} ms warm; target <= 1 ms)"
    )
    fields = {
        "n": str(n),
        "status_s": f"{ours_run.wall:.3f}",
        "cpu_ms_per_host": f"{ours_run.ms_per_host(n):.3f}",
        "redfish_status_s": f"{first['redfish'].wall:.3f}",
        "redfish_cpu_ms_per_host": f"{first['redfish'].ms_per_host(n):.3f}",
        "sushy_status_s": f"{first['sushy'].wall:.3f}",
        "sushy_cpu_ms_per_host": f"{first['sushy'].ms_per_host(n):.3f}",
        "warm_cpu_ms_per_host": f"{ours_run.warm_ms_per_host(n):.3f}",
        "redfish_warm_cpu_ms_per_host": f"{first['redfish'].warm_ms_per_host(n):.3f}",
        "sushy_warm_cpu_ms_per_host": f"{first['sushy'].warm_ms_per_host(n):.3f}",
        "emulator": emulators[0],
        "all_read": str(
            all(set(r.states) <= {"on", "off"} for runs in results.values() for r in runs.values())
        ).lower(),
    }
    if "redfish/host" in first:
        fields["redfish_per_host_status_s"] = f"{first['redfish/host'].wall:.3f}"
        fields["redfish_per_host_cpu_ms_per_host"] = f"{first['redfish/host'].ms_per_host(n):.3f}"
    if len(emulators) > 1:
        second = results[emulators[1]]
        for client, key in (("remotehands", ""), ("redfish", "redfish_"), ("sushy", "sushy_")):
            fields[f"sushytools_{key}status_s"] = f"{second[client].wall:.3f}"
            fields[f"sushytools_{key}cpu_ms_per_host"] = f"{second[client].ms_per_host(n):.3f}"
    print("RESULT " + " ".join(f"{k}={v}" for k, v in fields.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
