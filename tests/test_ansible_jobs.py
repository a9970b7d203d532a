"""playbook.run: a ticket runs a shipped playbook through ansible-runner on a stand-in Mac (a real OpenSSH
server on 127.0.0.1 with sw_vers/softwareupdate stand-ins), with per-task progress and a recap on the ticket,
no change the second time, check mode from the CLI, a cancel that stops the run within seconds, the host key
pinned by remotehands, and a secret that reaches no comment, attachment, job row or log."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from remotehands.config import Settings
from remotehands.jobs import store
from remotehands.jobs.executor import LocalExecutor
from remotehands.lab.openssh import StandInHost, start_sshd
from remotehands.lab.standins.state import default_state
from remotehands.runtime import Runtime
from remotehands.tickets.base import Severity, TaskRequest, TicketType
from remotehands.tickets.builtin import NewTicket
from tests.conftest import run_ticket, settled

PLAYBOOKS = Path(__file__).resolve().parents[1] / "playbooks"
HOST = "mac-ans-01"
SECRET = "owner-Pw-7431-sentinel"
FAST = {"macos_update_poll_seconds": 1, "macos_update_restart_wait": 1}


@pytest.fixture
def mac(tmp_path: Path) -> Iterator[StandInHost]:
    state = default_state()
    state["mac"]["owner_user"], state["mac"]["owner_password"] = "admin", SECRET
    with start_sshd(tmp_path / "sshd", state=state) as host:
        yield host


def _inventory(where: Path, mac: StandInHost, host_key: str) -> Path:
    ansible = {k: v for k, v in mac.ansible_vars().items() if k != "ansible_ssh_common_args"}
    entry = {
        **ansible,
        "kind": "mac-mini",
        "model": "apple-silicon",
        "serial_number": "C02ANS0001",
        "subscription": "provider",
        "power": {"type": "manual"},
        "ssh_host_key": host_key,
    }
    hosts = {"all": {"children": {"lab1": {"vars": {"site": "lab1", "rack": "r1"}, "hosts": {HOST: entry}}}}}
    (where / "group_vars").mkdir(parents=True)
    (where / "hosts.yml").write_text(yaml.safe_dump(hosts))
    (where / "group_vars" / "all.yml").write_text(yaml.safe_dump({"sites": {"lab1": {}}}))
    return where


def _runtime(
    tmp_path: Path, mac: StandInHost, *, playbooks: Path = PLAYBOOKS, key: str | None = None
) -> Runtime:
    inventory = _inventory(tmp_path / "inventory", mac, key or mac.host_key_line)
    return Runtime(
        Settings(
            db_url=f"sqlite:///{tmp_path / 'rh.db'}",
            inventory=inventory,
            playbooks=playbooks,
            log_file=tmp_path / "rh.log",
        )
    )


def _ticket(rt: Runtime, params: dict[str, Any]) -> str:
    ticket_id = rt.tickets.create(
        NewTicket(
            type=TicketType.CONFIG_CHANGE,
            severity=Severity.DEGRADED,
            title=f"playbook {params['playbook']} on {HOST}",
            requester="alice",
            customer="provider",
            subscription="provider",
            request=TaskRequest(action="playbook.run", targets=(HOST,), params=params),
        ),
        rt.inventory(),
    )
    rt.tickets.approve(ticket_id, "bob")
    return ticket_id


def _update(version: str) -> dict[str, Any]:
    return {
        "playbook": "macos_update",
        "vars": {"target_version": version, "macos_update_owner_user": "admin", **FAST},
        "secret_vars": {"macos_update_owner_password": "env:RH_TEST_OWNER_PW"},
    }


def _job(rt: Runtime, job_id: int) -> tuple[str, str, list[str]]:
    with rt.db.session() as s:
        job = store.get_job(s, job_id)
        return job.state, job.reason or "", [st.result or "" for st in store.steps_of(s, job_id)]


def test_ansible_ticket_update_streams_progress_and_recap_then_holds(
    tmp_path: Path, mac: StandInHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RH_TEST_OWNER_PW", SECRET)
    rt = _runtime(tmp_path, mac)
    first = _ticket(rt, _update("14.4.1"))
    [job_id] = run_ticket(rt, first, timeout=120)
    state, reason, results = _job(rt, job_id)
    assert state == "succeeded", (reason, results)
    assert mac.state()["mac"]["version"] == "14.4.1"
    trail = "\n".join(c.body for c in rt.tickets.comments(first))
    assert "macos_update.yml on mac-ans-01:" in trail and "play '" in trail
    assert "task '" in trail and f"{HOST} changed" in trail, trail
    recap = next(r for r in results if "recap" in r)
    assert f"{HOST}: ok=" in recap and "changed=0" not in recap and "failed=0" in recap, recap
    # Again: the playbook finds the Mac at the version and changes nothing.
    second = _ticket(rt, _update("14.4.1"))
    [job_id] = run_ticket(rt, second, timeout=120)
    state, reason, results = _job(rt, job_id)
    assert state == "succeeded", (reason, results)
    assert any(f"{HOST}: ok=" in r and "changed=0" in r for r in results), results
    # The owner's password went to softwareupdate on stdin and nowhere else remotehands keeps things.
    kept = [c.body for t in (first, second) for c in rt.tickets.comments(t)]
    kept += [a.decode(errors="replace") for t in (first, second) for _, a in _attachments(rt, t)]
    kept += [reason, *results, (tmp_path / "rh.log").read_text() if (tmp_path / "rh.log").exists() else ""]
    assert _attachments(rt, first), "the run's output is attached"
    assert not [k for k in kept if SECRET in k]
    rt.db.dispose()


def _attachments(rt: Runtime, ticket_id: str) -> list[tuple[str, bytes]]:
    return [
        (a.name, rt.tickets.attachment_content(ticket_id, a.name)) for a in rt.tickets.attachments(ticket_id)
    ]


def test_ansible_cancel_stops_a_running_playbook_within_seconds(tmp_path: Path, mac: StandInHost) -> None:
    books = tmp_path / "playbooks"
    books.mkdir()
    (books / "slow.yml").write_text(
        "# slow: a long task, to be cancelled\n- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - name: wait a while\n      ansible.builtin.command: sleep 60\n"
    )
    rt = _runtime(tmp_path, mac, playbooks=books)
    ticket_id = _ticket(rt, {"playbook": "slow"})
    [job_id] = store.create_jobs_for_ticket(rt.db, rt.tickets.get(ticket_id), "bob", "test")
    executor = LocalExecutor(rt, poll=0.05)
    done = threading.Event()
    runner = threading.Thread(
        target=lambda: (executor.run_until(lambda: settled(rt, [job_id]), timeout=90), done.set()),
        daemon=True,
    )
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while _job(rt, job_id)[0] != "running" and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(3)  # the playbook is inside `sleep 60` now
        asked = time.monotonic()
        store.request_cancel(rt.db, job_id, "carol")
        assert done.wait(30)
        took = time.monotonic() - asked
    finally:
        executor.shutdown()
    state, reason, _ = _job(rt, job_id)
    assert state == "cancelled", reason
    assert took < 15, took
    assert "stopped on cancel" in reason
    assert any("cancel" in c.body for c in rt.tickets.comments(ticket_id))
    rt.db.dispose()


def test_ansible_plan_runs_check_mode_and_changes_nothing(
    tmp_path: Path, mac: StandInHost, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = _runtime(tmp_path, mac)
    monkeypatch.setenv("RH_INVENTORY", str(rt.settings.inventory))
    monkeypatch.setenv("RH_PLAYBOOKS", str(PLAYBOOKS))
    monkeypatch.setenv("RH_DB_URL", rt.settings.db_url)
    code, out, err = cli(
        "playbook",
        "run",
        "macos_update",
        "--limit",
        HOST,
        "--plan",
        "--json",
        "--var",
        "target_version=14.4.1",
    )
    assert code == 0, (out, err)
    result = json.loads(out)["hosts"][HOST]
    assert result["status"] == "successful" and f"{HOST}: ok=" in result["recap"], result
    assert mac.state()["mac"]["version"] == "14.3"  # check mode: nothing installed
    code, out, err = cli("playbook", "run", "macos_update", "--limit", HOST)
    assert code == 3 and "needs an approved ticket" in err
    code, _, err = cli("playbook", "run", "no_such_book", "--limit", HOST, "--plan")
    assert code == 2 and "macos_update" in err  # the error lists the playbooks there are
    rt.db.dispose()


def test_ansible_a_host_key_that_is_not_the_pin_is_refused(tmp_path: Path, mac: StandInHost) -> None:
    other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHhN5Qd3b0u5K1gS3pVqgYx1f0kVtHq2n3e6m9y8vXwZ"
    rt = _runtime(tmp_path, mac, key=other)
    [job_id] = run_ticket(rt, _ticket(rt, {"playbook": "mac_baseline"}), timeout=120)
    state, reason, _ = _job(rt, job_id)
    assert state == "failed", reason
    assert "not the one pinned for it; nothing ran" in reason, reason
    assert [e for e in mac.state()["log"] if e["argv"][0] == "pmset"] == []  # nothing ran on the Mac
    rt.db.dispose()
