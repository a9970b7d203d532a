"""pxe and virtual-media end to end through the CLI against the lab: the lab's IPMI and Redfish servers answer
SSH like ESXi and Linux; a boot from PXE (or the virtual CD) reads the answer file remotehands wrote, goes
dark for the install, comes back with the new build and a new host key, and the installer posts to
``/callbacks/{job}`` of a real ``remotehands serve`` app."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from remotehands.bmc.base import BootDevice
from remotehands.config import Settings
from remotehands.lab.faults import set_lab_fault
from remotehands.lab.process import LabInfo, read_bmc_log, start_lab, stop_lab
from remotehands.lab.ticket_sims.harness import ServerThread
from remotehands.reimage import answers
from remotehands.reimage.settings import ImageConfig, ReimageSettings
from remotehands.runtime import Runtime
from remotehands.server.app import create_app
from remotehands.tickets.base import Severity, TaskRequest, TicketType
from remotehands.tickets.builtin import NewTicket

pytestmark = pytest.mark.slow
ESXI = ImageConfig(os="esxi", version="8.0.3", build="24022510", iso_url="https://repo.lab/esxi-8.0u3.iso")
UBUNTU = ImageConfig(os="linux", version="22.04", build="22.04", iso_url="https://repo.lab/ubuntu-22.04.iso")


@pytest.fixture(scope="module")
def x86_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabInfo]:
    """esx-01 (ESXi) and esx-02 (Linux) on IPMI, rf-01 (Linux) on Redfish, each with an OS on SSH."""
    where = tmp_path_factory.mktemp("reimage-x86-lab")
    info = start_lab(where, hosts=2, redfish=1, macs=0, cycle_delay=0.5)
    try:
        yield info
    finally:
        stop_lab(where)


def _settings(tmp_path: Path, lab: LabInfo, callback_url: str, deadline: int = 2) -> Settings:
    return Settings(
        db_url=f"sqlite:///{tmp_path / 'rh.db'}",
        inventory=lab.inventory_dir,
        log_file=tmp_path / "rh.log",
        lease_seconds=30,
        images={"esxi-8u3": ESXI, "ubuntu-22": UBUNTU},
        reimage=ReimageSettings(
            callback_url=callback_url,
            install_config_dir=lab.install_dir,
            install_deadline_minutes=2,
            callback_deadline_minutes=deadline,
        ),
    )


@pytest.fixture
def serve(tmp_path: Path, x86_lab: LabInfo) -> Iterator[Runtime]:
    """The runtime and, on 127.0.0.1, its HTTP server (no engine) for the installers' callbacks."""
    from remotehands.lab.ticket_sims.harness import free_port

    port = free_port("127.0.0.1")
    rt = Runtime(_settings(tmp_path, x86_lab, f"http://127.0.0.1:{port}"))
    server = ServerThread(create_app(rt, engine=False), port=port).start()
    yield rt
    server.stop()
    rt.db.dispose()


@pytest.fixture
def rcli(serve: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    from remotehands.cli.main import main

    s = serve.settings
    config = tmp_path / "remotehands.toml"
    images = "".join(
        f'[images.{name}]\nos = "{i.os}"\nversion = "{i.version}"\nbuild = "{i.build}"\niso_url = "{i.iso_url}"\n'
        for name, i in s.images.items()
    )
    config.write_text(
        f'db_url = "{s.db_url}"\ninventory = "{s.inventory}"\nlog_file = "{s.log_file}"\nlease_seconds = 30\n'
        f'{images}[reimage]\ncallback_url = "{s.reimage.callback_url}"\n'
        f'install_config_dir = "{s.reimage.install_config_dir}"\ninstall_deadline_minutes = 2\n'
        f"callback_deadline_minutes = {s.reimage.callback_deadline_minutes}\n"
    )
    monkeypatch.setenv("RH_CONFIG", str(config))

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setenv("RH_USER", "carol")
        with pytest.raises(SystemExit) as exit_:
            main(list(args))
        out, err = capsys.readouterr()
        return int(exit_.value.code or 0), out, err

    return run


def ticket(rt: Runtime, host: str, image: str, **params: object) -> str:
    ticket_id = rt.tickets.create(
        NewTicket(
            type=TicketType.REMOTE_HANDS,
            severity=Severity.DEGRADED,
            title=f"reimage {host}",
            requester="alice",
            customer="provider",
            subscription="provider",
            request=TaskRequest(action="reimage", targets=(host,), params={"image": image, **params}),
        ),
        rt.inventory(),
    )
    rt.tickets.approve(ticket_id, "bob")
    return ticket_id


def lab_log(lab: LabInfo, host: str, command: str) -> list[dict[str, object]]:
    return read_bmc_log(lab.log_path, host=host, command=command)


def test_reimage_help_lists_every_method(rcli) -> None:
    code, out, _ = rcli("reimage", "--help")
    assert code == 0
    for name in ("erase-install", "mdm-erase", "dfu-restore", "netboot", "pxe", "virtual-media"):
        assert name in out


def test_pxe_reinstalls_esxi_once_through_ipmi_and_the_installer_calls_back(
    rcli, serve: Runtime, x86_lab: LabInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    from remotehands.intake import callbacks

    issued: list[str] = []
    real_issue = callbacks.issue_token

    def issue(db, job_id: int) -> str:  # type: ignore[no-untyped-def]
        issued.append(real_issue(db, job_id))
        return issued[-1]

    monkeypatch.setattr(callbacks, "issue_token", issue)
    before = {c: len(lab_log(x86_lab, "esx-01", c)) for c in ("cycle", "erase", "installer_report")}
    ticket_id = ticket(serve, "esx-01", "esxi-8u3")
    code, out, err = rcli("reimage", "esx-01", "--ticket", ticket_id, "--json")
    assert code == 0, out + err
    [job] = json.loads(out)["jobs"]
    assert job["state"] == "succeeded"
    assert len(lab_log(x86_lab, "esx-01", "cycle")) == before["cycle"] + 1  # exactly one power cycle
    erases = lab_log(x86_lab, "esx-01", "erase")[before["erase"] :]
    assert [(e["method"], e["build"]) for e in erases] == [("pxe", "24022510")]
    reports = lab_log(x86_lab, "esx-01", "installer_report")[before["installer_report"] :]
    assert sorted((r["event"], r["status"]) for r in reports) == [("installed", 202), ("started", 202)]
    overrides = [e for e in lab_log(x86_lab, "esx-01", "boot_override")]
    assert overrides[-2]["device"] == "pxe" and overrides[-2]["persistent"] is False
    assert overrides[-1]["device"] == "disk"  # set back to disk after the install
    trail = "\n".join(c.body for c in serve.tickets.comments(ticket_id))
    for said in ("is serial LAB0001", "next boot of esx-01: pxe (once)", "installer on esx-01 reported",
                 "the installer on esx-01 started; its PXE entry was withdrawn",
                 "new SSH host key of esx-01 pinned", "runs esxi 8.0.3 (24022510)"):  # fmt: skip
        assert said in trail
    # The answer file (holding the job's token) and the PXE entry are gone; no token reached the trail.
    assert answers.read(x86_lab.install_dir, "esx-01") is None  # type: ignore[arg-type]
    assert not list((x86_lab.install_dir / "pxelinux.cfg").iterdir())  # type: ignore[operator]
    [token] = issued
    with serve.db.session() as s:
        rows = [str(r) for r in s.execute(text("SELECT * FROM jobs")).all()]
        rows += [str(r) for r in s.execute(text("SELECT * FROM job_steps")).all()]
        rows += [str(r) for r in s.execute(text("SELECT * FROM job_callbacks")).all()]
    for where in (
        trail,
        "\n".join(rows),
        Path(str(serve.settings.log_file)).read_text(),
        x86_lab.log_path.read_text(),
    ):
        assert token not in where


def test_virtual_media_reinstalls_through_redfish_and_ejects(rcli, serve: Runtime, x86_lab: LabInfo) -> None:
    """rf-01's BMC is in POST: its first two boot-override PATCHes answer 400, and the job goes on; it ejects
    the virtual CD only with the host off, so the host is powered off for the eject and on again."""
    set_lab_fault(x86_lab.state_dir, "rf-01", "boot_override_busy")
    set_lab_fault(x86_lab.state_dir, "rf-01", "eject_needs_off")
    overrides = len(lab_log(x86_lab, "rf-01", "boot_override"))
    before = len(lab_log(x86_lab, "rf-01", "erase"))
    ticket_id = ticket(serve, "rf-01", "ubuntu-22", method="virtual-media")
    code, out, err = rcli("reimage", "rf-01", "--ticket", ticket_id, "--json")
    assert code == 0, out + err
    erases = lab_log(x86_lab, "rf-01", "erase")[before:]
    assert [(e["method"], e["build"]) for e in erases] == [("virtual-media", "22.04")]
    [boot] = [
        e
        for e in lab_log(x86_lab, "rf-01", "virtual-media_boot")
        if e.get("job") == json.loads(out)["jobs"][0]["id"]
    ]
    assert boot["image"] == UBUNTU.iso_url
    trail = "\n".join(c.body for c in serve.tickets.comments(ticket_id))
    assert f"{UBUNTU.iso_url} inserted" in trail and "virtual CD of rf-01 ejected (the BMC refused" in trail
    assert "powered off for the eject and on again" in trail
    ejects = [e["status"] for e in lab_log(x86_lab, "rf-01", "vmedia_eject")]
    assert ejects[-2:] == [409, 204]
    assert "runs linux 22.04 (22.04)" in trail
    answered = [(e["status"], e.get("error")) for e in lab_log(x86_lab, "rf-01", "boot_override")[overrides:]]
    busy = (400, "iLO.2.14.UnableToModifyDuringSystemPOST")
    assert answered[:3] == [busy, busy, (204, None)]  # refused twice during POST, then set
    set_lab_fault(x86_lab.state_dir, "rf-01", "boot_override_busy", enabled=False)
    set_lab_fault(x86_lab.state_dir, "rf-01", "eject_needs_off", enabled=False)


def test_an_installer_that_never_reports_stops_for_an_operator_with_the_host_state(
    rcli, serve: Runtime, x86_lab: LabInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """esx-02 boots PXE but its entry is withdrawn meanwhile, as when the TFTP server lost it: the host boots
    its disk and no installer ever reports. The wait ends at its deadline with the state stated."""
    from remotehands.reimage import network

    monkeypatch.setattr(network, "deadline_s", lambda ctx: 3.0)
    real_write = answers.write

    def write_answer_only(root: Path, answer: answers.Answer, *, boot_mac: str | None = None) -> list[Path]:
        return real_write(root, answer)  # no PXE entry: the host will boot its disk

    monkeypatch.setattr(answers, "write", write_answer_only)
    before = len(lab_log(x86_lab, "esx-02", "erase"))
    ticket_id = ticket(serve, "esx-02", "ubuntu-22")
    code, out, _ = rcli("reimage", "esx-02", "--ticket", ticket_id, "--json")
    assert code == 1
    [job] = json.loads(out)["jobs"]
    assert job["state"] == "needs_operator"
    assert "did not report within" in job["reason"] and "its BMC reads power on" in job["reason"]
    assert "jobs retry" in job["reason"]
    assert len(lab_log(x86_lab, "esx-02", "erase")) == before  # nothing was installed
    assert lab_log(x86_lab, "esx-02", "pxe_boot")[-1]["result"] == "no entry: boots its disk"
    trail = "\n".join(c.body for c in serve.tickets.comments(ticket_id))
    assert "needs an operator" in trail

    # Cancelled, its answer file (with the job's token) is stale: a PXE entry that boots it now must not
    # install anything, as the installer asks first whether its job still wants it.
    code, _, _ = rcli("jobs", "cancel", str(job["id"]))
    assert code == 0
    root = x86_lab.install_dir
    assert root is not None
    stale = answers.read(root, "esx-02")
    assert stale is not None and stale.job == job["id"]
    host = serve.inventory().host("esx-02")
    real_write(root, stale, boot_mac=host.boot_mac)
    bmc = serve.power_driver(host, host.power)
    try:
        bmc.set_boot_device(BootDevice.PXE, once=True)
        bmc.cycle()
    finally:
        bmc.close()
    deadline = time.monotonic() + 10
    while not [e for e in lab_log(x86_lab, "esx-02", "pxe_boot") if e.get("job") == job["id"]]:
        assert time.monotonic() < deadline, "the lab never PXE-booted esx-02"
        time.sleep(0.1)
    [boot] = [e for e in lab_log(x86_lab, "esx-02", "pxe_boot") if e.get("job") == job["id"]]
    assert boot["wanted"] is False
    time.sleep(0.5)
    assert len(lab_log(x86_lab, "esx-02", "erase")) == before  # the stale entry installed nothing
    answers.remove(root, "esx-02", host.boot_mac)


def test_an_install_that_never_finishes_stops_for_an_operator_and_a_retry_waits_again(
    rcli, serve: Runtime, x86_lab: LabInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """esx-02's installer starts but never finishes (lab fault): the wait ends at its deadline, the ticket
    says what the BMC reads and what to do; once the install is let finish, ``jobs retry`` completes the job."""
    from remotehands.reimage import network

    monkeypatch.setattr(network, "deadline_s", lambda ctx: 3.0)
    set_lab_fault(x86_lab.state_dir, "esx-02", "install_never_finishes")
    try:
        before = len(lab_log(x86_lab, "esx-02", "erase"))
        ticket_id = ticket(serve, "esx-02", "ubuntu-22")
        code, out, _ = rcli("reimage", "esx-02", "--ticket", ticket_id, "--json")
        assert code == 1
        [job] = json.loads(out)["jobs"]
        assert job["state"] == "needs_operator"
        assert "did not report within" in job["reason"] and "next boot" in job["reason"]
        assert len(lab_log(x86_lab, "esx-02", "erase")) == before + 1  # it did start installing, once
    finally:
        set_lab_fault(x86_lab.state_dir, "esx-02", "install_never_finishes", enabled=False)
    monkeypatch.setattr(network, "deadline_s", lambda ctx: 60.0)
    code, out, err = rcli("jobs", "retry", str(job["id"]))
    assert code == 0, out + err
    code, out, err = rcli("run", "--ticket", ticket_id, "--json")
    assert code == 0, out + err
    assert len(lab_log(x86_lab, "esx-02", "erase")) == before + 1  # the retry installed nothing again
    trail = "\n".join(c.body for c in serve.tickets.comments(ticket_id))
    assert "runs linux 22.04 (22.04)" in trail
