"""The Ansible modules of ``playbooks/library``, run by a real ``ansible-playbook`` (through ansible-runner)
on localhost against this test's database and the session's lab."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import ansible_runner
import pytest
import yaml

from tests.conftest import mark, open_ticket

LIBRARY = Path(__file__).resolve().parents[1] / "playbooks" / "library"

pytestmark = pytest.mark.slow


def play(tmp_path: Path, settings, tasks: list[dict[str, Any]]) -> tuple[int, dict[str, dict[str, Any]]]:
    """Run one play of ``tasks`` on localhost; the exit code and each task's result by task name (``failed``
    set on the tasks that failed)."""
    data = tmp_path / "runner"
    (data / "project").mkdir(parents=True)
    (data / "inventory").mkdir()
    (data / "inventory" / "hosts").write_text(
        f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n"
    )
    (data / "project" / "play.yml").write_text(
        yaml.safe_dump(
            [{"name": "remote hands", "hosts": "localhost", "gather_facts": False, "tasks": tasks}]
        )
    )
    bin_dir = str(Path(sys.executable).parent)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "ANSIBLE_LIBRARY": str(LIBRARY),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-local"),
        "ANSIBLE_REMOTE_TEMP": str(tmp_path / "ansible-remote"),
        "ANSIBLE_NOCOLOR": "1",
        "RH_DB_URL": settings.db_url,
        "RH_INVENTORY": str(settings.inventory),
        "RH_LOG_FILE": str(settings.log_file),
        "RH_USER": "ansible",
        "XDG_STATE_HOME": os.environ["XDG_STATE_HOME"],  # the ticket key of this test's state
    }
    runner = ansible_runner.run(
        private_data_dir=str(data), playbook="play.yml", envvars=env, quiet=True, timeout=120
    )
    results = {
        ev["event_data"]["task"]: ev["event_data"]["res"] | {"failed": ev["event"] == "runner_on_failed"}
        for ev in runner.events
        if ev.get("event") in ("runner_on_ok", "runner_on_failed")
    }
    return int(runner.rc), results


def jobs(cli) -> list[dict[str, Any]]:
    code, out, err = cli("jobs", "list", "--json")
    assert code == 0, err
    return list(json.loads(out))


def test_a_playbook_cycles_a_host_under_an_approved_ticket(rt, lab, cli, settings, tmp_path):
    m = mark(lab, "esx-02")
    ticket = open_ticket(rt, "esx-02")
    cycle = {"hosts": ["esx-02"], "state": "cycle", "ticket": ticket}
    rc, res = play(
        tmp_path,
        settings,
        [{"name": "cycle", "remotehands_power": cycle}, {"name": "again", "remotehands_power": cycle}],
    )
    assert rc == 0, res
    done = res["cycle"]
    assert done["changed"] is True and done["ticket"] == ticket and done["action"] == "power.cycle"
    [job_id] = done["jobs"]
    [row] = done["results"]
    assert row["host"] == "esx-02" and row["job"] == job_id and row["state"] == "succeeded"
    assert row["changed"] is True and row["power_before"] == "on"
    # The same task again returns the job it made: nothing is repeated, nothing changed.
    assert res["again"]["changed"] is False and res["again"]["jobs"] == [job_id]
    listed = {j["id"]: j for j in jobs(cli)}
    assert listed[job_id]["state"] == "succeeded" and listed[job_id]["ticket"] == ticket
    assert listed[job_id]["target"] == "esx-02" and len(listed) == 1
    assert len(m.commands("cycle")) == 1
    assert lab.password() not in json.dumps(res)


def test_an_unapproved_ticket_fails_the_task_with_remotehands_message(rt, lab, cli, settings, tmp_path):
    m = mark(lab, "esx-04")
    ticket = open_ticket(rt, "esx-04", approver=None)
    task = {"hosts": ["esx-04"], "state": "cycle", "ticket": ticket}
    rc, res = play(tmp_path, settings, [{"name": "cycle", "remotehands_power": task}])
    assert rc != 0
    failed = res["cycle"]
    assert failed["failed"] is True and failed["changed"] is False
    assert f"{ticket} is not approved" in failed["msg"]
    assert f"remotehands tickets approve {ticket}" in failed["msg"]
    assert "Traceback" not in json.dumps(failed) and "module_stderr" not in failed
    assert jobs(cli) == []
    assert m.commands() == []


def test_check_mode_reads_power_and_makes_no_job(rt, lab, cli, settings, tmp_path):
    m = mark(lab, "esx-03")
    cycle = open_ticket(rt, "esx-03")
    power_on = open_ticket(rt, "esx-03", action="power.on")
    rc, res = play(
        tmp_path,
        settings,
        [
            {
                "name": "cycle",
                "remotehands_power": {"hosts": ["esx-03"], "state": "cycle", "ticket": cycle},
                "check_mode": True,
            },
            {
                "name": "on",
                "remotehands_power": {"hosts": ["esx-03"], "state": "on", "ticket": power_on},
                "check_mode": True,
            },
        ],
    )
    assert rc == 0, res
    [would] = res["cycle"]["results"]
    assert res["cycle"]["changed"] is True and res["cycle"]["jobs"] == []
    assert would["state"] == "would_run" and would["power_before"] == "on" and would["job"] is None
    [already] = res["on"]["results"]
    assert res["on"]["changed"] is False and already["changed"] is False
    assert "already on" in already["result"]
    assert jobs(cli) == []
    assert [e for e in m.commands() if e["command"] in ("cycle", "power_on", "power_off")] == []


def test_remotehands_job_runs_only_what_the_ticket_asks(rt, lab, cli, settings, tmp_path):
    mark(lab, "esx-06")
    cycle = open_ticket(rt, "esx-05")
    power_on = open_ticket(rt, "esx-06", action="power.on")
    later = open_ticket(rt, "esx-07", action="power.on")
    rc, res = play(
        tmp_path,
        settings,
        [
            {
                "name": "other action",
                "remotehands_job": {"action": "power.off", "targets": ["esx-05"], "ticket": cycle},
                "ignore_errors": True,
            },
            {
                "name": "other params",
                "remotehands_job": {
                    "action": "power.cycle",
                    "targets": ["esx-05"],
                    "ticket": cycle,
                    "params": {"off_seconds": 1},
                },
                "ignore_errors": True,
            },
            {
                "name": "check",
                "remotehands_job": {"action": "power.cycle", "targets": ["esx-05"], "ticket": cycle},
                "check_mode": True,
            },
            {
                "name": "as asked",
                "remotehands_job": {"action": "power.on", "targets": ["esx-06"], "ticket": power_on},
            },
            {
                "name": "queued",
                "remotehands_job": {
                    "action": "power.on",
                    "targets": ["esx-07"],
                    "ticket": later,
                    "wait": False,
                },
            },
        ],
    )
    assert rc == 0, res
    for name in ("other action", "other params"):
        assert res[name]["failed"] is True, res[name]
        assert f"{cycle} asks for power.cycle on esx-05 with no params" in res[name]["msg"]
    assert "not power.off on esx-05 with no params" in res["other action"]["msg"]
    assert 'not power.cycle on esx-05 with params {"off_seconds": 1}' in res["other params"]["msg"]
    [would] = res["check"]["jobs"]
    assert res["check"]["changed"] is True and would["state"] == "would_run" and would["id"] is None
    # esx-06 is already on: its power.on job succeeds without switching anything, so nothing changed.
    ran = res["as asked"]
    [job] = ran["jobs"]
    assert job["target"] == "esx-06" and job["state"] == "succeeded" and job["changed"] is False
    assert ran["changed"] is False
    assert job["last_step"]["name"] == "wait-reachable" and job["last_step"]["status"] == "skipped"
    # Without wait the job is made and left queued for a worker: that is the change.
    [queued] = res["queued"]["jobs"]
    assert res["queued"]["changed"] is True and queued["state"] == "queued" and queued["last_step"] is None
    assert [(j["id"], j["ticket"], j["state"]) for j in jobs(cli)] == [
        (queued["id"], later, "queued"),
        (job["id"], power_on, "succeeded"),
    ]
