"""Approval is re-read at the source before every step that changes the equipment: revoked mid-job, the job
stops before its next change, is cancelled, and the ticket says why."""

from __future__ import annotations

from remotehands.bmc.base import PowerAction, perform_and_confirm
from remotehands.jobs import outbox, store
from remotehands.jobs.executor import LocalExecutor
from remotehands.lab.process import read_outlet_log
from tests.conftest import job_state, open_ticket, settle


def _commands(lab, mac: str, since: int) -> list[str]:
    return [e["command"] for e in read_outlet_log(lab.log_path, lab.macs[mac])[since:]]


def test_approval_revoked_mid_cycle_cancels_before_the_next_change(rt, lab) -> None:
    mac = "mac-02"
    start = len(read_outlet_log(lab.log_path, lab.macs[mac]))
    ticket_id = open_ticket(rt, mac, params={"off_seconds": 3})
    [job_id] = store.create_jobs_for_ticket(rt.db, rt.tickets.get(ticket_id), "bob", "test")
    executor = LocalExecutor(rt, poll=0.05)
    try:
        # Run until the outlet is off and the job waits out the dwell before switching it back on.
        def dwelling() -> bool:
            with rt.db.session() as s:
                job = store.get_job(s, job_id)
                return job.state == "waiting" and "stays off" in (job.reason or "")

        assert executor.run_until(dwelling, timeout=30)
    finally:
        executor.shutdown()
    rt.tickets.revoke(ticket_id, "bob", reason="customer withdrew the request")
    settle(rt, [job_id], timeout=30)
    assert job_state(rt, job_id) == "cancelled"
    with rt.db.session() as s:
        reason = store.get_job(s, job_id).reason
    assert "no longer approved" in reason and "send-on" in reason
    assert _commands(lab, mac, start) == ["outlet_off"]  # nothing was switched after the revoke
    outbox.deliver(rt.db, rt.ticket_system)
    assert any("no longer approved" in c.body for c in rt.tickets.comments(ticket_id))
    # Leave the lab Mac on for the tests after this one.
    driver = rt.power_driver(rt.inventory().host(mac))
    try:
        perform_and_confirm(driver, PowerAction.ON, timeout=10)
    finally:
        driver.close()
