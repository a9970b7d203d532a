"""Crash test: SIGKILL the worker at every journal boundary of a power cycle; restart; count BMC commands.

For every step of power.cycle and every boundary (before the started commit, right after it, after acting,
after the done commit) a worker process is killed there, then a fresh worker finishes the job. The lab BMC
must have received exactly one cycle command for that job, and the job must end succeeded (or
needs_operator with a reason).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from remotehands.jobs import store
from remotehands.jobs.faults import BOUNDARIES
from tests.conftest import job_state, mark, open_ticket

STEPS = (
    "check-approval",
    "read-power",
    "send-cycle",
    "confirm-off",
    "send-on",
    "confirm-power",
    "wait-reachable",
)
CASES = [(step, boundary) for step in STEPS for boundary in BOUNDARIES]


def _worker(settings, env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.update(
        RH_DB_URL=settings.db_url,
        RH_INVENTORY=str(settings.inventory),
        RH_LOG_FILE=str(settings.log_file),
        RH_LEASE_SECONDS="30",
        **env_extra,
    )
    return subprocess.run(
        [sys.executable, "-m", "remotehands", "worker", "--until-idle", "--workers", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.parametrize(("step", "boundary"), CASES, ids=[f"{s}@{b}" for s, b in CASES])
def test_kill_at_every_boundary_sends_exactly_one_cycle(rt, lab, settings, step, boundary):
    host = "esx-08"
    m = mark(lab, host)
    ticket_id = open_ticket(rt, host)
    [job_id] = store.create_jobs_for_ticket(rt.db, rt.tickets.get(ticket_id), "bob", "test")

    crashed = _worker(settings, {"RH_FAULT_KILL_AT": f"{step}:{boundary}"})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    assert job_state(rt, job_id) not in ("succeeded", "failed", "cancelled")

    restarted = _worker(settings, {})
    assert restarted.returncode == 0, restarted.stderr[-2000:]

    state = job_state(rt, job_id)
    with rt.db.session() as s:
        reason = store.get_job(s, job_id).reason
    assert state in ("succeeded", "needs_operator"), reason
    if state == "needs_operator":
        assert reason
    assert len(m.commands("cycle")) == 1, m.commands()
    with rt.db.session() as s:
        rows = [r for r in store.steps_of(s, job_id) if r.name == "send-cycle"]
    if (step, boundary) == ("send-cycle", "after-act"):
        # Sent, not journaled: the BMC's event log proves it arrived, so it is not sent again.
        assert "confirmed from the device after an interrupted attempt" in rows[-1].result
    if (step, boundary) == ("send-cycle", "after-started"):
        # Journaled, not sent: the event log shows nothing, so it is sent now.
        assert [r.status for r in rows] == ["reconciled", "done"]
        assert "never received" in rows[0].result
