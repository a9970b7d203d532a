"""Signed webhook intake against a bare FastAPI endpoint, on the same kind of server, in one run.

    python benchmarks/webhooks.py              # N = 5,000 requests from 16 client threads
    python benchmarks/webhooks.py --quick      # N = 500
    python benchmarks/webhooks.py --rounds 3   # bare then intake three times, pooled (a busy machine)

Two servers, one after the other, each uvicorn with one worker in a process of its own (``multiprocessing``,
spawn) on 127.0.0.1, with the settings ``remotehands serve`` uses (``log_level="warning"``,
``proxy_headers=False``), so the load generator never shares a GIL with the server:

- intake: ``POST /webhooks/builtin`` of ``create_app(rt, engine=False)`` with a fresh SQLite database in a
  temporary directory: signature check (generic HMAC), dedup, durable insert (WAL, ``synchronous=FULL``),
  202. Nothing is processed after (no engine), so the ticket ids need not exist;
- bare: a minimal FastAPI app whose one ``POST /bare`` reads the body and answers 202 JSON.

Both get the same bodies and headers: every request is signed beforehand with its own delivery id (so every
intake request is a new durable row). The load generator is C threads (default 16), each with its own
keep-alive ``httpx.Client``; it warms up first, then times N requests. Requests/s, p50 and p99 latency,
the server process's CPU per request and the load generator's CPU are printed (httpx costs the client about
1 ms of CPU a request, so on a small machine the bare rate is partly the client's limit; the note says so).
At the end each intake database is counted: it must hold exactly warm-up + N deliveries and every answer
must have been a new 202, or the benchmark fails (exit 1).
Ends with ``RESULT rps=.. p50_ms=.. p99_ms=.. bare_rps=.. bare_p50_ms=.. bare_p99_ms=.. rps_ratio=..
p99_ratio=..`` (rps_ratio = intake / bare requests/s, target >= 0.5; p99_ratio = intake / bare p99,
target <= 3).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI
from fastapi import Request as HttpRequest
from fastapi.responses import JSONResponse

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from remotehands.intake.signatures import sign_generic
from remotehands.lab.ticket_sims.harness import free_port

HOST = "127.0.0.1"
SECRET = "whsec-bench-0123456789abcdef0123"
SECRET_ENV = "RH_BENCH_WEBHOOK_SECRET"
TICKETS = 100  # deliveries are spread over this many (nonexistent) ticket ids


def serve_intake(port: int, work_dir: str) -> None:
    """Child process: ``create_app(rt, engine=False)`` on uvicorn, fresh SQLite DB under ``work_dir``."""
    os.environ["XDG_STATE_HOME"] = str(Path(work_dir) / "state")
    os.environ[SECRET_ENV] = SECRET
    from remotehands.config import Settings
    from remotehands.runtime import Runtime
    from remotehands.server.app import create_app

    settings = Settings(
        db_url=f"sqlite:///{Path(work_dir) / 'rh.db'}",
        inventory=Path(work_dir) / "inventory",
        log_file=Path(work_dir) / "rh.log",
        builtin_webhook_secret=f"env:{SECRET_ENV}",
    )
    app = create_app(Runtime(settings), engine=False)
    uvicorn.run(app, host=HOST, port=port, log_level="warning", proxy_headers=False)


def serve_bare(port: int, work_dir: str) -> None:
    """Child process: a FastAPI app with one ``POST /bare`` that reads the body and answers 202 JSON."""
    app = FastAPI(title="bare")

    @app.post("/bare", status_code=202)
    async def bare(request: HttpRequest) -> JSONResponse:
        body = await request.body()
        return JSONResponse({"received": len(body)}, status_code=202)

    uvicorn.run(app, host=HOST, port=port, log_level="warning", proxy_headers=False)


@dataclass
class Request:
    body: bytes
    headers: dict[str, str]


@dataclass
class Run:
    name: str
    n: int
    wall: float
    latencies: list[float]  # seconds, one per request
    server_cpu: float  # seconds of CPU the server process spent during the timed run
    client_cpu: float  # seconds of CPU this process spent during the timed run
    statuses: dict[int, int]
    fresh: int  # answers with "duplicate": false (intake only)

    @property
    def rps(self) -> float:
        return self.n / self.wall

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000

    @classmethod
    def merged(cls, runs: list[Run]) -> Run:
        """Rounds pooled: requests/s over the summed wall time, percentiles over every request."""
        statuses: dict[int, int] = {}
        for run in runs:
            for status, count in run.statuses.items():
                statuses[status] = statuses.get(status, 0) + count
        return cls(
            runs[0].name,
            sum(r.n for r in runs),
            sum(r.wall for r in runs),
            [x for r in runs for x in r.latencies],
            sum(r.server_cpu for r in runs),
            sum(r.client_cpu for r in runs),
            statuses,
            sum(r.fresh for r in runs),
        )

    @property
    def p50(self) -> float:
        return self.percentile(0.50)

    @property
    def p99(self) -> float:
        return self.percentile(0.99)


def signed_requests(prefix: str, count: int) -> list[Request]:
    """``count`` webhooks, each with its own delivery id, signed now (the tolerance is 300 s)."""
    out = []
    stamp = int(time.time())
    for i in range(count):
        body = json.dumps({"ticket_id": f"RH-BENCH-{i % TICKETS}", "event": "ticket.updated"}).encode()
        headers = {
            "Content-Type": "application/json",
            "X-RH-Timestamp": str(stamp),
            "X-RH-Delivery": f"{prefix}-{i}",
            "X-RH-Signature": sign_generic(SECRET.encode(), body, stamp),
        }
        out.append(Request(body, headers))
    return out


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(target: str, work_dir: Path) -> tuple[BaseProcess, str]:
    """Start a server process and wait until it answers."""
    port = free_port(HOST)
    func = serve_intake if target == "intake" else serve_bare
    proc = multiprocessing.get_context("spawn").Process(
        target=func, args=(port, str(work_dir)), name=f"bench-{target}", daemon=True
    )
    proc.start()
    url = f"http://{HOST}:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not proc.is_alive():
            raise SystemExit(f"the {target} server exited with code {proc.exitcode}")
        try:
            if httpx.get(url + "/openapi.json", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    proc.terminate()
    raise SystemExit(f"the {target} server did not answer on {url} within 30 s")


def stop(proc: BaseProcess) -> None:
    proc.terminate()  # SIGTERM: uvicorn shuts down gracefully (lifespan end, connections closed)
    proc.join(timeout=15)
    if proc.is_alive():
        proc.kill()
        proc.join()


def load(
    name: str, url: str, path: str, requests: list[Request], clients: int, pid: int | None = None
) -> Run:
    """Send ``requests`` from ``clients`` threads (keep-alive, one connection each); time each request."""
    latencies: list[float] = [0.0] * len(requests)
    statuses: list[int] = [0] * len(requests)
    fresh: list[bool] = [False] * len(requests)
    cursor = iter(range(len(requests)))
    cursor_lock = threading.Lock()
    errors: list[BaseException] = []
    barrier = threading.Barrier(clients + 1)

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            client.get("/openapi.json")  # open this thread's connection before the clock starts
            barrier.wait()
            while True:
                with cursor_lock:
                    i = next(cursor, None)
                if i is None:
                    return
                req = requests[i]
                t0 = time.perf_counter()
                try:
                    answer = client.post(path, content=req.body, headers=req.headers)
                except httpx.HTTPError as exc:
                    errors.append(exc)
                    continue
                latencies[i] = time.perf_counter() - t0
                statuses[i] = answer.status_code
                if answer.status_code == 202:
                    fresh[i] = answer.json().get("duplicate") is False

    threads = [threading.Thread(target=worker, name=f"client-{k}") for k in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    server0 = process_cpu(pid) if pid else 0.0
    cpu0, t0 = time.process_time(), time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    client_cpu = time.process_time() - cpu0
    server_cpu = (process_cpu(pid) - server0) if pid else 0.0
    if errors:
        print(f"  {name}: {len(errors)} transport errors, first: {errors[0]!r}", flush=True)
    counted: dict[int, int] = {}
    for status in statuses:
        counted[status] = counted.get(status, 0) + 1
    return Run(name, len(requests), wall, latencies, server_cpu, client_cpu, counted, sum(fresh))


def bench(target: str, work_dir: Path, n: int, warmup: int, clients: int) -> tuple[Run, int | None]:
    """Warm up, then time ``n`` requests; for intake also count the database's deliveries after."""
    proc, url = start(target, work_dir)
    path = "/webhooks/builtin" if target == "intake" else "/bare"
    try:
        load(f"{target} warm-up", url, path, signed_requests("warm", warmup), clients)
        run = load(target, url, path, signed_requests("timed", n), clients, proc.pid)
    finally:
        stop(proc)
    stored = None
    if target == "intake":
        with sqlite3.connect(work_dir / "rh.db") as conn:
            stored = int(conn.execute("SELECT count(*) FROM webhook_deliveries").fetchone()[0])
        conn.close()
    print(
        f"  {target:<7} {run.rps:8.0f} req/s  p50 {run.p50:6.2f} ms  p99 {run.p99:6.2f} ms  "
        f"statuses {run.statuses}",
        flush=True,
    )
    return run, stored


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 500")
    parser.add_argument("--n", type=int, default=5000, help="timed requests per server (default 5000)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent client threads (default 16)")
    parser.add_argument("--warmup", type=int, default=0, help="warm-up requests (default N/10, >= 200)")
    parser.add_argument(
        "--rounds", type=int, default=1, help="bare then intake, this many times, pooled (default 1)"
    )
    args = parser.parse_args()
    n = 500 if args.quick else args.n
    warmup = args.warmup or max(200, n // 10)
    work_dir = Path(tempfile.mkdtemp(prefix="rh-bench-webhooks-"))
    print(
        f"{n} signed webhooks (+{warmup} warm-up) from {args.clients} client threads, {args.rounds} round(s), "
        f"servers on {HOST}, SQLite in {work_dir} ...",
        flush=True,
    )
    bare_runs: list[Run] = []
    intake_runs: list[Run] = []
    stored: list[int | None] = []
    try:
        for r in range(args.rounds):
            bare_runs.append(bench("bare", work_dir / f"bare-{r}", n, warmup, args.clients)[0])
            run, count = bench("intake", work_dir / f"intake-{r}", n, warmup, args.clients)
            intake_runs.append(run)
            stored.append(count)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return report(n, warmup, args.clients, Run.merged(intake_runs), Run.merged(bare_runs), stored)


def report(n: int, warmup: int, clients: int, intake: Run, bare: Run, stored: list[int | None]) -> int:
    rounds = len(stored)
    print()
    print(
        f"Webhook intake vs a bare FastAPI endpoint, {n} requests x {rounds} round(s), {clients} client "
        "threads, one uvicorn worker each"
    )
    header = (
        f"{'server':<8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'mean ms':>8}"
        f" {'srv CPU ms/req':>14} {'client CPU %':>12} {'ok':>6}"
    )
    print(header)
    print("-" * len(header))
    for run in (intake, bare):
        print(
            f"{run.name:<8} {run.rps:8.0f} {run.p50:8.2f} {run.p99:8.2f} {max(run.latencies) * 1000:8.2f}"
            f" {statistics.fmean(run.latencies) * 1000:8.2f} {run.server_cpu * 1000 / run.n:14.3f}"
            f" {run.client_cpu * 100 / run.wall:12.0f} {run.statuses.get(202, 0):>6}"
        )
    rps_ratio, p99_ratio = intake.rps / bare.rps, intake.p99 / bare.p99
    print()
    print(f"requests/s: intake is {rps_ratio:.2f}x the bare endpoint's (target >= 0.50)")
    print(f"p99:        intake is {p99_ratio:.2f}x the bare endpoint's (target <= 3)")
    print(
        f"server CPU: intake spends {(intake.server_cpu - bare.server_cpu) * 1000 / n / rounds:.2f} ms more "
        "per request than bare (verify, dedup, insert, commit, threadpool hop)"
    )
    if bare.client_cpu / bare.wall > 0.85:
        print(
            f"note:       the load generator used {bare.client_cpu * 100 / bare.wall:.0f}% of a core during "
            "the bare run: the bare rate is partly the client's limit (httpx, about 1 ms CPU a request)"
        )
    expected = warmup + n
    print(
        f"database:   {stored} deliveries stored per round, {expected} sent; "
        f"{intake.fresh} of {n * rounds} answered as new"
    )
    fields = {
        "rps": f"{intake.rps:.0f}",
        "p50_ms": f"{intake.p50:.2f}",
        "p99_ms": f"{intake.p99:.2f}",
        "bare_rps": f"{bare.rps:.0f}",
        "bare_p50_ms": f"{bare.p50:.2f}",
        "bare_p99_ms": f"{bare.p99:.2f}",
        "rps_ratio": f"{rps_ratio:.2f}",
        "p99_ratio": f"{p99_ratio:.2f}",
    }
    failures = []
    if any(count != expected for count in stored):
        failures.append(f"the database holds {stored} deliveries, not {expected} each round")
    if intake.fresh != n * rounds or intake.statuses != {202: n * rounds}:
        failures.append(f"intake answers: {intake.statuses}, {intake.fresh} new of {n * rounds}")
    if bare.statuses != {202: n * rounds}:
        failures.append(f"bare answers: {bare.statuses}")
    for failure in failures:
        print(f"FAILED: {failure}")
    print("RESULT " + " ".join(f"{k}={v}" for k, v in fields.items()))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
