"""Power jobs on every kind of lab device: a Mac on a PDU outlet, a server behind Redfish. Neither keeps an
event log we can read, so a cycle is off, dwell, on, each exactly once, and outlets of a strip stagger."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

from remotehands.jobs import store
from remotehands.lab.process import read_bmc_log, read_outlet_log
from tests.conftest import job_state, open_ticket, run_ticket, settle


def _outlet_commands(lab, mac: str) -> list[str]:
    return [e["command"] for e in read_outlet_log(lab.log_path, lab.macs[mac])]


def _redfish_resets(lab, host: str) -> list[str]:
    return [
        e["command"]
        for e in read_bmc_log(lab.log_path, host=host)
        if e.get("via") == "redfish" and "reset_type" in e and e.get("status") == 204
    ]


def test_a_mac_is_cycled_through_its_outlet_off_then_on(rt, lab):
    before = len(_outlet_commands(lab, "mac-01"))
    ticket_id = open_ticket(rt, "mac-01", action="power.cycle")
    [job_id] = run_ticket(rt, ticket_id, timeout=90)
    assert job_state(rt, job_id) == "succeeded"
    assert _outlet_commands(lab, "mac-01")[before:] == ["outlet_off", "outlet_on"]
    trail = [c.body for c in rt.tickets.comments(ticket_id)]
    assert any("read-power: mac-01 power is on via pdu-outlet pdu-r1-a#1" in c for c in trail)
    assert any("confirm-off: confirmed: mac-01 is off" in c for c in trail)
    assert any("send-on: on sent to mac-01" in c for c in trail)
    assert any("wait-reachable: mac-01 is back: SSH answers on 127.0.0.1:" in c for c in trail)


def test_a_redfish_server_is_cycled_off_then_on_each_once(rt, lab):
    before = len(_redfish_resets(lab, "rf-01"))
    ticket_id = open_ticket(rt, "rf-01", action="power.cycle")
    [job_id] = run_ticket(rt, ticket_id, timeout=90)
    assert job_state(rt, job_id) == "succeeded"
    assert _redfish_resets(lab, "rf-01")[before:] == ["power_off", "power_on"]


def test_outlets_of_one_strip_are_switched_on_staggered(rt, lab):
    pdu_stagger = rt.inventory().pdu("pdu-r1-a").stagger_seconds
    starts = {m: len(read_outlet_log(lab.log_path, lab.macs[m])) for m in ("mac-01", "mac-02")}
    tickets = [
        open_ticket(rt, m, action="power.cycle", params={"off_seconds": 0.2}) for m in ("mac-01", "mac-02")
    ]
    # Two tickets run together: both outlets come back on, at least the strip's stagger apart.
    ids = [store.create_jobs_for_ticket(rt.db, rt.tickets.get(t), "bob", "test")[0] for t in tickets]
    settle(rt, ids, timeout=90)
    assert all(job_state(rt, j) == "succeeded" for j in ids)
    ons = sorted(
        e["ts"]
        for m in ("mac-01", "mac-02")
        for e in read_outlet_log(lab.log_path, lab.macs[m])[starts[m] :]
        if e["command"] == "outlet_on"
    )
    assert len(ons) == 2
    assert ons[1] - ons[0] >= pdu_stagger - 0.05


@pytest.mark.slow
@pytest.mark.parametrize(
    "kill_at",
    ["send-cycle:after-act", "confirm-off:after-started", "send-on:after-act", "send-on:after-started"],
)
def test_killed_mac_cycle_switches_each_half_exactly_once(rt, lab, settings, kill_at):
    before = len(_outlet_commands(lab, "mac-02"))
    ticket_id = open_ticket(rt, "mac-02", action="power.cycle")
    [job_id] = store.create_jobs_for_ticket(rt.db, rt.tickets.get(ticket_id), "bob", "test")
    env = dict(os.environ, RH_DB_URL=settings.db_url, RH_INVENTORY=str(settings.inventory))
    env["RH_LOG_FILE"] = str(settings.log_file)
    cmd = [sys.executable, "-m", "remotehands", "worker", "--until-idle", "--workers", "1"]
    crashed = subprocess.run(
        cmd, env=dict(env, RH_FAULT_KILL_AT=kill_at), capture_output=True, timeout=120, check=False
    )
    assert crashed.returncode == -signal.SIGKILL
    restarted = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    assert job_state(rt, job_id) == "succeeded"
    assert _outlet_commands(lab, "mac-02")[before:] == ["outlet_off", "outlet_on"]


def test_a_mac_that_does_not_come_back_fails_with_a_clear_reason(tmp_path, lab):
    import shutil

    import yaml

    from remotehands.config import Settings
    from remotehands.runtime import Runtime

    inv = tmp_path / "inventory"
    shutil.copytree(lab.inventory_dir, inv)
    data = yaml.safe_load((inv / "hosts.yml").read_text())
    with socket.socket() as sock:  # a port where no Mac will ever answer
        sock.bind(("127.0.0.1", 0))
        silent = sock.getsockname()[1]
    data["all"]["children"]["lab1"]["children"]["lab1_r1"]["hosts"]["mac-02"]["ansible_port"] = silent
    (inv / "hosts.yml").write_text(yaml.safe_dump(data))
    rt = Runtime(
        Settings(db_url=f"sqlite:///{tmp_path / 'm.db'}", inventory=inv, log_file=tmp_path / "l.log")
    )
    ticket_id = open_ticket(rt, "mac-02", action="power.on")
    [job_id] = run_ticket(rt, ticket_id)
    assert (
        job_state(rt, job_id) == "succeeded"
    )  # it was already on: nothing was switched, nothing to wait for
    ticket_id = open_ticket(
        rt, "mac-02", action="power.cycle", params={"off_seconds": 0.2, "boot_timeout": 1}
    )
    [job_id] = run_ticket(rt, ticket_id, timeout=60)
    assert job_state(rt, job_id) == "failed"
    with rt.db.session() as s:
        reason = store.get_job(s, job_id).reason
    assert f"did not answer on 127.0.0.1:{silent}" in reason
    rt.db.dispose()


def test_an_ipmi_bmc_not_declared_to_log_power_actions_is_cycled_off_then_on(tmp_path, lab):
    import shutil

    import yaml

    from remotehands.config import Settings
    from remotehands.runtime import Runtime
    from tests.conftest import mark

    inv = tmp_path / "inventory"
    shutil.copytree(lab.inventory_dir, inv)
    data = yaml.safe_load((inv / "hosts.yml").read_text())
    power = data["all"]["children"]["lab1"]["children"]["lab1_r1"]["hosts"]["esx-06"]["power"]
    assert power.pop("event_log") is True
    (inv / "hosts.yml").write_text(yaml.safe_dump(data))
    rt = Runtime(
        Settings(db_url=f"sqlite:///{tmp_path / 'e.db'}", inventory=inv, log_file=tmp_path / "l.log")
    )
    m = mark(lab, "esx-06")
    ticket_id = open_ticket(rt, "esx-06", params={"off_seconds": 0.2})
    [job_id] = run_ticket(rt, ticket_id)
    assert job_state(rt, job_id) == "succeeded"
    changes = [e["command"] for e in m.commands() if e["command"] in ("cycle", "power_off", "power_on")]
    assert changes == ["power_off", "power_on"]
    rt.db.dispose()
