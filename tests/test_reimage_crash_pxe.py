"""Crash test of pxe: SIGKILL the worker at the journal boundaries of the steps around the destructive ones
(boot override, the power cycle, the wait for the installer), restart it, and count at the lab: exactly one
power cycle at the BMC and one install on the host per job, and the job ends succeeded."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from remotehands.config import Settings
from remotehands.jobs import store
from remotehands.jobs.faults import BOUNDARIES
from remotehands.lab.process import LabInfo, read_bmc_log, start_lab, stop_lab
from remotehands.lab.ticket_sims.harness import ServerThread, free_port
from remotehands.reimage.settings import ImageConfig, ReimageSettings
from remotehands.runtime import Runtime
from remotehands.server.app import create_app
from remotehands.ssh import keys
from remotehands.tickets.base import Severity, TaskRequest, TicketType
from remotehands.tickets.builtin import NewTicket
from tests.conftest import job_state, worker_until_idle

HOST = "esx-01"
CASES = [
    *(("send-cycle", b) for b in BOUNDARIES),
    *(
        (s, "after-act")
        for s in ("prepare-install", "boot-pxe-once", "confirm-off", "wait-installer", "boot-disk")
    ),
]
IMAGE = ImageConfig(os="esxi", version="8.0.3", build="24022510")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def crash_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabInfo]:
    where = tmp_path_factory.mktemp("reimage-crash-pxe-lab")
    info = start_lab(where, hosts=1, redfish=0, macs=0, cycle_delay=0.3)
    try:
        yield info
    finally:
        stop_lab(where)


def _current_key(lab: LabInfo, port: int) -> paramiko.PKey:
    assert lab.known_hosts is not None
    found = paramiko.HostKeys(str(lab.known_hosts)).lookup(f"[127.0.0.1]:{port}")
    assert found is not None
    return next(iter(found.values()))


@pytest.mark.parametrize(("step", "boundary"), CASES, ids=[f"{s}@{b}" for s, b in CASES])
def test_kill_around_the_cycle_cycles_and_installs_exactly_once(
    tmp_path: Path, crash_lab: LabInfo, step: str, boundary: str
) -> None:
    db_url = f"sqlite:///{tmp_path / 'rh.db'}"
    port = free_port("127.0.0.1")
    config = tmp_path / "remotehands.toml"
    config.write_text(
        f'db_url = "{db_url}"\ninventory = "{crash_lab.inventory_dir}"\nlog_file = "{tmp_path / "rh.log"}"\n'
        "lease_seconds = 30\n"
        f'[images.esxi-8u3]\nos = "esxi"\nversion = "8.0.3"\nbuild = "24022510"\n'
        f'[reimage]\ncallback_url = "http://127.0.0.1:{port}"\ninstall_config_dir = "{crash_lab.install_dir}"\n'
        "install_deadline_minutes = 2\ncallback_deadline_minutes = 2\n"
    )
    settings = Settings(
        db_url=db_url,
        inventory=crash_lab.inventory_dir,
        log_file=tmp_path / "rh.log",
        images={"esxi-8u3": IMAGE},
        reimage=ReimageSettings(
            callback_url=f"http://127.0.0.1:{port}", install_config_dir=crash_lab.install_dir
        ),
    )
    rt = Runtime(settings)
    server = ServerThread(create_app(rt, engine=False), port=port).start()
    try:
        keys.pin(rt.db, HOST, _current_key(crash_lab, crash_lab.hosts[HOST].ssh_port), by="test (checked)")
        before = {c: len(read_bmc_log(crash_lab.log_path, host=HOST, command=c)) for c in ("cycle", "erase")}
        ticket_id = rt.tickets.create(
            NewTicket(
                type=TicketType.REMOTE_HANDS,
                severity=Severity.DEGRADED,
                title="reimage",
                requester="alice",
                customer="provider",
                subscription="provider",
                request=TaskRequest(action="reimage", targets=(HOST,), params={"image": "esxi-8u3"}),
            ),
            rt.inventory(),
        )
        rt.tickets.approve(ticket_id, "bob")
        [job_id] = store.create_jobs_for_ticket(
            rt.db, rt.tickets.get(ticket_id), "bob", "test", inventory=rt.inventory()
        )
        crashed = worker_until_idle(config, {"RH_FAULT_KILL_AT": f"{step}:{boundary}"})
        assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
        restarted = worker_until_idle(config, {})
        assert restarted.returncode == 0, restarted.stderr[-2000:]
        with rt.db.session() as s:
            reason = store.get_job(s, job_id).reason
        assert job_state(rt, job_id) == "succeeded", reason
        for command in ("cycle", "erase"):
            seen = read_bmc_log(crash_lab.log_path, host=HOST, command=command)[before[command] :]
            assert len(seen) == 1, (command, seen)
    finally:
        server.stop()
        rt.db.dispose()
