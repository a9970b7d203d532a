"""Crash test of erase-install: SIGKILL the worker at every journal boundary of every step, restart it, and
count erases at the lab Mac: exactly one per job, and the job ends succeeded (or needs_operator, saying why).
"""

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
from remotehands.reimage.settings import ImageConfig
from remotehands.runtime import Runtime
from remotehands.ssh import keys
from remotehands.tickets.base import Severity, TaskRequest, TicketType
from remotehands.tickets.builtin import NewTicket
from tests.conftest import job_state, worker_until_idle

HOST = "mac-02"  # a T2 Mac: erase-install without a volume owner
STEPS = ("check-approval", "check-identity", "ensure-installer", "start-install", "wait-new-os", "verify")
CASES = [(step, boundary) for step in STEPS for boundary in BOUNDARIES]
IMAGE = "sonoma-14-7"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def crash_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabInfo]:
    where = tmp_path_factory.mktemp("reimage-crash-lab")
    info = start_lab(where, hosts=1, redfish=0, macs=2)
    try:
        yield info
    finally:
        stop_lab(where)


def _current_key(lab: LabInfo, port: int) -> paramiko.PKey:
    """The host key the lab Mac presents now, from the lab's known_hosts (a technician's out-of-band check)."""
    assert lab.known_hosts is not None
    known = paramiko.HostKeys(str(lab.known_hosts))
    found = known.lookup(f"[127.0.0.1]:{port}")
    assert found is not None
    return next(iter(found.values()))


@pytest.mark.parametrize(("step", "boundary"), CASES, ids=[f"{s}@{b}" for s, b in CASES])
def test_kill_at_every_boundary_erases_exactly_once(
    tmp_path: Path, crash_lab: LabInfo, step: str, boundary: str
) -> None:
    db_url = f"sqlite:///{tmp_path / 'rh.db'}"
    config = tmp_path / "remotehands.toml"
    config.write_text(
        f'db_url = "{db_url}"\ninventory = "{crash_lab.inventory_dir}"\nlog_file = "{tmp_path / "rh.log"}"\n'
        "lease_seconds = 30\n"
        f'[images.{IMAGE}]\nos = "macos"\nversion = "14.7"\nbuild = "23H124"\n'
        "[reimage]\ninstall_deadline_minutes = 2\n"
    )
    rt = Runtime(
        Settings(
            db_url=db_url,
            inventory=crash_lab.inventory_dir,
            log_file=tmp_path / "rh.log",
            images={IMAGE: ImageConfig(os="macos", version="14.7", build="23H124")},
        )
    )
    # Earlier cases reinstalled this Mac: pin the key it presents now, as a technician would after checking.
    keys.pin(rt.db, HOST, _current_key(crash_lab, crash_lab.macs[HOST].ssh_port), by="test (checked)")
    erased_before = len(read_bmc_log(crash_lab.log_path, host=HOST, command="erase"))
    ticket_id = rt.tickets.create(
        NewTicket(
            type=TicketType.REMOTE_HANDS,
            severity=Severity.DEGRADED,
            title="reimage",
            requester="alice",
            customer="provider",
            subscription="provider",
            request=TaskRequest(action="reimage", targets=(HOST,), params={"image": IMAGE}),
        ),
        rt.inventory(),
    )
    rt.tickets.approve(ticket_id, "bob")
    [job_id] = store.create_jobs_for_ticket(
        rt.db, rt.tickets.get(ticket_id), "bob", "test", inventory=rt.inventory()
    )

    crashed = worker_until_idle(config, {"RH_FAULT_KILL_AT": f"{step}:{boundary}"})
    with rt.db.session() as s:
        before_kill = (store.get_job(s, job_id).state, store.get_job(s, job_id).reason)
    assert crashed.returncode == -signal.SIGKILL, (before_kill, crashed.stderr[-2000:])
    restarted = worker_until_idle(config, {})
    assert restarted.returncode == 0, restarted.stderr[-2000:]

    state = job_state(rt, job_id)
    with rt.db.session() as s:
        reason = store.get_job(s, job_id).reason
    assert state == "succeeded", reason
    erased = read_bmc_log(crash_lab.log_path, host=HOST, command="erase")[erased_before:]
    assert len(erased) == 1, erased
    rt.db.dispose()
