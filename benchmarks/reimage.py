"""Concurrent reimages of lab Macs: the whole batch's wall time against one install's, and the worker's peak RSS.

    python benchmarks/reimage.py              # n = 200, then n = 1,000; one erase-and-install takes 120 s
    python benchmarks/reimage.py --quick      # n = 50; one erase-and-install takes 20 s
    python benchmarks/reimage.py --sizes 1000 --install-s 240 --workers 16

The lab runs in a process of its own (this script with ``--serve-lab``): N simulated Macs (T2 and Apple
silicon in turn) answering SSH on 127.0.0.1, each enrolled at the lab's NanoMDM-style server, whose
EraseDevice makes the Mac go dark for the install time (``--install-s``) and come back erased, with a new
host key. This process is the worker: remotehands' local executor (``--workers`` threads, SQLite) runs the
jobs of one approved ticket that asks to reimage all N Macs with ``mdm-erase``: identity at the MDM server
and over SSH, EraseDevice exactly once, acknowledged, re-enrolled, back on SSH with a new key (pinned),
build and serial verified, ``pmset autorestart`` set, every step journaled and written to the ticket.

Then the peer on the same lab: a hand-written script of the same work, as an operator without remotehands
would run it, on 64 threads: send every Mac's EraseDevice through the same MDM API
(``remotehands.mdm.MdmClient``, plain httpx), then for each Mac poll the command until acknowledged and the
Mac's SSH port until it presents a new host key (every second), log in (paramiko) and read the build. No journal, no ticket, no identity check, no crash safety.

Figures: ``total_s`` the batch's wall time from the jobs' creation to the last job's end; ``install_s``
the time one Mac is dark installing; ``ratio`` = total_s / install_s (target <= 1.1); ``peak_rss_mb`` the
worker process's peak resident memory (``ru_maxrss``; target <= 300 MB at n = 1,000); ``peer_total_s``
and ``vs_peer`` = total_s / peer_total_s. After each run every Mac must have been erased exactly once by it,
or the benchmark fails (exit 1). The last line is
``RESULT n=.. total_s=.. install_s=.. ratio=.. peak_rss_mb=.. peer_total_s=.. vs_peer=..`` for the largest n,
preceded by one line per size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import paramiko
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from remotehands.lab.ssh_host import INSTALL_SECONDS

HOST = "127.0.0.1"
PEER_THREADS = 64
MODELS = ("t2", "apple-silicon")


# -- the lab process -----------------------------------------------------------------------------------------


def serve_lab(state_dir: Path, n: int, install_s: float) -> int:
    from remotehands.lab.bmc_sim import CommandLog
    from remotehands.lab.site import mdm_udid, serial_number, start_mdm
    from remotehands.lab.ssh_host import SshHosts

    _raise_fd_limit()
    password_file = state_dir / "secrets" / "password"
    password_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    password_file.write_text("lab-bench-pass-01\n")
    password_file.chmod(0o600)
    command_log = CommandLog(state_dir / "log.jsonl")
    hosts = SshHosts(
        "lab-bench-pass-01",
        command_log=command_log,
        known_hosts=state_dir / "known_hosts",
        time_scale=install_s / INSTALL_SECONDS,
        address=HOST,
    )
    names = [f"mac-{i:04d}" for i in range(1, n + 1)]
    serials = {name: serial_number(i) for i, name in enumerate(names, start=1)}
    macs = {}
    for i, name in enumerate(names):
        port = hosts.add_host(name, "mac-mini", serial=serials[name], model=MODELS[i % 2])
        key = hosts.host_key(name)
        macs[name] = {
            "ssh_port": port,
            "serial": serials[name],
            "model": MODELS[i % 2],
            "host_key": f"{key.get_name()} {key.get_base64()}",
            "mdm_udid": mdm_udid(serials[name]),
        }
    hosts.start()
    mdm, server, key_file = start_mdm(state_dir, hosts, serials)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    lab = {
        "macs": macs,
        "mdm_url": server.url,
        "mdm_key_file": str(key_file),
        "password_file": str(password_file),
    }
    tmp = state_dir / ".lab.json.tmp"
    tmp.write_text(json.dumps(lab))
    tmp.replace(state_dir / "lab.json")
    parent = os.getppid()
    while not stop.wait(0.5):
        if os.getppid() != parent:  # the benchmark died without stopping its lab: go too
            break
    server.stop()
    mdm.close()
    hosts.stop()
    command_log.close()
    return 0


def _raise_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def start_lab(state_dir: Path, n: int, install_s: float) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    out = (state_dir / "lab.out").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve-lab",
            str(state_dir),
            "--sizes",
            str(n),
            "--install-s",
            str(install_s),
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60 + n * 0.05
    while not (state_dir / "lab.json").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"the lab did not start: {(state_dir / 'lab.out').read_text()[-2000:]}")
        time.sleep(0.1)
    return proc, json.loads((state_dir / "lab.json").read_text())


def erases(state_dir: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in (state_dir / "log.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if entry.get("command") == "erase":
            counts[entry["bmc"]] += 1
    return counts


# -- remotehands --------------------------------------------------------------------------------------------


def write_inventory(directory: Path, lab: dict[str, Any]) -> None:
    ssh = {"username": "admin", "password": f"file:{lab['password_file']}"}
    hosts = {
        name: {
            "ansible_host": HOST,
            "ansible_port": m["ssh_port"],
            "kind": "mac-mini",
            "model": m["model"],
            "serial_number": m["serial"],
            "subscription": "provider",
            "power": {"type": "manual"},
            "ssh": ssh,
            "ssh_host_key": m["host_key"],
            "mdm_udid": m["mdm_udid"],
        }
        for name, m in lab["macs"].items()
    }
    site = {"vars": {"site": "lab1"}, "children": {"lab1_r1": {"vars": {"rack": "r1"}, "hosts": hosts}}}
    (directory / "group_vars").mkdir(parents=True)
    (directory / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"lab1": site}}}))
    (directory / "group_vars" / "all.yml").write_text(
        yaml.safe_dump({"sites": {"lab1": {"description": "benchmark lab"}}, "subscriptions": {}})
    )


def run_remotehands(
    work: Path, lab: dict[str, Any], workers: int, poll_max_s: float
) -> tuple[float, dict[str, int]]:
    from remotehands.config import Settings
    from remotehands.jobs import store
    from remotehands.jobs.executor import LocalExecutor
    from remotehands.jobs.states import TERMINAL, JobState
    from remotehands.reimage.settings import ReimageSettings
    from remotehands.runtime import Runtime
    from remotehands.tickets.base import Severity, TaskRequest, TicketType
    from remotehands.tickets.builtin import NewTicket

    write_inventory(work / "inventory", lab)
    rt = Runtime(
        Settings(
            db_url=f"sqlite:///{work / 'rh.db'}",
            inventory=work / "inventory",
            log_file=work / "rh.log",
            workers=workers,
            reimage=ReimageSettings(
                mdm_url=lab["mdm_url"],
                mdm_key=f"file:{lab['mdm_key_file']}",
                install_deadline_minutes=120,
                poll_max_seconds=poll_max_s,
            ),
        )
    )
    targets = tuple(lab["macs"])
    ticket_id = rt.tickets.create(
        NewTicket(
            type=TicketType.REMOTE_HANDS,
            severity=Severity.DEGRADED,
            title=f"reimage {len(targets)} Macs",
            requester="alice",
            customer="provider",
            subscription="provider",
            request=TaskRequest(action="reimage", targets=targets, params={"method": "mdm-erase"}),
        ),
        rt.inventory(),
    )
    rt.tickets.approve(ticket_id, "bob")
    start = time.monotonic()
    ids = store.create_jobs_for_ticket(
        rt.db, rt.tickets.get(ticket_id), "bob", "carol", inventory=rt.inventory()
    )
    ended = {s.value for s in TERMINAL} | {JobState.NEEDS_OPERATOR.value}

    def states() -> Counter[str]:
        with rt.db.session() as s:
            return Counter(store.get_job(s, i).state for i in ids)

    last = [0.0]

    def all_ended() -> bool:
        if time.monotonic() - last[0] < 1.0:
            return False
        last[0] = time.monotonic()
        return sum(states()[e] for e in ended) == len(ids)

    executor = LocalExecutor(rt, workers=workers, poll=0.05, only=frozenset(ids))
    try:
        executor.run_until(all_ended)
    finally:
        executor.shutdown()
    total = time.monotonic() - start
    result = dict(states())
    print("  where the time went (median per job, s): " + _step_times(rt, ids), flush=True)
    rt.db.dispose()
    return total, result


def _step_times(rt: Any, ids: list[int]) -> str:
    """Each step's median span per job, from its first start to its last finish (waits included)."""
    import statistics

    from sqlalchemy import select

    from remotehands.jobs.tables import JobStep

    spans: dict[str, dict[int, list[float]]] = {}
    with rt.db.session() as s:
        for row in s.execute(select(JobStep).where(JobStep.job_id.in_(ids))).scalars():
            if row.finished_at is None:
                continue
            span = spans.setdefault(row.name, {}).setdefault(row.job_id, [float("inf"), 0.0])
            span[0] = min(span[0], row.started_at.timestamp())
            span[1] = max(span[1], row.finished_at.timestamp())
    return ", ".join(
        f"{name} {statistics.median(end - begin for begin, end in per_job.values()):.2f}"
        for name, per_job in spans.items()
    )


# -- the peer: a hand-written script ------------------------------------------------------------------------


def run_peer(state_dir: Path, lab: dict[str, Any]) -> float:
    from remotehands.mdm import CommandState, MdmClient

    key = Path(lab["mdm_key_file"]).read_text().strip()
    password = Path(lab["password_file"]).read_text().strip()
    current = _known_keys(state_dir / "known_hosts")

    def erase(name: str) -> str:
        with MdmClient(lab["mdm_url"], key) as mdm:
            return mdm.erase(lab["macs"][name]["mdm_udid"])

    def back(item: tuple[str, str]) -> str:
        name, command = item
        mac = lab["macs"][name]
        old = current[f"[{HOST}]:{mac['ssh_port']}"]
        with MdmClient(lab["mdm_url"], key) as mdm:
            while mdm.command_status(command).state is not CommandState.ACKNOWLEDGED:
                time.sleep(1.0)
        while True:
            seen = _host_key(mac["ssh_port"])
            if seen is not None and seen.get_base64() != old:
                break
            time.sleep(1.0)
        client = paramiko.SSHClient()
        client.get_host_keys().add(f"[{HOST}]:{mac['ssh_port']}", seen.get_name(), seen)
        client.connect(HOST, mac["ssh_port"], "admin", password, look_for_keys=False, allow_agent=False)
        try:
            _, out, _ = client.exec_command("sw_vers -buildVersion")
            return str(out.read().decode().strip())
        finally:
            client.close()

    start = time.monotonic()
    with ThreadPoolExecutor(PEER_THREADS) as pool:
        commands = list(pool.map(erase, lab["macs"]))  # every erase first, then wait for each Mac
        builds = list(pool.map(back, zip(lab["macs"], commands, strict=True)))
    assert all(builds), "a Mac answered no build"
    return time.monotonic() - start


def _known_keys(path: Path) -> dict[str, str]:
    keys = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            where, _, blob = line.split()
            keys[where] = blob
    return keys


def _host_key(port: int) -> paramiko.PKey | None:
    try:
        transport = paramiko.Transport((HOST, port))
    except (OSError, paramiko.SSHException):
        return None
    try:
        transport.start_client(timeout=10)
        return transport.get_remote_server_key()
    except (OSError, paramiko.SSHException):
        return None
    finally:
        transport.close()


# -- main ---------------------------------------------------------------------------------------------------


def measure(n: int, install_s: float, workers: int, poll_max_s: float, peer: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="rh-bench-reimage-") as tmp:
        state_dir = Path(tmp) / "lab"
        state_dir.mkdir()
        proc, lab = start_lab(state_dir, n, install_s)
        try:
            total, states = run_remotehands(Path(tmp), lab, workers, poll_max_s)
            rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            counts = erases(state_dir)
            if states.get("succeeded") != n or sorted(set(counts.values())) != [1] or len(counts) != n:
                print(
                    f"FAILED: job states {states}; erases per Mac {Counter(counts.values())}", file=sys.stderr
                )
                raise SystemExit(1)
            peer_total = run_peer(state_dir, lab) if peer else float("nan")
            if peer and sorted(set(erases(state_dir).values())) != [2]:
                raise SystemExit("FAILED: the peer did not erase every Mac once")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    figures = {
        "n": n,
        "total_s": round(total, 1),
        "install_s": round(install_s, 1),
        "ratio": round(total / install_s, 3),
        "peak_rss_mb": round(rss_mb, 1),
        "peer_total_s": round(peer_total, 1),
        "vs_peer": round(total / peer_total, 3),
    }
    print(
        f"n={n}: remotehands {total:.1f} s for installs of {install_s:.0f} s (ratio {total / install_s:.3f}), "
        f"peak RSS {rss_mb:.0f} MB, job states {states}; hand-written script {peer_total:.1f} s",
        flush=True,
    )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="n = 50, 20 s installs")
    parser.add_argument("--sizes", default=None, help="comma-separated batch sizes (default 200,1000)")
    parser.add_argument(
        "--install-s", type=float, default=None, help="real seconds one install keeps a Mac dark"
    )
    parser.add_argument("--workers", type=int, default=16, help="executor threads")
    parser.add_argument(
        "--poll-max-s",
        type=float,
        default=3.0,
        help="[reimage] poll_max_seconds (default 15 s in production)",
    )
    parser.add_argument("--no-peer", action="store_true", help="skip the hand-written script")
    parser.add_argument("--serve-lab", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in (args.sizes or ("50" if args.quick else "200,1000")).split(",")]
    install_s = args.install_s or (20.0 if args.quick else 120.0)
    if args.serve_lab is not None:
        return serve_lab(args.serve_lab, sizes[0], install_s)
    _raise_fd_limit()
    figures = {}
    for n in sizes:
        figures = measure(n, install_s, args.workers, args.poll_max_s, peer=not args.no_peer)
    print("RESULT " + " ".join(f"{k}={v}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
