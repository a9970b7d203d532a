"""net.firewall_rule through the lab's four firewalls (ASA, IOS, Junos, FortiOS) over real Netmiko sessions.

Each test uses its own rule (its own destination port), so tests sharing the session's lab never see each
other's rules; the device's running config as the lab keeps it (``DIR/netdev/<name>.cfg``) is compared byte for
byte before and after.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from remotehands.errors import InvalidRequest
from remotehands.jobs import store
from remotehands.lab.faults import set_lab_fault
from remotehands.lab.process import LabInfo
from remotehands.runtime import Runtime
from remotehands.tickets.base import Severity, TaskRequest, TicketType
from remotehands.tickets.builtin import NewTicket
from tests.conftest import run_ticket

FIREWALLS = ("fw-asa-01", "fw-ios-01", "fw-srx-01", "fw-fgt-01")
# What each platform's config shows once the rule for destination port PORT is in (str.format).
SHOWS = {
    "fw-asa-01": "access-list outside_access_in extended permit tcp 203.0.113.0 255.255.255.0 host 198.51.100.20 eq {port}",
    "fw-ios-01": " permit tcp 203.0.113.0 0.0.0.255 host 198.51.100.20 eq {port}",
    "fw-srx-01": "destination-port {port}",
    "fw-fgt-01": "set tcp-portrange {port}",
}


def _firewalls(lab: LabInfo) -> dict[str, Any]:
    return dict(json.loads((lab.state_dir / "lab.json").read_text())["firewalls"])


def _config(lab: LabInfo, name: str) -> bytes:
    return Path(_firewalls(lab)[name]["config"]).read_bytes()


def _rule(port: int, **more: object) -> dict[str, object]:
    return {
        "source": "203.0.113.0/24",
        "destination": "198.51.100.20",
        "protocol": "tcp",
        "ports": str(port),
        "from_zone": "outside",
        "to_zone": "inside",
    } | more


def _ticket(rt: Runtime, devices: str | tuple[str, ...], params: dict[str, object]) -> str:
    """An approved ticket for the rule on ``devices``: one job per device, run side by side."""
    targets = (devices,) if isinstance(devices, str) else devices
    ticket_id = rt.tickets.create(
        NewTicket(
            type=TicketType.CONFIG_CHANGE,
            severity=Severity.DEGRADED,
            title=f"firewall rule on {', '.join(targets)}",
            requester="alice",
            customer="provider",
            subscription="provider",
            request=TaskRequest(action="net.firewall_rule", targets=targets, params=params),
        ),
        rt.inventory(),
    )
    rt.tickets.approve(ticket_id, "bob")
    return ticket_id


def _jobs(rt: Runtime, ids: list[int]) -> dict[str, tuple[str, str, dict[str, str]]]:
    """target -> (state, reason, {step: result})."""
    out = {}
    with rt.db.session() as s:
        for job_id in ids:
            job = store.get_job(s, job_id)
            steps = {row.name: row.result or "" for row in store.steps_of(s, job_id)}
            out[job.target] = (job.state, job.reason or "", steps)
    return out


def _attachments(rt: Runtime, ticket_id: str) -> dict[str, bytes]:
    return {
        a.name: rt.tickets.attachment_content(ticket_id, a.name) for a in rt.tickets.attachments(ticket_id)
    }


def test_firewall_rule_added_verified_repeat_is_noop_then_removed(rt: Runtime, lab: LabInfo) -> None:
    before = {d: _config(lab, d) for d in FIREWALLS}
    ticket = _ticket(rt, FIREWALLS, _rule(8400))
    jobs = _jobs(rt, run_ticket(rt, ticket, timeout=180))
    files = _attachments(rt, ticket)
    password = lab.password().encode()
    for device in FIREWALLS:
        state, reason, steps = jobs[device]
        assert state == "succeeded", (device, reason, steps)
        assert "confirmed and saved" in steps["net-confirm"]
        after = _config(lab, device)
        assert SHOWS[device].format(port=8400) in after.decode() and after != before[device]
        diff = files[f"{device}-change.diff"].decode()
        assert "8400" in diff and f"{device}-running-before.cfg" in files
    assert files and all(password not in data for data in files.values())
    added = {d: _config(lab, d) for d in FIREWALLS}
    # The same rule again: found present on every device, nothing sent, each job succeeds saying so.
    again = _jobs(rt, run_ticket(rt, _ticket(rt, FIREWALLS, _rule(8400)), timeout=180))
    for device in FIREWALLS:
        state, reason, steps = again[device]
        assert state == "succeeded", (device, reason)
        assert "already present" in steps["net-precheck"]
        assert _config(lab, device) == added[device]
    # Removed (by another ticket): every config byte-identical to before the add.
    removed = _jobs(rt, run_ticket(rt, _ticket(rt, FIREWALLS, _rule(8400, op="remove")), timeout=180))
    for device in FIREWALLS:
        assert removed[device][0] == "succeeded", (device, removed[device][1:])
        assert _config(lab, device) == before[device], device


@pytest.mark.parametrize("fault", ["reject_second_line", "drop_after_first_line"])
def test_firewall_failed_change_leaves_config_byte_identical(rt: Runtime, lab: LabInfo, fault: str) -> None:
    port = 8500 if fault == "reject_second_line" else 8600
    before = {d: _config(lab, d) for d in FIREWALLS}
    for device in FIREWALLS:
        set_lab_fault(lab.state_dir, device, fault)
    try:
        jobs = _jobs(rt, run_ticket(rt, _ticket(rt, FIREWALLS, _rule(port)), timeout=180))
    finally:
        for device in FIREWALLS:
            set_lab_fault(lab.state_dir, device, fault, enabled=False)
    for device in FIREWALLS:
        state, reason, _ = jobs[device]
        assert state == "failed", (device, reason)
        assert "equals the backup" in reason
        assert ("rejected" in reason) if fault == "reject_second_line" else ("session failed" in reason)
        assert _config(lab, device) == before[device], device


@pytest.mark.parametrize(
    ("params", "field"),
    [
        (_rule(443, source="203.0.113.0/33"), "request.params.source"),
        (_rule(443, source="203.0.113.7/24"), "request.params.source"),
        (_rule(70000), "request.params.ports"),
        (_rule(443, from_zone="dmz"), "request.params.from_zone"),
        (_rule(443, protocol="icmp"), "request.params.ports"),
        (_rule(443, destination="2001:db8::5"), "request.params"),
    ],
)
def test_firewall_bad_input_is_refused_at_intake_with_the_field(
    rt: Runtime, lab: LabInfo, params: dict[str, object], field: str
) -> None:
    before = _config(lab, "fw-asa-01")
    with pytest.raises(InvalidRequest) as err:
        _ticket(rt, "fw-asa-01", params)
    assert field in str(err.value)
    assert "Fix:" in str(err.value)
    assert _config(lab, "fw-asa-01") == before


def test_network_plan_prints_commands_and_diff_and_changes_nothing(cli: Any, lab: LabInfo) -> None:
    before = _config(lab, "fw-ios-01")
    code, out, err = cli(
        "net", "rule", "add", "fw-ios-01", "--source", "203.0.113.0/24", "--destination", "198.51.100.20",
        "--protocol", "tcp", "--ports", "8800", "--from-zone", "outside", "--to-zone", "inside", "--plan",
    )  # fmt: skip
    assert code == 0, err
    assert "configure terminal revert timer 2" in out
    assert "permit tcp 203.0.113.0 0.0.0.255 host 198.51.100.20 eq 8800" in out
    assert "configure confirm" in out
    assert "+ permit tcp" in out
    assert _config(lab, "fw-ios-01") == before


def test_network_session_refuses_a_device_with_another_host_key(rt: Runtime, lab: LabInfo) -> None:
    from remotehands.errors import DeviceRefused
    from remotehands.network.session import open_session

    device = rt.inventory().network_device("fw-ios-01")
    other = _firewalls(lab)["fw-asa-01"]["host_key"]
    with pytest.raises(DeviceRefused) as err, open_session(device.model_copy(update={"ssh_host_key": other})):
        pass
    assert "host key" in str(err.value) and "ssh_host_key" in str(err.value)


def test_network_change_window_spans_midnight_in_the_site_time_zone() -> None:
    from datetime import UTC, datetime

    from remotehands.inventory.models import ChangeWindow
    from remotehands.network.pipeline import check_window

    window = ChangeWindow(days=("fri",), start="22:00", end="04:00")
    # Friday 2026-12-04 22:30 in Amsterdam is 21:30 UTC; Saturday 03:59 there is 02:59 UTC.
    assert check_window(window, "Europe/Amsterdam", datetime(2026, 12, 4, 21, 30, tzinfo=UTC)) is None
    assert check_window(window, "Europe/Amsterdam", datetime(2026, 12, 5, 2, 59, tzinfo=UTC)) is None
    closed = check_window(window, "Europe/Amsterdam", datetime(2026, 12, 5, 3, 0, tzinfo=UTC))
    assert closed is not None and "Sat 04:00" in closed
    assert check_window(window, "Europe/Amsterdam", datetime(2026, 12, 3, 21, 30, tzinfo=UTC)) is not None
    assert check_window(None, "UTC", datetime(2026, 12, 3, 12, 0, tzinfo=UTC)) is None


def test_network_rule_from_the_cli_needs_the_approved_rule(rt: Runtime, cli: Any, lab: LabInfo) -> None:
    ticket = _ticket(rt, "fw-srx-01", _rule(8900))
    code, _, err = cli("net", "rule", "add", "fw-srx-01", "--ticket", ticket, "--ports", "8901")
    assert code == 3 and "was approved for add permit tcp" in err
    code, _, err = cli(
        "net", "rule", "add", "fw-srx-01", "--ticket", ticket, "--destination", "198.51.100.20/32"
    )
    assert code == 0, err
    assert "destination-port 8900" in _config(lab, "fw-srx-01").decode()


def test_firewall_device_that_never_comes_back_from_commit_confirmed_is_waited_for(
    rt: Runtime, lab: LabInfo
) -> None:
    # The commit confirmed takes effect, the session drops and the device answers nobody until its timer
    # (2 simulated minutes, 60 s in the lab) rolls the change back: the job waits for it, then proves it.
    device = "fw-srx-01"
    before = _config(lab, device)
    set_lab_fault(lab.state_dir, device, "no_return_after_commit")
    try:
        jobs = _jobs(rt, run_ticket(rt, _ticket(rt, device, _rule(9100)), timeout=240))
    finally:
        set_lab_fault(lab.state_dir, device, "no_return_after_commit", enabled=False)
    state, reason, _ = jobs[device]
    assert state == "failed", reason
    assert "stopped answering" in reason and "until its revert timer ran" in reason
    assert "equals the backup" in reason
    assert _config(lab, device) == before
