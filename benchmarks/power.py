"""Bulk IPMI power: remotehands against FreeIPMI's ipmipower and ipmitool, on one lab fleet, in one run.

    python benchmarks/power.py            # N = 1,000 (and --n 200 for the other size)
    python benchmarks/power.py --quick    # N = 50

Starts a fleet of N simulated BMCs on distinct 127.x.y.z addresses (``remotehands.lab.fleet``, 200 per
process), then times on that fleet, one after another:

- remotehands ``bulk_status`` and ``bulk_cycle_and_confirm`` (``remotehands.bmc.ipmi_bulk``, its automatic
  choice: ipmipower for N >= 8 sharing credentials and port), and the same forced onto its pyghmi path;
- ``ipmipower -D LAN_2_0 --stat``, and ``--cycle`` then ``--stat`` (credentials in a 0600 config file);
  and, as ``cycle, stat*``, ``--cycle`` then ``--stat`` of the rest until every host has read on: the
  confirmation ours does (the simulated BMCs stay off 1 s in a cycle, which plain ``cycle, stat`` skips);
- ``ipmitool -I lanplus -C 3`` through ``xargs -P16`` (password by ``-f FILE``), status, and cycle then status.

Wall time, client CPU (this process's ``process_time`` for in-process work plus ``getrusage`` of waited-for
children for tools), and the CPU the fleet processes spent meanwhile. Before every cycle the whole fleet is
seen on again. Every tool's cycles are counted in the fleet's command log (completion code 0 = carried
out). Ends with ``RESULT n=.. status_s=.. cycle_s=.. ipmipower_status_s=.. ipmipower_cycle_s=..
ipmitool_status_s=.. ipmitool_cycle_s=..`` and extra keys.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from remotehands.bmc.base import Confirmation, PowerState
from remotehands.bmc.ipmi_bulk import IpmiTarget, bulk_cycle_and_confirm, bulk_status, ipmipower_path
from remotehands.lab.fleet import Fleet, start_fleet

IPMITOOL_THREADS = 16


@dataclass
class Run:
    tool: str
    operation: str
    wall: float
    cpu: float  # client: this process + waited-for children
    fleet_cpu: float
    ok: int
    failed: int
    cycles: Counter[int] | None = None  # per BMC: how many cycles with completion code 0 it carried out

    def cpu_ms_per_host(self, n: int) -> float:
        return self.cpu * 1000 / n


def cpu_now() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def fleet_cpu(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


def measure(fleet: Fleet, tool: str, operation: str, work: Callable[[], tuple[int, int]]) -> Run:
    cycles_before = fleet.commands("cycle", code=0)
    cpu0, fleet0, t0 = cpu_now(), fleet_cpu(fleet.pids), time.perf_counter()
    ok, failed = work()
    wall = time.perf_counter() - t0
    run = Run(tool, operation, wall, cpu_now() - cpu0, fleet_cpu(fleet.pids) - fleet0, ok, failed)
    if "cycle" in operation:
        time.sleep(0.2)  # the last log lines are flushed by the fleet processes
        after = fleet.commands("cycle", code=0)
        run.cycles = Counter(after[b.name] - cycles_before[b.name] for b in fleet.bmcs)
    return run


def settle(fleet: Fleet, config: Path, timeout: float = 60.0) -> None:
    """Wait until every BMC of the fleet reads on (after a cycle), so the next tool starts equal."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = ipmipower(fleet, config, "--stat").splitlines()
        if sum(line.endswith(": on") for line in lines) == len(fleet.bmcs):
            return
        time.sleep(0.5)
    raise SystemExit("the fleet did not come back on within 60 s")


def ipmipower(fleet: Fleet, config: Path, operation: str) -> str:
    return ipmipower_hosts(fleet, config, operation, fleet.addresses)


def ipmipower_hosts(fleet: Fleet, config: Path, operation: str, addresses: list[str]) -> str:
    hosts = ",".join(f"{a}:{fleet.port}" for a in addresses)
    argv = [ipmipower_bin(), "-D", "LAN_2_0", "--config-file", str(config), "--always-prefix", "-h", hosts]
    done = subprocess.run([*argv, operation], capture_output=True, text=True, check=False)
    return done.stdout


def ipmipower_bin() -> str:
    path = ipmipower_path()
    if path is None:
        raise SystemExit("ipmipower is not installed (Debian package freeipmi-tools)")
    return path


def count(lines: str, good: tuple[str, ...]) -> tuple[int, int]:
    ok = sum(1 for line in lines.splitlines() if line.rpartition(": ")[2] in good)
    return ok, 0


def ipmitool(fleet: Fleet, *command: str) -> tuple[int, int]:
    """ipmitool for every BMC, 16 at a time (xargs -P16); the password comes from the fleet's 0600 file."""
    argv = ["xargs", "-P", str(IPMITOOL_THREADS), "-I", "{}"]
    argv += ["ipmitool", "-I", "lanplus", "-C", "3", "-H", "{}", "-p", str(fleet.port), "-U", fleet.username]
    argv += ["-f", str(fleet.password_file), *command]
    done = subprocess.run(
        argv, input="\n".join(fleet.addresses) + "\n", capture_output=True, text=True, check=False
    )
    ok = sum(
        1
        for line in done.stdout.splitlines()
        if line.startswith(("Chassis Power is", "Chassis Power Control"))
    )
    return ok, len(fleet.bmcs) - ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 50")
    parser.add_argument("--n", type=int, default=1000, help="number of simulated BMCs (default 1000)")
    parser.add_argument("--per-process", type=int, default=200, help="BMCs per fleet process")
    parser.add_argument("--no-ipmitool", action="store_true", help="skip ipmitool (slow: about 40 ms/host)")
    parser.add_argument("--no-pyghmi", action="store_true", help="skip remotehands' pyghmi path")
    args = parser.parse_args()
    n = 50 if args.quick else args.n
    if shutil.which("ipmitool") is None and not args.no_ipmitool:
        raise SystemExit("ipmitool is not installed (Debian package ipmitool); or pass --no-ipmitool")
    ipmipower_bin()
    work_dir = Path(tempfile.mkdtemp(prefix="rh-bench-power-"))
    print(f"starting a fleet of {n} simulated BMCs in {work_dir} ...", flush=True)
    started = time.perf_counter()
    with start_fleet(work_dir / "fleet", n, per_process=args.per_process) as fleet:
        print(
            f"fleet up in {time.perf_counter() - started:.1f}s: {len(fleet.pids)} processes, "
            f"{fleet.addresses[0]} .. {fleet.addresses[-1]}, UDP port {fleet.port}",
            flush=True,
        )
        runs = run_all(fleet, work_dir, args.no_ipmitool, args.no_pyghmi)
    shutil.rmtree(work_dir, ignore_errors=True)
    report(n, runs)
    return 0


def run_all(fleet: Fleet, work_dir: Path, no_ipmitool: bool, no_pyghmi: bool) -> dict[str, Run]:
    password = fleet.password()
    targets = [IpmiTarget(b.name, b.address, b.port, fleet.username, password) for b in fleet.bmcs]
    config = work_dir / "ipmipower.conf"
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"username {fleet.username}\npassword {password}\n")
    runs: dict[str, Run] = {}
    ipmipower(fleet, config, "--stat")  # warm-up: the first requests in a simulator process are slower

    def ours_status(method: str) -> tuple[int, int]:
        found = bulk_status(targets, method=method)
        ok = sum(isinstance(v, PowerState) for v in found.values())
        return ok, len(found) - ok

    def ours_cycle(method: str) -> tuple[int, int]:
        found = bulk_cycle_and_confirm(targets, method=method, timeout=60)
        ok = sum(isinstance(v, Confirmation) for v in found.values())
        for name, v in found.items():
            if not isinstance(v, Confirmation):
                print(f"  {name}: {v}", flush=True)
        return ok, len(found) - ok

    def ipmipower_cycle_then_stat() -> tuple[int, int]:
        cycled, _ = count(ipmipower(fleet, config, "--cycle"), ("ok",))
        read, _ = count(ipmipower(fleet, config, "--stat"), ("on", "off"))
        return min(cycled, read), len(fleet.bmcs) - min(cycled, read)

    def ipmipower_cycle_until_on() -> tuple[int, int]:
        """The same confirmation as ours, with ipmipower: cycle, then stat the rest until each read on."""
        cycled = {line.partition(": ")[0] for line in ipmipower(fleet, config, "--cycle").splitlines()}
        pending, deadline = set(fleet.addresses), time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            out = ipmipower_hosts(fleet, config, "--stat", sorted(pending))
            pending -= {line.partition(": ")[0] for line in out.splitlines() if line.endswith(": on")}
        ok = len(cycled - pending)
        return ok, len(fleet.bmcs) - ok

    def ipmitool_cycle_then_status() -> tuple[int, int]:
        cycled, _ = ipmitool(fleet, "chassis", "power", "cycle")
        read, _ = ipmitool(fleet, "chassis", "power", "status")
        return min(cycled, read), len(fleet.bmcs) - min(cycled, read)

    steps: list[tuple[str, str, Callable[[], tuple[int, int]]]] = [
        ("remotehands", "status", lambda: ours_status("auto")),
        ("ipmipower", "status", lambda: count(ipmipower(fleet, config, "--stat"), ("on", "off"))),
        ("remotehands", "cycle+confirm", lambda: ours_cycle("auto")),
        ("ipmipower", "cycle, stat", ipmipower_cycle_then_stat),
        ("ipmipower", "cycle, stat*", ipmipower_cycle_until_on),
    ]
    if not no_pyghmi:
        steps += [
            ("remotehands pyghmi", "status", lambda: ours_status("pyghmi")),
            ("remotehands pyghmi", "cycle+confirm", lambda: ours_cycle("pyghmi")),
        ]
    if not no_ipmitool:
        steps += [
            ("ipmitool -P16", "status", lambda: ipmitool(fleet, "chassis", "power", "status")),
            ("ipmitool -P16", "cycle, status", ipmitool_cycle_then_status),
        ]
    try:
        for tool, operation, work in steps:
            if "cycle" in operation:
                settle(fleet, config)
            run = measure(fleet, tool, operation, work)
            runs[f"{tool}/{operation}"] = run
            print(
                f"  {tool:<20} {operation:<14} {run.wall:8.3f}s  ok {run.ok}/{len(fleet.bmcs)}"
                + (f"  cycles carried out per BMC {dict(run.cycles)}" if run.cycles is not None else ""),
                flush=True,
            )
    finally:
        config.unlink(missing_ok=True)
    return runs


def report(n: int, runs: dict[str, Run]) -> None:
    base = {
        "status": runs["ipmipower/status"].wall,
        "cycle+confirm": runs["ipmipower/cycle, stat"].wall,
        "cycle, stat": runs["ipmipower/cycle, stat"].wall,
        "cycle, status": runs["ipmipower/cycle, stat"].wall,
        "cycle, stat*": runs["ipmipower/cycle, stat"].wall,
    }
    print()
    print(f"Bulk IPMI power, {n} simulated BMCs (ratio = wall time / ipmipower's for the same operation)")
    header = f"{'tool':<20} {'operation':<14} {'wall s':>8} {'ratio':>7} {'client CPU s':>12} {'ms/host':>8}"
    header += f" {'fleet CPU s':>11} {'ok':>6} {'cycles/BMC':>12}"
    print(header)
    print("-" * len(header))
    for run in runs.values():
        cycles = ",".join(f"{k}x{v}" for k, v in sorted(run.cycles.items())) if run.cycles else ""
        print(
            f"{run.tool:<20} {run.operation:<14} {run.wall:8.3f} {run.wall / base[run.operation]:7.2f} "
            f"{run.cpu:12.3f} {run.cpu_ms_per_host(n):8.2f} {run.fleet_cpu:11.2f} {run.ok:>6} {cycles:>12}"
        )
    status = runs["remotehands/status"].wall
    cycle = runs["remotehands/cycle+confirm"].wall
    ipm_status, ipm_cycle = runs["ipmipower/status"].wall, runs["ipmipower/cycle, stat"].wall
    tool_status = runs.get("ipmitool -P16/status")
    tool_cycle = runs.get("ipmitool -P16/cycle, status")
    print()
    print(f"status:        {status / ipm_status:.2f}x ipmipower (target <= 1.5x)")
    ipm_confirm = runs["ipmipower/cycle, stat*"].wall
    print(f"cycle+confirm: {cycle / ipm_cycle:.2f}x ipmipower's cycle then stat (target <= 2x)")
    print(
        f"cycle+confirm: {cycle / ipm_confirm:.2f}x ipmipower's cycle then stat until on (stat*: same check)"
    )
    if tool_status is not None:
        print(f"status:        {tool_status.wall / status:.0f}x faster than ipmitool -P16 (target >= 50x)")
    fields = {
        "n": str(n),
        "status_s": f"{status:.3f}",
        "cycle_s": f"{cycle:.3f}",
        "ipmipower_status_s": f"{ipm_status:.3f}",
        "ipmipower_cycle_s": f"{ipm_cycle:.3f}",
        "ipmitool_status_s": f"{tool_status.wall:.3f}" if tool_status else "nan",
        "ipmitool_cycle_s": f"{tool_cycle.wall:.3f}" if tool_cycle else "nan",
        "ipmipower_confirm_s": f"{ipm_confirm:.3f}",
        "status_ratio": f"{status / ipm_status:.2f}",
        "cycle_ratio": f"{cycle / ipm_cycle:.2f}",
        "ipmitool_speedup": f"{tool_status.wall / status:.1f}" if tool_status else "nan",
        "status_cpu_ms_per_host": f"{runs['remotehands/status'].cpu_ms_per_host(n):.3f}",
    }
    pyghmi_status, pyghmi_cycle = (
        runs.get("remotehands pyghmi/status"),
        runs.get("remotehands pyghmi/cycle+confirm"),
    )
    if pyghmi_status is not None and pyghmi_cycle is not None:
        fields["pyghmi_status_s"] = f"{pyghmi_status.wall:.3f}"
        fields["pyghmi_cycle_s"] = f"{pyghmi_cycle.wall:.3f}"
    ours = runs["remotehands/cycle+confirm"].cycles or Counter()
    fields["cycles_exactly_once"] = str(set(ours) == {1}).lower()
    print("RESULT " + " ".join(f"{k}={v}" for k, v in fields.items()))


if __name__ == "__main__":
    sys.exit(main())
