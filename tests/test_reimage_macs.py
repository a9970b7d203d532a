"""Mac reimage methods end to end through the CLI against the lab (erase-install, mdm-erase): lab Macs answer
SSH like macOS, go dark for the install and come back with the new build and a new host key."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from remotehands.config import Settings
from remotehands.lab.process import LabInfo, read_bmc_log, start_lab, stop_lab
from remotehands.reimage.settings import ImageConfig, ReimageSettings, VolumeOwner
from remotehands.runtime import Runtime
from remotehands.ssh.tables import HostKey
from remotehands.tickets.base import Severity, TaskRequest, TicketType
from remotehands.tickets.builtin import NewTicket

IMAGE = "sequoia-15-2"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mac_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabInfo]:
    """A lab of its own: reimaging changes a Mac's build and host key for the rest of the lab's life."""
    where = tmp_path_factory.mktemp("reimage-lab")
    info = start_lab(where, hosts=1, redfish=0, macs=3, mac_models=("apple-silicon", "t2", "intel-legacy"))
    try:
        yield info
    finally:
        stop_lab(where)


@pytest.fixture
def reimage_rt(tmp_path: Path, mac_lab: LabInfo) -> Iterator[Runtime]:
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'rh.db'}",
        inventory=mac_lab.inventory_dir,
        log_file=tmp_path / "rh.log",
        lease_seconds=30,
        images={IMAGE: ImageConfig(os="macos", version="15.2", build="24C101")},
        reimage=ReimageSettings(
            install_deadline_minutes=2,
            volume_owner=VolumeOwner(username="admin", password=f"file:{mac_lab.password_file}"),
            mdm_url=mac_lab.mdm_url,
            mdm_key=f"file:{mac_lab.mdm_key_file}",
        ),
    )
    rt = Runtime(settings)
    yield rt
    rt.db.dispose()


@pytest.fixture
def rcli(
    reimage_rt: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """The CLI on this test's database, with the images and the volume owner in a remotehands.toml."""
    from remotehands.cli.main import main

    settings = reimage_rt.settings
    config = tmp_path / "remotehands.toml"
    config.write_text(
        f'db_url = "{settings.db_url}"\ninventory = "{settings.inventory}"\nlog_file = "{settings.log_file}"\n'
        f'[images.{IMAGE}]\nos = "macos"\nversion = "15.2"\nbuild = "24C101"\n'
        f"[reimage]\ninstall_deadline_minutes = 2\n"
        f'mdm_url = "{settings.reimage.mdm_url}"\nmdm_key = "{settings.reimage.mdm_key}"\n'
        f'volume_owner = {{ username = "admin", password = "file:{settings.reimage.volume_owner.password[5:]}" }}\n'  # type: ignore[union-attr]
    )
    monkeypatch.setenv("RH_CONFIG", str(config))

    def run(*args: str, user: str = "carol") -> tuple[int, str, str]:
        monkeypatch.setenv("RH_USER", user)
        with pytest.raises(SystemExit) as exit_:
            main(list(args))
        out, err = capsys.readouterr()
        return int(exit_.value.code or 0), out, err

    return run


def reimage_ticket(rt: Runtime, host: str, **params: object) -> str:
    ticket_id = rt.tickets.create(
        NewTicket(
            type=TicketType.REMOTE_HANDS,
            severity=Severity.DEGRADED,
            title=f"reimage {host}: corrupted OS",
            requester="alice",
            customer="provider",
            subscription="provider",
            request=TaskRequest(
                action="reimage",
                targets=(host,),
                params={k: v for k, v in {"image": IMAGE, **params}.items() if v is not None},
            ),
        ),
        rt.inventory(),
    )
    rt.tickets.approve(ticket_id, "bob")
    return ticket_id


def erases(lab: LabInfo, host: str) -> list[dict[str, object]]:
    return read_bmc_log(lab.log_path, host=host, command="erase")


def test_plan_prints_the_steps_without_acting(rcli, mac_lab: LabInfo) -> None:
    code, out, _ = rcli("reimage", "mac-02", "--plan", "--json")
    assert code == 0
    plan = json.loads(out)
    assert plan["method"] == "erase-install"
    assert [s["name"] for s in plan["steps"]][:4] == [
        "check-approval",
        "check-identity",
        "ensure-installer",
        "start-install",
    ]
    assert read_bmc_log(mac_lab.log_path, host="mac-02") == []


def test_erase_install_on_apple_silicon_reinstalls_verifies_and_pins_the_new_key(
    rcli, reimage_rt: Runtime, mac_lab: LabInfo
) -> None:
    before = len(erases(mac_lab, "mac-01"))
    ticket_id = reimage_ticket(reimage_rt, "mac-01")
    code, out, err = rcli("reimage", "mac-01", "--ticket", ticket_id)
    assert code == 0, out + err
    assert len(erases(mac_lab, "mac-01")) == before + 1  # exactly one erase
    trail = [c.body for c in reimage_rt.tickets.comments(ticket_id)]
    assert any("new SSH host key of mac-01 pinned" in c for c in trail)
    assert any("runs macos 15.2 (24C101)" in c for c in trail)
    assert any("pmset autorestart was off: set to 1" in c for c in trail)
    with reimage_rt.db.session() as s:
        pin = s.execute(select(HostKey).where(HostKey.host == "mac-01")).scalar_one()
    initial = yaml.safe_load((mac_lab.inventory_dir / "hosts.yml").read_text())
    assert pin.key_base64 not in json.dumps(initial)  # a new key, not the one the inventory had
    # The volume owner's password went on stdin: no log line of the lab or of ours holds it.
    secret = mac_lab.password()
    assert secret not in mac_lab.log_path.read_text()
    assert secret not in Path(reimage_rt.settings.log_file or "").read_text(errors="replace")


def test_a_wrong_serial_stops_before_anything_is_erased(
    rcli, reimage_rt: Runtime, mac_lab: LabInfo, tmp_path: Path
) -> None:
    inventory = tmp_path / "inventory"
    (inventory / "group_vars").mkdir(parents=True)
    hosts = yaml.safe_load((mac_lab.inventory_dir / "hosts.yml").read_text())
    racks = next(iter(next(iter(hosts["all"]["children"].values()))["children"].values()))
    racks["hosts"]["mac-02"]["serial_number"] = "C02WRONG0001"
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))
    (inventory / "group_vars" / "all.yml").write_text(
        (mac_lab.inventory_dir / "group_vars" / "all.yml").read_text()
    )
    config = Path(str(reimage_rt.settings.log_file)).parent / "remotehands.toml"
    config.write_text(
        config.read_text().replace(
            f'inventory = "{reimage_rt.settings.inventory}"', f'inventory = "{inventory}"'
        )
    )
    before = len(erases(mac_lab, "mac-02"))
    rt = Runtime(reimage_rt.settings.model_copy(update={"inventory": inventory}))
    ticket_id = reimage_ticket(rt, "mac-02")
    code, out, _ = rcli("reimage", "mac-02", "--ticket", ticket_id, "--json")
    assert code == 1
    [job] = json.loads(out)["jobs"]
    assert job["state"] == "needs_operator"
    assert "C02WRONG0001" in job["reason"] and "LAB" in job["reason"]
    assert len(erases(mac_lab, "mac-02")) == before
    rt.db.dispose()


def test_netboot_is_refused_on_a_t2_mac_before_any_job(rcli, reimage_rt: Runtime) -> None:
    ticket_id = reimage_ticket(reimage_rt, "mac-02", method="netboot")
    code, _, err = rcli("reimage", "mac-02", "--ticket", ticket_id)
    assert code == 2
    assert "t2" in err and "netboot" in err


def test_mdm_erase_erases_through_the_mdm_server_and_the_mac_comes_back_enrolled(
    rcli, reimage_rt: Runtime, mac_lab: LabInfo
) -> None:
    before = len(erases(mac_lab, "mac-02"))
    ticket_id = reimage_ticket(reimage_rt, "mac-02", method="mdm-erase", image=None)  # the OS stays
    code, out, err = rcli("reimage", "mac-02", "--ticket", ticket_id, "--method", "mdm-erase")
    assert code == 0, out + err
    new = erases(mac_lab, "mac-02")[before:]
    assert [e.get("method") for e in new] == ["mdm-erase"]  # exactly one erase, and by MDM
    trail = "\n".join(c.body for c in reimage_rt.tickets.comments(ticket_id))
    for said in (
        "is serial LAB",
        "EraseDevice",
        "acknowledged EraseDevice",
        "enrolled in MDM again",
        "new SSH host key of mac-02 pinned",
        "as before the erase",
    ):
        assert said in trail, said
    # The MDM key never reached a log or the ticket.
    key = (mac_lab.mdm_key_file or Path("/nonexistent")).read_text().strip()
    assert key not in trail
    assert key not in Path(reimage_rt.settings.log_file or "").read_text(errors="replace")


def test_a_technician_pins_a_key_only_with_the_fingerprint_they_checked(rcli) -> None:
    code, out, _ = rcli("ssh", "show", "mac-03", "--json")
    shown = json.loads(out)
    assert code == 0 and shown["match"] is True and shown["pinned_from"] == "inventory"
    code, _, err = rcli("ssh", "pin", "mac-03", "--fingerprint", "SHA256:not-what-it-presents")
    assert code == 1 and "nothing was pinned" in err
    code, out, _ = rcli("ssh", "pin", "mac-03", "--fingerprint", shown["presented"], "--json")
    assert code == 0 and json.loads(out)["pinned"] == shown["presented"]
    code, out, _ = rcli("ssh", "show", "mac-03", "--json")
    assert json.loads(out)["pinned_from"] == "database"
