"""The playbooks in playbooks/, run for real: ansible-playbook (through ansible-runner) over OpenSSH.

The shipped inventory must parse and every playbook must pass ``--syntax-check``. Then each playbook runs
against stand-in hosts: a real sshd on 127.0.0.1 (``remotehands.lab.openssh``) whose sessions find
``sw_vers``, ``softwareupdate``, ``pmset`` and ``esxcli`` stand-ins that change a state file. Every change
is run twice: the first run changes the host, the second finds nothing to do. Host keys are checked
(``StrictHostKeyChecking=yes`` against the stand-in's own known_hosts).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ansible_runner
import pytest

from remotehands.lab.openssh import SSHD, StandInHost, start_sshd
from remotehands.lab.standins import default_state

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PLAYBOOKS = ROOT / "playbooks"
BIN = Path(sys.executable).parent  # ansible-playbook and ansible-inventory of this venv
DEPOT = "/vmfs/volumes/datastore1/VMware-ESXi-8.0U3b-24280767-depot.zip"
PROFILE = "ESXi-8.0U3b-24280767-standard"
OWNER_PASSWORD = "correct horse battery staple"  # the stand-in Mac's volume owner
# Quick polls: the stand-ins finish at once and never really restart.
FAST = {"macos_update_poll_seconds": 1, "macos_update_restart_wait": 0, "esxi_reboot_wait": 0}
SSHD_CONFIG = """\
# A Mac's /etc/ssh/sshd_config, abridged
Include /etc/ssh/sshd_config.d/*
#PermitRootLogin prohibit-password
#PasswordAuthentication yes
#PermitEmptyPasswords no
KbdInteractiveAuthentication yes
UsePAM yes
Subsystem sftp /usr/libexec/sftp-server
"""


@dataclass
class Run:
    """One ansible-playbook run: its status, changes per host and output."""

    status: str
    rc: int
    changed: dict[str, int]
    failures: dict[str, int]
    output: str


def _sshd_or_skip() -> None:
    if not SSHD.exists():
        if os.environ.get("RH_REQUIRE_SERVICES"):
            pytest.fail("openssh-server is not installed; make test installs it when run as root")
        pytest.skip("openssh-server is not installed (Debian package; make test installs it as root)")


@pytest.fixture
def control_dir():
    """A short directory for ssh's ControlPath sockets (a socket path is limited to about 100 bytes, and
    pytest's tmp_path can be longer than that with ssh's own suffixes)."""
    path = Path(tempfile.mkdtemp(prefix="rh-cp-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def mac(tmp_path: Path):
    _sshd_or_skip()
    with start_sshd(tmp_path / "mac") as host:
        yield host


@pytest.fixture
def esxi(tmp_path: Path):
    _sshd_or_skip()
    with start_sshd(tmp_path / "esxi") as host:
        yield host


def run_playbook(
    tmp_path: Path,
    control_dir: Path,
    playbook: str,
    hosts: dict[str, tuple[StandInHost, dict[str, Any]]],
    *,
    extravars: dict[str, Any] | None = None,
    check: bool = False,
) -> Run:
    """Run ``playbook`` on ``hosts`` (name -> stand-in, extra host vars) with ansible-runner."""
    runs = sorted(tmp_path.glob("run-*"))
    private = tmp_path / f"run-{len(runs):02d}"
    private.mkdir()
    scratch = tmp_path / "ansible"
    inventory_hosts = {}
    for name, (host, host_vars) in hosts.items():
        inventory_hosts[name] = {**host.ansible_vars(), **host_vars}
        if os.geteuid() != 0:
            inventory_hosts[name]["ansible_become"] = False  # no sudo here: the stand-ins need no root
    runner = ansible_runner.run(
        private_data_dir=str(private),
        project_dir=str(PLAYBOOKS),
        playbook=playbook,
        inventory={"all": {"hosts": inventory_hosts}},
        extravars={**FAST, **(extravars or {})},
        cmdline="--check --diff" if check else None,
        envvars={
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # this venv's ansible-playbook
            # ansible-runner turns host key checking off unless told otherwise: keep it on.
            "ANSIBLE_HOST_KEY_CHECKING": "True",
            # Everything Ansible writes, on either side of the connection, stays under tmp_path.
            "ANSIBLE_HOME": str(scratch / "home"),
            "ANSIBLE_LOCAL_TEMP": str(scratch / "local"),
            "ANSIBLE_REMOTE_TEMP": str(scratch / "remote"),
            "ANSIBLE_ASYNC_DIR": str(scratch / "async"),
            # One SSH connection per host and test, not one per task (a second saved a run); the master
            # goes away when the test stops the stand-in's sshd.
            "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=60s",
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir),
            "ANSIBLE_PIPELINING": "True",
            "ANSIBLE_NOCOLOR": "1",
        },
        quiet=True,
        suppress_env_files=True,
        timeout=120,
    )
    stats = runner.stats or {}
    return Run(
        status=runner.status,
        rc=runner.rc,
        changed=dict(stats.get("changed", {})),
        failures={**stats.get("failures", {}), **stats.get("dark", {})},
        output=runner.stdout.read(),
    )


def _new_log(host: StandInHost, since: int) -> list[list[str]]:
    return [entry["argv"] for entry in host.state()["log"][since:]]


def test_shipped_inventory_lists_its_hosts():
    done = subprocess.run(
        [str(BIN / "ansible-inventory"), "-i", str(ROOT / "inventory"), "--list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    hostvars = json.loads(done.stdout)["_meta"]["hostvars"]
    assert {"mac-0101", "esx-0101"} <= hostvars.keys()
    assert hostvars["esx-0101"]["kind"] == "esxi"


def test_every_playbook_passes_syntax_check():
    playbooks = sorted(PLAYBOOKS.glob("*.yml"))
    names = {p.name for p in playbooks}
    assert {"macos_update.yml", "mac_baseline.yml", "esxi_patch.yml", "new_host_baseline.yml"} <= names
    done = subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "--syntax-check",
            "-i",
            str(ROOT / "inventory"),
            *map(str, playbooks),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_macos_update_installs_then_finds_nothing_to_do(tmp_path, control_dir, mac):
    state = default_state()
    state["mac"] |= {"owner_user": "admin", "owner_password": OWNER_PASSWORD}  # an Apple silicon Mac
    mac.set_state(state)
    hosts = {
        "mac-01": (
            mac,
            {
                "kind": "mac-mini",
                "macos_update_owner_user": "admin",
                "macos_update_owner_password": OWNER_PASSWORD,
            },
        )
    }

    first = run_playbook(
        tmp_path, control_dir, "macos_update.yml", hosts, extravars={"target_version": "14.4.1"}
    )
    assert first.status == "successful", first.output
    assert first.changed.get("mac-01", 0) > 0
    after = mac.state()["mac"]
    assert (after["version"], after["build"], after["restarts"]) == ("14.4.1", "23E224", 1)
    installs = [argv for argv in _new_log(mac, 0) if argv[:2] == ["softwareupdate", "--install"]]
    assert installs == [
        [
            "softwareupdate",
            "--install",
            "macOS Sonoma 14.4.1-23E224",
            "--agree-to-license",
            "--restart",
            "--user",
            "admin",
            "--stdinpass",
        ]
    ]
    # The owner's password went to softwareupdate's stdin only: not in Ansible's output, nor in the job
    # file the async install left on the Mac.
    assert OWNER_PASSWORD not in first.output
    for job in (tmp_path / "ansible" / "async").rglob("*"):
        assert not job.is_file() or OWNER_PASSWORD not in job.read_text(errors="replace")

    seen = len(mac.state()["log"])
    second = run_playbook(
        tmp_path, control_dir, "macos_update.yml", hosts, extravars={"target_version": "14.4.1"}
    )
    assert second.status == "successful", second.output
    assert second.changed.get("mac-01", 0) == 0, second.output
    assert _new_log(mac, seen) == [["sw_vers", "-productVersion"]]


def test_macos_update_check_mode_reports_the_change_and_makes_none(tmp_path, control_dir, mac):
    hosts = {"mac-01": (mac, {"kind": "mac-mini"})}
    plan = run_playbook(
        tmp_path, control_dir, "macos_update.yml", hosts, extravars={"target_version": "14.4.1"}, check=True
    )
    assert plan.status == "successful", plan.output
    assert plan.changed.get("mac-01", 0) > 0
    assert "would install 'macOS Sonoma 14.4.1-23E224'" in plan.output
    assert mac.state()["mac"]["version"] == "14.3"
    assert [argv[0:2] for argv in _new_log(mac, 0)] == [
        ["sw_vers", "-productVersion"],
        ["softwareupdate", "--list"],
    ]


def test_macos_update_refuses_a_version_apple_does_not_offer(tmp_path, control_dir, mac):
    hosts = {"mac-01": (mac, {"kind": "mac-mini"})}
    # 14.4 exists, but a Mac on 14.3 is offered only the newest 14.x: 14.4.1.
    done = run_playbook(
        tmp_path, control_dir, "macos_update.yml", hosts, extravars={"target_version": "14.4"}
    )
    assert done.status == "failed"
    assert "does not offer macOS 14.4" in done.output and "14.4.1, 15.1" in done.output
    assert mac.state()["mac"]["version"] == "14.3"


def test_mac_baseline_changes_then_holds(tmp_path, control_dir, mac):
    config = tmp_path / "sshd_config"
    config.write_text(SSHD_CONFIG)
    # The edited file must pass the real sshd's config test before it replaces the old one.
    validate = f"{SSHD} -t -f %s -h {mac.directory / 'ssh_host_ed25519_key'}"
    hosts = {
        "mac-01": (mac, {"kind": "mac-studio", "mac_sshd_config": str(config), "mac_sshd_validate": validate})
    }

    first = run_playbook(tmp_path, control_dir, "mac_baseline.yml", hosts)
    assert first.status == "successful", first.output
    assert first.changed.get("mac-01", 0) > 0
    assert ["pmset", "-a", "autorestart", "1", "sleep", "0"] in _new_log(mac, 0)
    pmset = mac.state()["mac"]["pmset"]
    assert (pmset["autorestart"], pmset["sleep"]) == (1, 0)
    lines = config.read_text().splitlines()
    # New keywords go above the Include (sshd keeps the first value it reads); present ones change in place.
    assert lines.index("PasswordAuthentication no") < lines.index("Include /etc/ssh/sshd_config.d/*")
    assert "KbdInteractiveAuthentication no" in lines and "KbdInteractiveAuthentication yes" not in lines
    assert "PermitEmptyPasswords no" in lines

    text = config.read_text()
    second = run_playbook(tmp_path, control_dir, "mac_baseline.yml", hosts)
    assert second.status == "successful", second.output
    assert second.changed.get("mac-01", 0) == 0, second.output
    assert config.read_text() == text


def test_esxi_patch_updates_in_maintenance_mode_then_holds(tmp_path, control_dir, esxi):
    hosts = {"esx-01": (esxi, {"kind": "esxi"})}
    target = {"target_profile": PROFILE, "depot": DEPOT}

    first = run_playbook(tmp_path, control_dir, "esxi_patch.yml", hosts, extravars=target)
    assert first.status == "successful", first.output
    assert first.changed.get("esx-01", 0) > 0
    after = esxi.state()["esxi"]
    assert (after["profile"], after["version"], after["build"]) == (PROFILE, "8.0.3", "24280767")
    assert after["maintenance_mode"] is False and after["boots"] == 1
    changes = [
        argv[1:4]
        for argv in _new_log(esxi, 0)
        if argv[-1] in ("true", "false") or "update" in argv or "reboot" in argv
    ]
    assert changes == [
        ["system", "maintenanceMode", "set"],  # --enable true
        ["software", "profile", "update"],
        ["system", "shutdown", "reboot"],
        ["system", "maintenanceMode", "set"],  # --enable false
    ]
    assert [argv[-1] for argv in _new_log(esxi, 0) if "maintenanceMode" in argv and "set" in argv] == [
        "true",
        "false",
    ]

    seen = len(esxi.state()["log"])
    second = run_playbook(tmp_path, control_dir, "esxi_patch.yml", hosts, extravars=target)
    assert second.status == "successful", second.output
    assert second.changed.get("esx-01", 0) == 0, second.output
    assert _new_log(esxi, seen) == [["esxcli", "software", "profile", "get"]]


def test_esxi_patch_check_mode_and_a_depot_without_the_profile_change_nothing(tmp_path, control_dir, esxi):
    hosts = {"esx-01": (esxi, {"kind": "esxi"})}
    plan = run_playbook(
        tmp_path,
        control_dir,
        "esxi_patch.yml",
        hosts,
        extravars={"target_profile": PROFILE, "depot": DEPOT},
        check=True,
    )
    assert plan.status == "successful", plan.output
    assert plan.changed.get("esx-01", 0) > 0
    assert "would enter maintenance mode, update ESXi-8.0U2-22380479-standard" in plan.output

    wrong = run_playbook(
        tmp_path,
        control_dir,
        "esxi_patch.yml",
        hosts,
        extravars={"target_profile": "ESXi-8.0U3c-24414501-standard", "depot": DEPOT},
    )
    assert wrong.status == "failed"
    assert "has no image profile ESXi-8.0U3c-24414501-standard" in wrong.output
    after = esxi.state()["esxi"]
    assert (after["profile"], after["maintenance_mode"], after["boots"]) == (
        "ESXi-8.0U2-22380479-standard",
        False,
        0,
    )
    assert not [argv for argv in _new_log(esxi, 0) if "set" in argv or "update" in argv]


def test_new_host_baseline_sets_up_a_mac_and_an_esxi_host_then_holds(tmp_path, control_dir, mac, esxi):
    config = tmp_path / "sshd_config"
    config.write_text(SSHD_CONFIG)
    hosts = {
        "mac-01": (mac, {"kind": "mac-mini", "mac_sshd_config": str(config), "mac_sshd_validate": ""}),
        "esx-01": (esxi, {"kind": "esxi"}),
    }
    first = run_playbook(tmp_path, control_dir, "new_host_baseline.yml", hosts)
    assert first.status == "successful", first.output
    assert first.changed.get("mac-01", 0) > 0 and first.changed.get("esx-01", 0) > 0
    assert mac.state()["mac"]["pmset"]["autorestart"] == 1
    advanced = esxi.state()["esxi"]["advanced"]
    assert advanced["/UserVars/ESXiShellInteractiveTimeOut"]["value"] == 900
    assert advanced["/UserVars/ESXiShellTimeOut"]["value"] == 3600
    # Each host got only its own part: no pmset on the ESXi host, no esxcli on the Mac.
    assert {argv[0] for argv in _new_log(esxi, 0)} == {"esxcli"}
    assert "esxcli" not in {argv[0] for argv in _new_log(mac, 0)}

    second = run_playbook(tmp_path, control_dir, "new_host_baseline.yml", hosts)
    assert second.status == "successful", second.output
    assert second.changed == {} or set(second.changed.values()) == {0}, second.output


def test_a_host_whose_key_does_not_match_known_hosts_is_refused(tmp_path, control_dir, mac):
    # Another host's key under this host's name: ssh must refuse to log in, and nothing may run there.
    other = start_sshd(tmp_path / "other")
    other.stop()
    mac.known_hosts.write_text(f"[{mac.host}]:{mac.port} {other.host_key_line}\n")
    done = run_playbook(tmp_path, control_dir, "mac_baseline.yml", {"mac-01": (mac, {"kind": "mac-mini"})})
    assert done.status == "failed"
    assert done.failures.get("mac-01")
    assert "Host key verification failed" in done.output
    assert mac.state()["log"] == []
