"""storage.expand_lun through the lab: each array type (ONTAP, Pure, PowerStore over HTTPS) with two hosts
mapped (ESXi sharing a datastore; Linux active/passive with LVM+ext4; Linux with xfs on the multipath device),
refusals before anything changes, an array error and a host error mid-way (needs_operator naming the step,
then a retry that resumes there), and a worker killed around the resize (never resized twice).

The lab is shared by the tests of this process, so each test reads the LUN's size first and grows it a little.
"""

from __future__ import annotations

import json
import signal
from contextlib import closing
from pathlib import Path

import pytest
from pytest_mock import MockerFixture

from remotehands.errors import DeviceRefused, InvalidRequest, RemoteHandsError
from remotehands.jobs import store
from remotehands.lab.faults import set_lab_fault
from remotehands.lab.process import LabInfo, read_bmc_log
from remotehands.reimage.access import pinned_ssh
from remotehands.runtime import Runtime
from remotehands.storage import hostside
from remotehands.storage.arrays import driver_for
from remotehands.storage.base import GiB
from remotehands.storage.pipeline import StorageVerifyArray, refuse_ungrowable
from remotehands.tickets.base import Severity, TaskRequest, TicketType
from remotehands.tickets.builtin import NewTicket
from tests.conftest import job_state, run_ticket, settle, worker_until_idle

ARRAYS = ("san-ontap-01", "san-pure-01", "san-pstore-01")


def _lun(rt: Runtime, array: str) -> tuple[str, int]:
    """The lab array's one LUN and its size now."""
    target = rt.inventory().array(array)
    [name] = target.luns
    with closing(driver_for(target)) as driver:
        return name, driver.lun(name).size


def _views(rt: Runtime, array: str) -> dict[str, hostside.HostView]:
    target = rt.inventory().array(array)
    [(name, use)] = target.luns.items()
    with closing(driver_for(target)) as driver:
        naa = driver.lun(name).naa
    views = {}
    for host_name in use.hosts:
        host = rt.inventory().host(host_name)
        with pinned_ssh(rt, host) as ssh:
            views[host_name] = hostside.look(ssh, "esxi" if host.kind == "esxi" else "linux", naa, use)
    return views


def _ticket(rt: Runtime, array: str, params: dict[str, object]) -> str:
    ticket_id = rt.tickets.create(
        NewTicket(
            type=TicketType.CONFIG_CHANGE,
            severity=Severity.DEGRADED,
            title=f"grow a LUN on {array}",
            requester="alice",
            customer="provider",
            subscription="provider",
            request=TaskRequest(action="storage.expand_lun", targets=(array,), params=params),
        ),
        rt.inventory(),
    )
    rt.tickets.approve(ticket_id, "bob")
    return ticket_id


def _resizes(lab: LabInfo, array: str) -> int:
    return len(read_bmc_log(lab.log_path, host=array, command="resize"))


def _job(rt: Runtime, job_id: int) -> tuple[str, str, list[tuple[str, str, str]]]:
    with rt.db.session() as s:
        job = store.get_job(s, job_id)
        steps = [(st.name, st.status, st.result or "") for st in store.steps_of(s, job_id)]
        return job.state, job.reason or "", steps


def _trail(rt: Runtime, ticket_id: str) -> str:
    return "\n".join(c.body for c in rt.tickets.comments(ticket_id))


@pytest.mark.parametrize("array", ARRAYS)
def test_storage_expand_grows_the_lun_and_both_hosts(rt: Runtime, lab: LabInfo, array: str) -> None:
    name, size = _lun(rt, array)
    before = _views(rt, array)
    resizes = _resizes(lab, array)
    ticket_id = _ticket(rt, array, {"lun": name, "size": f"{(size + 10 * GiB) // GiB}G"})
    [job_id] = run_ticket(rt, ticket_id, timeout=120)
    state, reason, steps = _job(rt, job_id)
    assert state == "succeeded", (reason, steps)
    assert _lun(rt, array) == (name, size + 10 * GiB)
    assert _resizes(lab, array) - resizes == 1
    after = _views(rt, array)
    assert set(after) == set(before) and len(after) == 2
    for host, view in after.items():
        assert view.device_size == size + 10 * GiB, host
        if before[host].fs_size is not None:  # the datastore / the mounted filesystem grew
            assert view.fs_size is not None and view.fs_size > before[host].fs_size, host
    assert {v.fstype for v in after.values() if v.fs_size is not None} <= {"vmfs", "ext4", "xfs"}
    grown = [h for h in after if before[h].fs_size is not None]
    assert grown, "no host showed a grown datastore or filesystem"
    names = [n for n, status, _ in steps if status == "done"]
    for host in after:  # each host's steps are journaled on their own
        assert f"host-rescan:{host}" in names and f"host-grow:{host}" in names
    trail = _trail(rt, ticket_id)
    for host in after:  # the ticket shows each host's rescan and what it saw
        assert f"{host} rescanned: sees {(size + 10 * GiB) // GiB} GiB" in trail, trail


@pytest.mark.parametrize("array", ARRAYS)
def test_storage_shrink_and_equal_size_refused_before_any_change(
    rt: Runtime, lab: LabInfo, array: str
) -> None:
    name, size = _lun(rt, array)
    resizes = _resizes(lab, array)
    for asked, says in ((size - 1024**2, "would shrink it"), (size, "would leave it as it is")):
        [job_id] = run_ticket(rt, _ticket(rt, array, {"lun": name, "size": asked}))
        state, reason, _ = _job(rt, job_id)
        assert state == "failed" and "storage-precheck" in reason and says in reason, reason
    assert _lun(rt, array) == (name, size)
    assert _resizes(lab, array) == resizes


@pytest.mark.parametrize(
    ("array", "container"),
    [
        ("san-ontap-01", "volume vol_esx01 (aggregate aggr1) has"),
        ("san-pure-01", "array san-pure-01 has"),
        ("san-pstore-01", "appliance A1 of san-pstore-01 has"),
    ],
)
def test_storage_not_enough_free_space_refused_with_the_numbers(
    rt: Runtime, lab: LabInfo, array: str, container: str
) -> None:
    name, size = _lun(rt, array)
    resizes = _resizes(lab, array)
    [job_id] = run_ticket(rt, _ticket(rt, array, {"lun": name, "size": "10T"}))
    state, reason, _ = _job(rt, job_id)
    assert state == "failed", reason
    grow = (10 * 1024**4 - size) // GiB
    assert f"needs {grow} GiB but {container}" in reason and "GiB free" in reason, reason
    assert _lun(rt, array) == (name, size)
    assert _resizes(lab, array) == resizes


def test_storage_intake_names_the_bad_field(rt: Runtime) -> None:
    with pytest.raises(InvalidRequest, match="lun 'nope'"):
        _ticket(rt, "san-pure-01", {"lun": "nope", "size": "200G"})
    with pytest.raises(InvalidRequest, match="size '12 parsecs' is not a size"):
        _ticket(rt, "san-pure-01", {"lun": "lnx-data-01", "size": "12 parsecs"})


def test_storage_array_error_mid_way_needs_operator_naming_the_step(rt: Runtime, lab: LabInfo) -> None:
    array = "san-pure-01"
    name, size = _lun(rt, array)
    resizes = _resizes(lab, array)
    set_lab_fault(lab.state_dir, array, "error_after_resize")
    try:
        [job_id] = run_ticket(rt, _ticket(rt, array, {"lun": name, "size": size + 5 * GiB}))
        state, reason, _ = _job(rt, job_id)
        assert state == "needs_operator", reason
        assert "storage-resize" in reason and "cannot be read back" in reason, reason
    finally:
        set_lab_fault(lab.state_dir, array, "error_after_resize", enabled=False)
    store.request_retry(rt.db, job_id, "carol")
    settle(rt, [job_id], timeout=120)
    state, reason, steps = _job(rt, job_id)
    assert state == "succeeded", (reason, steps)
    assert _resizes(lab, array) - resizes == 1  # the retry read the size and did not resize again
    assert _lun(rt, array) == (name, size + 5 * GiB)


def test_storage_host_error_needs_operator_then_resumes_at_the_host(rt: Runtime, lab: LabInfo) -> None:
    array, host = "san-ontap-01", "esx-03"
    name, size = _lun(rt, array)
    resizes = _resizes(lab, array)
    set_lab_fault(lab.state_dir, host, "san_rescan_fails")
    try:
        [job_id] = run_ticket(rt, _ticket(rt, array, {"lun": name, "size": size + 2 * GiB}), timeout=120)
        state, reason, _ = _job(rt, job_id)
        assert state == "needs_operator", reason
        assert f"host-rescan:{host}" in reason and "never shrunk back" in reason, reason
    finally:
        set_lab_fault(lab.state_dir, host, "san_rescan_fails", enabled=False)
    store.request_retry(rt.db, job_id, "carol")
    settle(rt, [job_id], timeout=120)
    state, reason, steps = _job(rt, job_id)
    assert state == "succeeded", (reason, steps)
    assert _resizes(lab, array) - resizes == 1
    assert all(v.device_size == size + 2 * GiB for v in _views(rt, array).values())


@pytest.mark.parametrize(
    "kill_at", ["storage-resize:after-act", "storage-resize:after-done", "host-rescan:esx-06:after-started"]
)
def test_storage_crash_resumes_at_the_host_without_resizing_twice(
    tmp_path: Path, rt: Runtime, lab: LabInfo, kill_at: str
) -> None:
    array = "san-pstore-01"
    config = tmp_path / "remotehands.toml"
    config.write_text(
        f'db_url = "{rt.settings.db_url}"\ninventory = "{lab.inventory_dir}"\n'
        f'log_file = "{tmp_path / "rh.log"}"\nlease_seconds = 30\n'
    )
    name, size = _lun(rt, array)
    resizes = _resizes(lab, array)
    ticket_id = _ticket(rt, array, {"lun": name, "size": size + GiB})
    [job_id] = store.create_jobs_for_ticket(rt.db, rt.tickets.get(ticket_id), "bob", "test")
    crashed = worker_until_idle(config, {"RH_FAULT_KILL_AT": kill_at})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    restarted = worker_until_idle(config, {})
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    state, reason, steps = _job(rt, job_id)
    assert state == "succeeded", (reason, steps)
    assert _resizes(lab, array) - resizes == 1
    assert _lun(rt, array) == (name, size + GiB)
    assert all(v.device_size == size + GiB for v in _views(rt, array).values())
    assert job_state(rt, job_id) == "succeeded"


def test_storage_cli_lists_plans_and_runs_an_approved_expansion(rt: Runtime, lab: LabInfo, cli) -> None:  # type: ignore[no-untyped-def]
    array = "san-pure-01"
    name, size = _lun(rt, array)
    code, out, _ = cli("storage", "luns", array, "--json")
    assert code == 0
    [row] = json.loads(out)["luns"]
    assert (row["lun"], row["size"], row["hosts"]) == (name, size, ["esx-02", "esx-04"])
    resizes = _resizes(lab, array)
    code, out, _ = cli("storage", "expand", array, name, "--to", f"{size // GiB + 3}G", "--plan", "--json")
    assert code == 0, out
    plan = json.loads(out)
    assert (plan["size"], plan["new_size"]) == (size, size + 3 * GiB)
    assert {h["host"]: h["sees"] for h in plan["hosts"]} == {"esx-02": size, "esx-04": size}
    assert [h["filesystem_size"] is not None for h in plan["hosts"]] == [True, False]  # mounted on esx-02
    code, _, err = cli("storage", "expand", array, name, "--to", "1G", "--plan")
    assert code == 2 and "would shrink it" in err
    code, _, err = cli("storage", "expand", array, name, "--to", f"{size // GiB + 3}G")
    assert code == 3 and "needs an approved ticket" in err
    ticket_id = _ticket(rt, array, {"lun": name, "size": f"{size // GiB + 3}G"})
    code, _, err = cli("storage", "expand", array, name, "--to", f"{size // GiB + 4}G", "--ticket", ticket_id)
    assert code == 3 and "was approved for" in err
    assert _resizes(lab, array) == resizes  # nothing above changed anything
    code, out, err = cli("storage", "expand", array, name, "--ticket", ticket_id, "--json")
    assert code == 0, (out, err)
    assert _lun(rt, array) == (name, size + 3 * GiB)
    assert _resizes(lab, array) - resizes == 1


def _power(lab: LabInfo, host: str, action: str) -> None:
    from remotehands.bmc.base import PowerAction, perform_and_confirm
    from remotehands.bmc.ipmi import IpmiPower

    bmc = lab.hosts[host]
    driver = IpmiPower(bmc.address, bmc.port, "admin", lab.password(), timeout=3.0)
    try:
        perform_and_confirm(driver, PowerAction(action), timeout=10)
    finally:
        driver.close()


def test_storage_host_down_after_the_resize_needs_operator_never_failed(
    rt: Runtime, lab: LabInfo, mocker: MockerFixture
) -> None:
    """Past the point of no return a host that stays dark through every retry stops the job as
    needs_operator (never failed, which nothing could resume); powered back, a retry finishes it."""
    mocker.patch(
        "remotehands.jobs.runner.retry_delay", return_value=0.05
    )  # five retries, not 62 s of back-off
    array, host = "san-ontap-01", "esx-03"
    name, size = _lun(rt, array)
    resizes = _resizes(lab, array)
    ticket_id = _ticket(rt, array, {"lun": name, "size": size + GiB})
    [job_id] = store.create_jobs_for_ticket(rt.db, rt.tickets.get(ticket_id), "bob", "test")
    try:
        mocker.patch.object(StorageVerifyArray, "run", _dark_after(StorageVerifyArray.run, lab, host))
        settle(rt, [job_id], timeout=120)
        state, reason, _ = _job(rt, job_id)
        assert state == "needs_operator", reason
        assert (
            f"host-rescan:{host}" in reason
            and "storage-resize already changed what cannot be undone" in reason
        )
    finally:
        _power(lab, host, "on")
    mocker.stopall()
    assert _wait_ssh(rt, host)
    store.request_retry(rt.db, job_id, "carol")
    settle(rt, [job_id], timeout=120)
    state, reason, steps = _job(rt, job_id)
    assert state == "succeeded", (reason, steps)
    assert _resizes(lab, array) - resizes == 1
    assert _lun(rt, array) == (name, size + GiB)


def _dark_after(run, lab: LabInfo, host: str):  # type: ignore[no-untyped-def]
    """``StorageVerifyArray.run``, then ``host`` powered off (as if it crashed right after the resize)."""

    def wrapped(self, ctx):  # type: ignore[no-untyped-def]
        done = run(self, ctx)
        _power(lab, host, "off")
        return done

    return wrapped


def _wait_ssh(rt: Runtime, host: str, timeout: float = 30) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with pinned_ssh(rt, rt.inventory().host(host), timeout=2):
                return True
        except RemoteHandsError:  # still booting
            time.sleep(0.2)
    return False


def test_storage_a_job_finishes_hosts_an_earlier_one_left_behind(rt: Runtime, lab: LabInfo) -> None:
    """The array already holds the size (an earlier job was cancelled after its resize): a request for that
    same size is not refused as 'equal' while a host lags; it rescans and grows without resizing again."""
    array = "san-pstore-01"
    name, size = _lun(rt, array)
    target = rt.inventory().array(array)
    with closing(driver_for(target)) as driver:
        driver.resize(driver.lun(name), size + GiB)
    resizes = _resizes(lab, array)
    [job_id] = run_ticket(rt, _ticket(rt, array, {"lun": name, "size": size + GiB}), timeout=120)
    state, reason, steps = _job(rt, job_id)
    assert state == "succeeded", (reason, steps)
    precheck = next(result for n, _, result in steps if n == "storage-precheck")
    assert "finishing esx-06, esx-08" in precheck, precheck
    assert _resizes(lab, array) == resizes
    assert all(v.device_size == size + GiB for v in _views(rt, array).values())


def test_storage_a_filesystem_the_host_side_cannot_grow_is_refused_before_the_resize() -> None:
    views = {
        "lnx-a": hostside.HostView(100 * GiB, 98 * GiB, "/srv/data (btrfs on /dev/mapper/x)", "btrfs"),
        "lnx-b": hostside.HostView(100 * GiB, None, "/srv/data (not mounted here)"),
    }
    with pytest.raises(DeviceRefused, match=r"lnx-a: .* not btrfs; nothing was resized"):
        refuse_ungrowable(views)
    refuse_ungrowable({"esx": hostside.HostView(100 * GiB, 99 * GiB, "datastore ds", "vmfs")})
