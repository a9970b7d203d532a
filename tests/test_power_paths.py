"""Power paths: fallback in inventory order with every attempt recorded, and manual power by a technician."""

from __future__ import annotations

import shutil
import socket

import yaml

from remotehands.config import Settings
from remotehands.jobs import outbox, store
from remotehands.jobs.executor import LocalExecutor
from remotehands.runtime import Runtime
from tests.conftest import job_state, mark, open_ticket, run_ticket


def _dead_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _runtime_with(tmp_path, lab, host: str, power: object) -> Runtime:
    inv = tmp_path / "inventory"
    shutil.copytree(lab.inventory_dir, inv)
    data = yaml.safe_load((inv / "hosts.yml").read_text())
    data["all"]["children"]["lab1"]["children"]["lab1_r1"]["hosts"][host]["power"] = power
    (inv / "hosts.yml").write_text(yaml.safe_dump(data))
    return Runtime(
        Settings(
            db_url=f"sqlite:///{tmp_path / 'p.db'}", inventory=inv, log_file=tmp_path / "l.log", bmc_timeout=1
        )
    )


def test_fallback_uses_the_next_path_and_says_why_the_first_failed(tmp_path, lab):
    live = yaml.safe_load((lab.inventory_dir / "hosts.yml").read_text())
    live_power = live["all"]["children"]["lab1"]["children"]["lab1_r1"]["hosts"]["esx-04"]["power"]
    dead_power = dict(live_power, port=_dead_port())
    rt = _runtime_with(tmp_path, lab, "esx-04", [dead_power, live_power])
    m = mark(lab, "esx-04")
    ticket_id = open_ticket(rt, "esx-04")
    [job_id] = run_ticket(rt, ticket_id)
    assert job_state(rt, job_id) == "succeeded"
    assert len(m.commands("cycle")) == 1
    with rt.db.session() as s:
        job = store.get_job(s, job_id)
        read = next(r for r in store.steps_of(s, job_id) if r.name == "read-power")
    attempts = job.data["attempts"]
    assert [a["ok"] for a in attempts] == [False, True]
    assert str(dead_power["port"]) in attempts[0]["path"] and "127.0.0.1" in attempts[0]["detail"]
    assert f"ipmi 127.0.0.1:{dead_power['port']}" in read.result and "tried" in read.result
    rt.db.dispose()


def test_manual_power_asks_a_technician_and_waits_for_confirmation(tmp_path, lab):
    rt = _runtime_with(tmp_path, lab, "esx-06", {"type": "manual"})
    m = mark(lab, "esx-06")
    ticket_id = open_ticket(rt, "esx-06")
    [job_id] = store.create_jobs_for_ticket(rt.db, rt.tickets.get(ticket_id), "bob", "test")
    executor = LocalExecutor(rt, poll=0.02)
    try:
        assert executor.run_until(lambda: job_state(rt, job_id) == "waiting", timeout=20)
        outbox.deliver(rt.db, rt.ticket_system)
        asks = [c.body for c in rt.tickets.comments(ticket_id) if "TECHNICIAN NEEDED" in c.body]
        assert len(asks) == 1 and f"remotehands jobs confirm {job_id}" in asks[0] and "rack r1" in asks[0]
        store.confirm_manual(rt.db, job_id, "tina")
        assert executor.run_until(lambda: job_state(rt, job_id) == "succeeded", timeout=20)
    finally:
        executor.shutdown()
    trail = [c.body for c in rt.tickets.comments(ticket_id)]
    assert any("tina confirmed" in c for c in trail)
    assert m.commands() == []  # nothing was sent to any BMC
    rt.db.dispose()
