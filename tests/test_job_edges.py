"""Edges of the job engine: a dead BMC, cancel of a held job, deadlines, lease take-over, operator retry."""

from __future__ import annotations

import shutil
import socket
from datetime import timedelta

import pytest
import yaml
from sqlalchemy import update

from remotehands.bmc.base import PowerAction, perform_and_confirm
from remotehands.config import Settings
from remotehands.errors import NotPermitted
from remotehands.jobs import outbox, runner, store, sweeper
from remotehands.jobs.states import JobEvent
from remotehands.jobs.tables import Job, JobStep
from remotehands.runtime import Runtime
from remotehands.tickets.base import TicketStatus
from tests.conftest import job_state, mark, open_ticket, run_ticket


def _closed_udp_port() -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


@pytest.fixture
def dead_bmc_rt(tmp_path, lab):
    """The lab's inventory, except that esx-06's BMC address points at a port where nothing answers."""
    inv = tmp_path / "inventory"
    shutil.copytree(lab.inventory_dir, inv)
    data = yaml.safe_load((inv / "hosts.yml").read_text())
    hosts = data["all"]["children"]["lab1"]["children"]["lab1_r1"]["hosts"]
    hosts["esx-06"]["power"]["port"] = _closed_udp_port()
    (inv / "hosts.yml").write_text(yaml.safe_dump(data))
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'dead.db'}",
        inventory=inv,
        log_file=tmp_path / "rh.log",
        bmc_timeout=1.0,
    )
    runtime = Runtime(settings)
    yield runtime
    runtime.db.dispose()


def test_dead_bmc_is_retried_then_fails_with_a_clear_reason(dead_bmc_rt, mocker):
    mocker.patch.object(runner, "MAX_RETRIES", 2)
    mocker.patch.object(runner, "retry_delay", return_value=0.0)
    ticket_id = open_ticket(dead_bmc_rt, "esx-06")
    [job_id] = run_ticket(dead_bmc_rt, ticket_id, timeout=60)
    assert job_state(dead_bmc_rt, job_id) == "failed"
    with dead_bmc_rt.db.session() as s:
        job = store.get_job(s, job_id)
        attempts = [r for r in store.steps_of(s, job_id) if r.name == "read-power"]
    assert "read-power failed" in job.reason and "127.0.0.1:" in job.reason
    assert [r.status for r in attempts] == ["retry", "retry", "failed"]
    assert dead_bmc_rt.tickets.get(ticket_id).status is TicketStatus.NEEDS_ATTENTION
    assert "Traceback" not in dead_bmc_rt.tickets.comments(ticket_id)[-1].body


def test_cancel_of_a_job_held_by_a_worker_stops_it_at_the_next_step_boundary(rt, lab):
    m = mark(lab, "esx-05")
    ticket_id = open_ticket(rt, "esx-05")
    [job_id] = store.create_jobs_for_ticket(rt.db, rt.tickets.get(ticket_id), "bob", "test")
    owner = store.new_owner()
    assert store.claim(rt.db, job_id, owner, 60)
    assert store.request_cancel(rt.db, job_id, "carol").value == "queued"  # held: only flagged
    assert runner.advance(rt, job_id, owner).value == "cancelled"
    assert m.commands() == []
    with pytest.raises(NotPermitted):
        store.request_cancel(rt.db, job_id, "carol")


def test_sweeper_fails_jobs_past_their_deadline_and_frees_the_host(rt):
    ticket_id = open_ticket(rt, "esx-03")
    [job_id] = store.create_jobs_for_ticket(rt.db, rt.tickets.get(ticket_id), "bob", "test")
    with rt.db.session() as s:
        s.execute(update(Job).where(Job.id == job_id).values(deadline_at=store.now() - timedelta(seconds=1)))
    assert sweeper.sweep(rt.db)["failed"] == 1
    assert job_state(rt, job_id) == "failed"
    with rt.db.session() as s:
        job = store.get_job(s, job_id)
    assert "deadline" in job.reason and job.active_target is None


def test_expired_lease_is_taken_over_and_the_old_owner_cannot_journal(rt, lab):
    m = mark(lab, "esx-03")
    ticket_id = open_ticket(rt, "esx-03")
    [job_id] = store.create_jobs_for_ticket(rt.db, rt.tickets.get(ticket_id), "bob", "test")
    a, b = store.new_owner(), store.new_owner()
    assert store.claim(rt.db, job_id, a, 60)
    assert not store.claim(rt.db, job_id, b, 60)
    with rt.db.session() as s:
        s.execute(
            update(Job).where(Job.id == job_id).values(lease_expires_at=store.now() - timedelta(seconds=1))
        )
    assert store.claim(rt.db, job_id, b, 60)
    # The old owner, still running somewhere, can neither claim again nor write a journal row.
    assert runner.advance(rt, job_id, a) is None
    with pytest.raises(runner.LeaseLost):
        runner._advance_one_step(rt, job_id, a, 60)
    with rt.db.session() as s:
        assert store.steps_of(s, job_id) == []
    assert m.commands() == []


def test_a_resolved_ticket_cannot_be_run_again(rt, lab):
    m = mark(lab, "esx-01")
    ticket_id = open_ticket(rt, "esx-01")
    [job_id] = run_ticket(rt, ticket_id)
    assert job_state(rt, job_id) == "succeeded"
    assert rt.tickets.get(ticket_id).status is TicketStatus.RESOLVED
    with pytest.raises(NotPermitted, match="resolved"):
        store.create_jobs_for_ticket(rt.db, rt.tickets.get(ticket_id), "bob", "test")
    assert len(m.commands("cycle")) == 1


def test_a_lost_answer_to_the_cycle_is_checked_in_the_event_log_not_sent_again(rt, lab, mocker):
    from remotehands.bmc.ipmi import IpmiPower
    from remotehands.errors import DeviceUnreachable

    real_cycle = IpmiPower.cycle
    lost = {"n": 0}

    def cycle_then_lose_the_answer(self):
        real_cycle(self)
        if lost["n"] == 0:
            lost["n"] += 1
            raise DeviceUnreachable("no answer from 127.0.0.1 (simulated lost response)")

    mocker.patch.object(IpmiPower, "cycle", cycle_then_lose_the_answer)
    mocker.patch.object(runner, "UNKNOWN_OUTCOME_SETTLE_S", 0.0)
    mocker.patch.object(runner, "retry_delay", return_value=0.0)
    m = mark(lab, "esx-05")
    ticket_id = open_ticket(rt, "esx-05")
    [job_id] = run_ticket(rt, ticket_id)
    assert job_state(rt, job_id) == "succeeded"
    assert len(m.commands("cycle")) == 1
    with rt.db.session() as s:
        rows = [r for r in store.steps_of(s, job_id) if r.name == "send-cycle"]
    assert len(rows) == 1 and rows[0].status == "done"
    assert "confirmed from the device" in rows[0].result


@pytest.mark.parametrize("stop", ["cancel", "deadline"])
def test_cancel_or_deadline_waits_for_a_half_sent_cycle_to_be_checked(rt, lab, stop):
    m = mark(lab, "esx-07")
    ticket_id = open_ticket(rt, "esx-07")
    [job_id] = store.create_jobs_for_ticket(rt.db, rt.tickets.get(ticket_id), "bob", "test")
    driver = rt.power_driver(rt.inventory().host("esx-07"))
    perform_and_confirm(driver, PowerAction.ON, timeout=10)  # back on after the other case's cycle
    m = mark(lab, "esx-07")
    marker = driver.event_marker()
    driver.cycle()  # the command left; then the worker died before journaling done
    driver.close()
    with rt.db.session() as s:
        job = store.get_job(s, job_id)
        store.transition(s, job, JobEvent.START)
        job.step_index = 2
        job.data = {"path": 0, "power_before": "on", "mode": "native"}
        s.add(
            JobStep(
                job_id=job_id,
                idx=2,
                name="send-cycle",
                attempt=1,
                status="started",
                baseline={"event_marker": marker},
                started_at=store.now(),
            )
        )
        if stop == "cancel":
            job.cancel_requested = True
        else:
            job.deadline_at = store.now() - timedelta(seconds=1)
    owner = store.new_owner()
    assert store.claim(rt.db, job_id, owner, 60)
    state = runner.advance(rt, job_id, owner)
    assert state is not None and state.value == ("cancelled" if stop == "cancel" else "failed")
    with rt.db.session() as s:
        row = next(r for r in store.steps_of(s, job_id) if r.name == "send-cycle")
    assert row.status == "done" and "was received" in row.result  # established before letting go
    assert len(m.commands("cycle")) == 1


def test_operator_retry_of_a_needs_operator_job(rt, lab):
    m = mark(lab, "esx-07")
    ticket_id = open_ticket(rt, "esx-07")
    [job_id] = store.create_jobs_for_ticket(rt.db, rt.tickets.get(ticket_id), "bob", "test")
    with rt.db.session() as s:
        job = store.get_job(s, job_id)
        store.transition(s, job, JobEvent.START)
        store.finish(s, job, JobEvent.ESCALATE, "operator must check the PDU")
    assert job_state(rt, job_id) == "needs_operator"
    # needs_operator still holds the host: the state of the host is unconfirmed.
    second = open_ticket(rt, "esx-07")
    with pytest.raises(Exception, match=f"job {job_id}"):
        store.create_jobs_for_ticket(rt.db, rt.tickets.get(second), "bob", "test")
    assert store.request_retry(rt.db, job_id, "dave").value == "queued"
    run_ticket(rt, ticket_id)
    assert job_state(rt, job_id) == "succeeded"
    assert len(m.commands("cycle")) == 1
    outbox.deliver(rt.db, rt.ticket_system)
    assert rt.tickets.get(ticket_id).status is TicketStatus.RESOLVED
    with pytest.raises(NotPermitted):
        store.request_retry(rt.db, job_id, "dave")


def test_an_unconfirmed_cycle_attaches_the_bmc_event_log_to_the_ticket(rt, lab):
    import json as _json

    mark(lab, "esx-05")
    ticket_id = open_ticket(rt, "esx-05", params={"confirm_timeout": 0})
    [job_id] = run_ticket(rt, ticket_id)
    assert job_state(rt, job_id) == "failed"
    with rt.db.session() as s:
        reason = store.get_job(s, job_id).reason
    name = f"sel-esx-05-job{job_id}.json"
    assert f"BMC event log attached as {name}" in reason
    records = _json.loads(rt.tickets.attachment_content(ticket_id, name))
    assert records and records[-1]["action"] == "cycle"


def test_wrong_credentials_fail_at_once_without_retries(tmp_path, lab):
    inv = tmp_path / "inventory"
    shutil.copytree(lab.inventory_dir, inv)
    wrong = tmp_path / "wrong_password"
    wrong.write_text("not-the-password-1\n")
    text = (inv / "hosts.yml").read_text().replace(f"file:{lab.password_file}", f"file:{wrong}")
    (inv / "hosts.yml").write_text(text)
    rt = Runtime(
        Settings(db_url=f"sqlite:///{tmp_path / 'w.db'}", inventory=inv, log_file=tmp_path / "l.log")
    )
    ticket_id = open_ticket(rt, "esx-03")
    [job_id] = run_ticket(rt, ticket_id)
    assert job_state(rt, job_id) == "failed"
    with rt.db.session() as s:
        job = store.get_job(s, job_id)
        rows = [r for r in store.steps_of(s, job_id) if r.name == "read-power"]
    assert [r.status for r in rows] == ["failed"]  # refused is fatal: not retried
    assert "not-the-password-1" not in job.reason and lab.password() not in job.reason
    rt.db.dispose()
