"""The lab's simulated SSH hosts (remotehands.lab.ssh_host), driven with paramiko clients that pin each host's
key from the lab's known_hosts file (RejectPolicy: an unknown or changed key is refused)."""

from __future__ import annotations

import json
import re
import socket
import threading
import time

import paramiko
import pytest
import yaml

from remotehands.lab.bmc_sim import CommandLog
from remotehands.lab.process import read_bmc_log
from remotehands.lab.ssh_host import SshHosts

PASSWORD = "lab-Secret-42x"
SCALE = 0.25 / 2400  # a 40-minute install takes 0.25 s
STARTOSINSTALL = (
    "sudo '/Applications/Install macOS Sequoia.app/Contents/Resources/startosinstall' "
    "--eraseinstall --agreetolicense --nointeraction"
)


class Outlet:
    """A power switch for a host."""

    def __init__(self) -> None:
        self.on = True

    def __call__(self) -> bool:
        return self.on


@pytest.fixture
def outlet():
    return Outlet()


@pytest.fixture
def hosts(tmp_path, outlet):
    lab = SshHosts(
        PASSWORD,
        command_log=CommandLog(tmp_path / "log.jsonl"),
        known_hosts=tmp_path / "known_hosts",
        time_scale=SCALE,
        boot_delay=0.05,
    )
    lab.add_host("mac-as", "mac-mini", serial="LAB0101", model="apple-silicon", powered=outlet)
    lab.add_host("mac-t2", "mac-mini", serial="LAB0102", model="t2")
    lab.add_host("mac-old", "mac-pro", serial="LAB0103", model="intel-legacy")
    lab.add_host("esx", "esxi", serial="LAB0104")
    lab.add_host("lin", "linux", serial="LAB0105")
    lab.add_host("ctl", "mac-mini", serial="LAB0106", controller_of="target")
    lab.add_host("target", "mac-studio", serial="LAB0107", build="24B83")
    lab.start()
    try:
        for name in lab.names():
            assert lab.wait_until(name, up=lab.state(name).phase == "running", timeout=5)
        yield lab
    finally:
        lab.stop()


def client(lab, name, *, user="admin", password=PASSWORD, key=None, known_hosts=None):
    c = paramiko.SSHClient()
    c.load_host_keys(str(known_hosts or lab.known_hosts))
    c.set_missing_host_key_policy(paramiko.RejectPolicy())
    c.connect(
        "127.0.0.1",
        lab.port(name),
        username=user,
        password=None if key else password,
        pkey=key,
        look_for_keys=False,
        allow_agent=False,
        timeout=5,
    )
    return c


def run(lab, name, command, stdin=None, **login):
    """(exit status, stdout, stderr) of ``command`` on host ``name``."""
    with client(lab, name, **login) as c:
        stdin_, stdout, stderr = c.exec_command(command, timeout=10)
        if stdin is not None:
            stdin_.write(stdin)
        stdin_.channel.shutdown_write()
        out, err = stdout.read().decode(), stderr.read().decode()
        return stdout.channel.recv_exit_status(), out, err


def ok(lab, name, command, stdin=None):
    code, out, err = run(lab, name, command, stdin)
    assert code == 0, (command, err)
    return out


def log_lines(lab):
    return [json.loads(line) for line in lab._command_log.path.read_text().splitlines()]


def test_a_mac_reports_its_os_serial_and_hardware(hosts):
    out = ok(hosts, "mac-as", "sw_vers")
    assert re.fullmatch(r"ProductName:\t\tmacOS\nProductVersion:\t\t14\.5\nBuildVersion:\t\t23F79\n", out)
    assert ok(hosts, "mac-as", "sw_vers -buildVersion") == "23F79\n"
    ioreg = ok(hosts, "mac-as", "ioreg -c IOPlatformExpertDevice -d 2")
    assert re.search(r'^\s+"IOPlatformSerialNumber" = "LAB0101"$', ioreg, re.M)
    assert "<class IOPlatformExpertDevice" in ioreg
    [hw] = json.loads(ok(hosts, "mac-as", "system_profiler SPHardwareDataType -json"))["SPHardwareDataType"]
    assert (hw["serial_number"], hw["machine_model"], hw["chip_type"]) == (
        "LAB0101",
        "Mac14,12",
        "Apple M2 Pro",
    )
    [intel] = json.loads(ok(hosts, "mac-t2", "system_profiler SPHardwareDataType -json"))[
        "SPHardwareDataType"
    ]
    assert intel["machine_model"] == "Macmini8,1" and "cpu_type" in intel and "chip_type" not in intel
    enrollment = ok(hosts, "mac-as", "profiles status -type enrollment")
    assert "MDM enrollment: Yes (User Approved)" in enrollment
    assert ok(hosts, "mac-as", "uname -r") == "23.5.0\n"


def test_pmset_autorestart_is_set_with_sudo(hosts):
    assert re.search(r"^ autorestart\s+0$", ok(hosts, "mac-as", "pmset -g"), re.M)
    code, _, err = run(hosts, "mac-as", "pmset -a autorestart 1")
    assert code != 0 and "root" in err
    ok(hosts, "mac-as", "sudo pmset -a autorestart 1")
    assert re.search(r"^ autorestart\s+1$", ok(hosts, "mac-as", "pmset -g"), re.M)
    assert hosts.state("mac-as").autorestart


def test_esxi_and_linux_hosts_report_their_version_and_serial(hosts):
    version = ok(hosts, "esx", "esxcli system version get")
    assert "   Product: VMware ESXi\n   Version: 8.0.2\n   Build: Releasebuild-22380479\n" in version
    assert "   Update: 2\n   Patch: 0\n" in version
    assert "   Serial Number: LAB0104\n" in ok(hosts, "esx", "esxcli hardware platform get")
    summary = ok(hosts, "esx", "vim-cmd hostsvc/hostsummary")
    assert 'fullName = "VMware ESXi 8.0.2 build-22380479"' in summary
    hosts.add_host("esx-rsa", "esxi", serial="LAB0108", version="8.0.3", key_type="rsa")
    assert hosts.host_key("esx-rsa").get_name() == "ssh-rsa" and hosts.wait_until("esx-rsa", timeout=2)
    assert (
        ok(hosts, "esx-rsa", "vmware -vl") == "VMware ESXi 8.0.3 build-24022510\nVMware ESXi 8.0 Update 3\n"
    )
    release = ok(hosts, "lin", "cat /etc/os-release")
    assert 'VERSION_ID="24.04"' in release and "ID=ubuntu" in release
    code, _, err = run(hosts, "lin", "cat /sys/class/dmi/id/product_serial")
    assert code == 1 and "Permission denied" in err
    assert ok(hosts, "lin", "sudo cat /sys/class/dmi/id/product_serial") == "LAB0105\n"
    assert ok(hosts, "lin", "uname -r") == "6.8.0-45-generic\n"
    assert run(hosts, "esx", "cat /etc/os-release", user="root")[0] == 127


@pytest.mark.parametrize("name", ["mac-as", "esx", "lin"])
def test_an_unknown_command_is_not_found(hosts, name):
    code, out, err = run(hosts, name, "frobnicate --now")
    assert (code, out) == (127, "")
    assert "command not found" in err


def test_wrong_credentials_are_refused_and_keys_can_be_authorized(hosts):
    with pytest.raises(paramiko.AuthenticationException):
        client(hosts, "mac-as", password="wrong-password")
    with pytest.raises(paramiko.AuthenticationException):
        client(hosts, "mac-as", user="root")  # only the lab user logs in to a Mac
    assert run(hosts, "lin", "whoami", user="root")[1] == "root\n"
    user_key = paramiko.RSAKey.generate(1024)
    with pytest.raises(paramiko.AuthenticationException):
        client(hosts, "mac-t2", key=user_key)
    hosts.authorize_key(user_key)
    assert run(hosts, "mac-t2", "whoami", key=user_key)[1] == "admin\n"
    failures = [e for e in log_lines(hosts) if e["command"] == "auth_failed"]
    assert {(e["host"], e["user"]) for e in failures} >= {("mac-as", "admin"), ("mac-as", "root")}


def test_fetching_a_full_installer_puts_it_in_applications(hosts):
    assert "Install macOS" not in ok(hosts, "mac-as", "ls /Applications")
    out = ok(hosts, "mac-as", "softwareupdate --fetch-full-installer --full-installer-version 15.2")
    assert out.splitlines()[-1] == "Install finished successfully"
    assert "Install macOS Sequoia.app" in ok(hosts, "mac-as", "ls /Applications").splitlines()
    code, _, err = run(
        hosts, "mac-old", "softwareupdate --fetch-full-installer --full-installer-version 15.2"
    )
    assert code == 1 and "Update not found" in err  # a 2013 Mac Pro tops out at Monterey


def test_startosinstall_on_apple_silicon_needs_the_volume_owner_password_on_stdin(hosts):
    ok(hosts, "mac-as", "softwareupdate --fetch-full-installer --full-installer-version 15.2")
    code, _, err = run(hosts, "mac-as", STARTOSINSTALL)
    assert code != 0 and "--user" in err and "--stdinpass" in err
    code, _, err = run(hosts, "mac-as", STARTOSINSTALL + " --user admin --stdinpass", stdin="not-it\n")
    assert code != 0 and "incorrect" in err
    code, _, err = run(hosts, "mac-as", STARTOSINSTALL + " --user admin --stdinpass")  # no stdin at all
    assert code != 0
    state = hosts.state("mac-as")
    assert (state.up, state.erase_count, state.build) == (True, 0, "23F79")


def test_an_erase_install_goes_dark_and_comes_back_with_the_new_build_and_a_new_key(hosts, tmp_path):
    pinned = tmp_path / "pinned_known_hosts"
    pinned.write_text(hosts.known_hosts.read_text())
    old_key = hosts.host_key("mac-as")
    ok(hosts, "mac-as", "sudo pmset -a autorestart 1")
    ok(hosts, "mac-as", "softwareupdate --fetch-full-installer --full-installer-version 15.2")
    out = ok(hosts, "mac-as", STARTOSINSTALL + " --user admin --stdinpass", stdin=PASSWORD + "\n")
    assert "Preparing: 100.0%" in out
    assert hosts.wait_until("mac-as", up=False, timeout=1)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", hosts.port("mac-as")), timeout=1).close()
    assert hosts.state("mac-as").phase == "installing"
    assert hosts.wait_until("mac-as", up=True, timeout=5)
    state = hosts.state("mac-as")
    assert (state.build, state.version, state.autorestart, state.erase_count) == ("24C101", "15.2", False, 1)
    new_key = hosts.host_key("mac-as")
    assert new_key.asbytes() != old_key.asbytes()
    assert f"{new_key.get_name()} {new_key.get_base64()}" in hosts.known_hosts.read_text()
    with pytest.raises(paramiko.BadHostKeyException):
        client(hosts, "mac-as", known_hosts=pinned)
    assert ok(hosts, "mac-as", "sw_vers -buildVersion") == "24C101\n"
    assert "Install macOS" not in ok(hosts, "mac-as", "ls /Applications")  # the disk was erased


def test_bless_netboot_is_refused_on_t2_and_apple_silicon_and_recorded_on_legacy_intel(hosts):
    bless = "sudo bless --netboot --nextonly --server bsdp://10.0.0.5"
    for name in ("mac-t2", "mac-as"):
        code, _, err = run(hosts, name, bless)
        assert code != 0 and "not supported" in err
        assert hosts.state(name).next_boot is None
    ok(hosts, "mac-old", bless)
    assert hosts.state("mac-old").next_boot == "netboot"


def test_a_netbooting_mac_installs_through_the_hook(hosts):
    booted = []
    hosts.on_netboot = lambda name, server: booted.append((name, server)) or hosts.begin_install(name, "15.1")
    hosts.add_host("mac-nb", "mac-mini", serial="LAB0110", model="intel-legacy", powered=(power := Outlet()))
    assert hosts.wait_until("mac-nb", timeout=5)
    ok(hosts, "mac-nb", "sudo bless --netboot --nextonly --server bsdp://10.0.0.5")
    power.on = False
    assert hosts.wait_until("mac-nb", up=False, timeout=1)
    power.on = True
    assert hosts.wait_until("mac-nb", up=True, timeout=5)
    assert booted == [("mac-nb", "bsdp://10.0.0.5")]
    state = hosts.state("mac-nb")
    assert (state.version, state.erase_count, state.next_boot) == ("15.1", 1, None)


def test_begin_install_calls_back_when_the_host_is_back(hosts):
    done = threading.Event()
    started = time.monotonic()
    hosts.begin_install("lin", "22.04", done.set)
    assert not hosts.state("lin").up  # dark before begin_install returns
    assert done.wait(5)
    assert time.monotonic() - started >= 2400 * SCALE * 0.9
    assert ok(hosts, "lin", "uname -r") == "5.15.0-119-generic\n"
    with pytest.raises(ValueError, match="no linux release"):
        hosts.begin_install("lin", "99.99")
    with pytest.raises(ValueError):
        hosts.set_time_scale(0)


def test_a_controller_mac_puts_its_target_in_dfu_and_restores_it(hosts):
    assert ok(hosts, "ctl", "cfgutil list") == ""
    out = ok(hosts, "ctl", "sudo macvdmtool dfu")
    assert "Rebooting target into DFU mode... OK" in out
    assert hosts.state("target").phase == "dfu" and not hosts.state("target").up
    listing = ok(hosts, "ctl", "cfgutil list")
    ecid = re.search(r"ECID: (0x[0-9A-F]+)", listing).group(1)
    assert "Type: Mac14,13" in listing
    ipsw = "/Users/admin/UniversalMac_15.3_24D60_Restore.ipsw"
    assert "Restore succeeded." in ok(hosts, "ctl", f"cfgutil --ecid {ecid} restore -i {ipsw}")
    state = hosts.state("target")
    assert (state.build, state.erase_count, state.up) == ("24D60", 1, True)
    code, _, err = run(hosts, "ctl", "cfgutil --ecid 0x1 restore -i " + ipsw)
    assert code == 1 and "No devices found" in err  # no device with that ECID
    assert run(hosts, "mac-as", "sudo macvdmtool dfu")[0] == 1  # not paired with anything


def test_wrong_serial_fault(hosts):
    hosts.set_fault("mac-t2", "wrong_serial")
    ioreg = ok(hosts, "mac-t2", "ioreg -rd1 -c IOPlatformExpertDevice")
    reported = re.search(r'"IOPlatformSerialNumber" = "(\w+)"', ioreg).group(1)
    assert reported != "LAB0102" and reported == hosts.state("mac-t2").reported_serial
    hosts.set_fault("esx", "wrong_serial")
    assert "Serial Number: LAB0104" not in ok(hosts, "esx", "esxcli hardware platform get")
    hosts.set_fault("mac-t2", "wrong_serial", enabled=False)
    assert '"LAB0102"' in ok(hosts, "mac-t2", "ioreg -rd1 -c IOPlatformExpertDevice")
    with pytest.raises(ValueError, match="no fault"):
        hosts.set_fault("esx", "gremlins")


def test_install_never_finishes_fault_keeps_the_host_dark(hosts):
    hosts.set_fault("mac-t2", "install_never_finishes")
    hosts.begin_install("mac-t2", "15.0")
    time.sleep(3 * 2400 * SCALE)
    assert (hosts.state("mac-t2").phase, hosts.state("mac-t2").up) == ("installing", False)
    hosts.set_fault("mac-t2", "install_never_finishes", enabled=False)
    assert hosts.wait_until("mac-t2", timeout=2)
    assert hosts.state("mac-t2").build == "24A335"


def test_installer_missing_fault(hosts):
    ok(hosts, "mac-t2", "softwareupdate --fetch-full-installer --full-installer-version 15.2")
    hosts.set_fault("mac-t2", "installer_missing")
    assert "Install macOS" not in ok(hosts, "mac-t2", "ls /Applications")
    code, _, err = run(hosts, "mac-t2", "softwareupdate --fetch-full-installer --full-installer-version 15.3")
    assert code == 1 and "Update not found" in err
    code, _, err = run(hosts, "mac-t2", STARTOSINSTALL)
    assert code == 127 and "no such file or directory" in err
    assert hosts.state("mac-t2").erase_count == 0


def test_the_command_log_names_each_command_and_never_holds_the_password(hosts):
    ok(hosts, "mac-as", f"echo {PASSWORD}")  # a careless caller: masked in the log
    ok(hosts, "mac-as", "softwareupdate --fetch-full-installer --full-installer-version 15.2")
    ok(hosts, "mac-as", STARTOSINSTALL + " --user admin --stdinpass", stdin=PASSWORD + "\n")
    assert hosts.wait_until("mac-as", up=False, timeout=1)
    assert hosts.wait_until("mac-as", up=True, timeout=5)
    assert PASSWORD not in hosts._command_log.path.read_text()
    entries = read_bmc_log(hosts._command_log.path, host="mac-as")
    assert all(e["host"] == "mac-as" and isinstance(e["ts"], float) for e in entries)
    commands = [e["command"] for e in entries]
    assert commands == ["echo", "softwareupdate", "startosinstall", "erase", "install_done"]
    assert [e["args"] for e in entries if e["command"] == "echo"] == [["********"]]
    [install] = [e for e in entries if e["command"] == "startosinstall"]
    assert install["exit"] == 0 and install["user"] == "admin" and install["via"] == "ssh"


def test_a_host_that_is_down_refuses_connections(hosts, outlet):
    outlet.on = False
    assert hosts.wait_until("mac-as", up=False, timeout=1)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", hosts.port("mac-as")), timeout=1).close()
    with pytest.raises((paramiko.SSHException, OSError)):
        client(hosts, "mac-as")
    outlet.on = True
    assert hosts.wait_until("mac-as", up=True, timeout=2)
    assert ok(hosts, "mac-as", "hostname") == "mac-as\n"


def test_the_lab_macs_answer_ssh_as_the_inventory_describes_them(lab):
    inventory = yaml.safe_load((lab.inventory_dir / "hosts.yml").read_text())
    entries = inventory["all"]["children"]["lab1"]["children"]["lab1_r1"]["hosts"]
    models = {}
    for name in ("mac-01", "mac-02"):
        mac = lab.macs[name]
        assert mac.serial == entries[name]["serial_number"]
        with _lab_client(lab, mac.ssh_port) as c:
            _, stdout, _ = c.exec_command("ioreg -rd1 -c IOPlatformExpertDevice", timeout=10)
            assert f'"IOPlatformSerialNumber" = "{mac.serial}"' in stdout.read().decode()
        models[name] = mac.model
    assert models == {"mac-01": "apple-silicon", "mac-02": "t2"}


def _lab_client(lab, port):
    """A client logged in to a lab Mac, waiting for it should another test have just power-cycled it."""
    deadline = time.monotonic() + 15
    while True:
        c = paramiko.SSHClient()
        c.load_host_keys(str(lab.known_hosts))
        c.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            c.connect(
                "127.0.0.1", port, username="admin", password=lab.password(), look_for_keys=False,
                allow_agent=False, timeout=5,
            )  # fmt: skip
            return c
        except (OSError, paramiko.SSHException):
            c.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
