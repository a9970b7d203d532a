"""netboot and dfu-restore end to end against the lab: a legacy Intel Mac NetBoots into the lab's NetInstall
service after ``bless`` and a PDU power cycle; an Apple silicon Mac whose OS is broken is identified by its
outlet and restored in DFU mode from its paired controller Mac (ctl-01), or a technician is asked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from remotehands.config import Settings
from remotehands.jobs import store
from remotehands.jobs.executor import LocalExecutor
from remotehands.jobs.states import TERMINAL, JobState
from remotehands.lab.faults import set_lab_fault
from remotehands.lab.process import LabInfo, read_bmc_log, start_lab, stop_lab
from remotehands.lab.ticket_sims.harness import ServerThread, free_port
from remotehands.reimage.settings import ImageConfig, ReimageSettings
from remotehands.runtime import Runtime
from remotehands.server.app import create_app
from remotehands.tickets.base import Severity, TaskRequest, TicketType
from remotehands.tickets.builtin import NewTicket

pytestmark = pytest.mark.slow
ENDED = {s.value for s in TERMINAL} | {JobState.NEEDS_OPERATOR.value}
IMAGES = {
    "bigsur-netinstall": ImageConfig(
        os="macos", version="11.7.10", build="20G1427", netboot_server="bsdp://127.0.0.1"
    ),
    "sequoia-ipsw": ImageConfig(
        os="macos", version="15.2", build="24C101", ipsw="/Users/Shared/UniversalMac_15.2_24C101_Restore.ipsw"
    ),
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabInfo]:
    """mac-01 (Apple silicon, paired with controller ctl-01) and mac-02 (Intel without T2)."""
    where = tmp_path_factory.mktemp("reimage-mac-boot-lab")
    info = start_lab(where, hosts=1, redfish=0, macs=2, mac_models=("apple-silicon", "intel-legacy"))
    try:
        yield info
    finally:
        stop_lab(where)


def _runtime(tmp_path: Path, lab: LabInfo, inventory: Path | None = None, port: int = 0) -> Runtime:
    return Runtime(
        Settings(
            db_url=f"sqlite:///{tmp_path / 'rh.db'}",
            inventory=inventory or lab.inventory_dir,
            log_file=tmp_path / "rh.log",
            lease_seconds=30,
            images=IMAGES,
            reimage=ReimageSettings(
                callback_url=f"http://127.0.0.1:{port}",
                install_config_dir=lab.install_dir,
                install_deadline_minutes=2,
                callback_deadline_minutes=2,
            ),
        )
    )


@pytest.fixture
def rt(tmp_path: Path, lab: LabInfo) -> Iterator[Runtime]:
    port = free_port("127.0.0.1")
    runtime = _runtime(tmp_path, lab, port=port)
    server = ServerThread(create_app(runtime, engine=False), port=port).start()
    yield runtime
    server.stop()
    runtime.db.dispose()


def run_reimage(
    rt: Runtime, host: str, image: str, method: str, timeout: float = 60.0, **params: object
) -> tuple[str, dict]:
    ticket_id = rt.tickets.create(
        NewTicket(
            type=TicketType.REMOTE_HANDS,
            severity=Severity.OUTAGE_ONE,
            title=f"reimage {host}",
            requester="alice",
            customer="provider",
            subscription="provider",
            request=TaskRequest(
                action="reimage", targets=(host,), params={"image": image, "method": method, **params}
            ),
        ),
        rt.inventory(),
    )
    rt.tickets.approve(ticket_id, "bob")
    ticket = rt.tickets.get(ticket_id)
    [job_id] = store.create_jobs_for_ticket(rt.db, ticket, "bob", "carol", inventory=rt.inventory())
    executor = LocalExecutor(rt, workers=2, poll=0.05, only=frozenset({job_id}))
    try:
        executor.run_until(lambda: _state(rt, job_id) in ENDED, timeout=timeout)
    finally:
        executor.shutdown()
    return ticket_id, {"id": job_id, "state": _state(rt, job_id), "reason": _reason(rt, job_id)}


def _state(rt: Runtime, job_id: int) -> str:
    with rt.db.session() as s:
        return store.get_job(s, job_id).state


def _reason(rt: Runtime, job_id: int) -> str:
    with rt.db.session() as s:
        return str(store.get_job(s, job_id).reason or "")


def trail(rt: Runtime, ticket_id: str) -> str:
    return "\n".join(c.body for c in rt.tickets.comments(ticket_id))


def test_netboot_blesses_cycles_the_outlet_once_and_the_netinstall_image_calls_back(
    rt: Runtime, lab: LabInfo
) -> None:
    log = lab.log_path
    before = {c: len(read_bmc_log(log, command=c)) for c in ("outlet_off", "outlet_on")}
    erased = len(read_bmc_log(log, host="mac-02", command="erase"))
    ticket_id, job = run_reimage(rt, "mac-02", "bigsur-netinstall", "netboot")
    assert job["state"] == "succeeded", job["reason"] + trail(rt, ticket_id)
    new = read_bmc_log(log, host="mac-02", command="erase")[erased:]
    assert [(e["method"], e["build"]) for e in new] == [("netboot", "20G1427")]
    for command in ("outlet_off", "outlet_on"):  # one off-on cycle of mac-02's outlet
        assert len(read_bmc_log(log, command=command)) == before[command] + 1
    said = trail(rt, ticket_id)
    for text in (
        "boots from bsdp://127.0.0.1 next time",
        "installer on mac-02 reported",
        "runs macos 11.7.10",
    ):
        assert text in said


def test_dfu_restore_asks_a_technician_when_the_controller_mac_does_not_answer(
    rt: Runtime, lab: LabInfo
) -> None:
    set_lab_fault(lab.state_dir, "ctl-01", "os_broken")
    try:
        erased = len(read_bmc_log(lab.log_path, host="mac-01", command="erase"))
        ticket_id, job = run_reimage(rt, "mac-01", "sequoia-ipsw", "dfu-restore", timeout=8.0)
        assert job["state"] == JobState.WAITING.value
        said = trail(rt, ticket_id)
        assert "TECHNICIAN NEEDED: mac-01" in said and "its controller Mac ctl-01 does not answer" in said
        assert read_bmc_log(lab.log_path, host="ctl-01", command="macvdmtool") == []
        assert len(read_bmc_log(lab.log_path, host="mac-01", command="erase")) == erased
        store.request_cancel(rt.db, job["id"], "carol")
    finally:
        set_lab_fault(lab.state_dir, "ctl-01", "os_broken", enabled=False)


# Before the restore below: that one gives mac-01 a new host key, which this test's own database does not know.
def test_dfu_restore_without_a_controller_asks_a_technician(tmp_path: Path, lab: LabInfo) -> None:
    inventory = tmp_path / "inventory"
    (inventory / "group_vars").mkdir(parents=True)
    hosts = yaml.safe_load((lab.inventory_dir / "hosts.yml").read_text())
    rack = next(iter(next(iter(hosts["all"]["children"].values()))["children"].values()))
    del rack["hosts"]["mac-01"]["dfu_controller"]
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))
    (inventory / "group_vars" / "all.yml").write_text(
        (lab.inventory_dir / "group_vars" / "all.yml").read_text()
    )
    rt = _runtime(tmp_path, lab, inventory)
    erased = len(read_bmc_log(lab.log_path, host="mac-01", command="erase"))
    ticket_id, job = run_reimage(rt, "mac-01", "sequoia-ipsw", "dfu-restore", timeout=8.0)
    assert job["state"] == JobState.WAITING.value
    said = trail(rt, ticket_id)
    assert "TECHNICIAN NEEDED: mac-01" in said and "Apple Configurator" in said
    assert f"remotehands jobs confirm {job['id']}" in said
    assert len(read_bmc_log(lab.log_path, host="mac-01", command="erase")) == erased  # nothing restored
    store.request_cancel(rt.db, job["id"], "carol")
    assert _state(rt, job["id"]) == JobState.CANCELLED.value
    rt.db.dispose()


def test_dfu_restore_of_a_mac_whose_os_is_broken(rt: Runtime, lab: LabInfo) -> None:
    set_lab_fault(lab.state_dir, "mac-01", "os_broken")
    log = lab.log_path
    erased = len(read_bmc_log(log, host="mac-01", command="erase"))
    ticket_id, job = run_reimage(rt, "mac-01", "sequoia-ipsw", "dfu-restore", dark_confirm_s=1.0)
    assert job["state"] == "succeeded", job["reason"] + trail(rt, ticket_id)
    new = read_bmc_log(log, host="mac-01", command="erase")[erased:]
    assert [(e["method"], e["build"]) for e in new] == [("dfu-restore", "24C101")]  # exactly one erase
    said = trail(rt, ticket_id)
    assert "has not answered SSH for" in said and "was switched off and nothing answers" in said
    assert "is in DFU mode on ctl-01's port: ECID 0x" in said
    assert "UniversalMac_15.2_24C101_Restore.ipsw restored to mac-01" in said
    assert "runs macos 15.2 (24C101)" in said
