"""IpmiPower's boot device and chassis identify, and the simulated BMC under packet loss, at the wire.

The BMCs here run in this process (``SimulatedBmc`` on UDP 127.0.0.1, answered by a ``serve_forever``
thread), so a test can read their state directly as well as through their command log. ipmitool, when
installed, checks our boot flags against an independent implementation.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from remotehands.bmc.base import (
    BootControl,
    BootDevice,
    BootSetting,
    PowerAction,
    PowerState,
    perform_and_confirm,
)
from remotehands.bmc.ipmi import IpmiPower
from remotehands.bmc.ipmi_boot import BootFlags, BootSelector, parse_get_response
from remotehands.errors import DeviceRefused, InvalidRequest
from remotehands.lab.bmc_sim import CommandLog, SimulatedBmc, serve_forever
from remotehands.lab.process import read_bmc_log

pytestmark = pytest.mark.slow

IPMITOOL = shutil.which("ipmitool")
PASSWORD = "boot-" + secrets.token_hex(5)  # 15 characters: ipmitool -f reads at most 16


class Bmcs:
    """In-process simulated BMCs sharing one command log."""

    def __init__(self, where: Path) -> None:
        self.log_path = where / "bmc-log.jsonl"
        self.log = CommandLog(self.log_path)
        self.password_file = where / "password"
        self.password_file.write_text(PASSWORD + "\n")
        self.password_file.chmod(0o600)
        self.made: list[SimulatedBmc] = []

    def start(self, name: str, **options: Any) -> SimulatedBmc:
        bmc = SimulatedBmc(
            name, username="admin", password=PASSWORD, command_log=self.log, cycle_delay=0.3, **options
        )
        self.made.append(bmc)
        return bmc

    def lines(self, name: str, command: str | None = None) -> list[dict[str, object]]:
        return read_bmc_log(self.log_path, host=name, command=command)


@pytest.fixture(scope="module")
def bmcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bmcs]:
    found = Bmcs(tmp_path_factory.mktemp("ipmi-boot"))
    stop = threading.Event()
    listener = threading.Thread(target=serve_forever, args=(stop,), name="ipmi-boot-listener", daemon=True)
    listener.start()
    yield found
    for bmc in found.made:
        bmc.stop()
    stop.set()
    listener.join(5)
    found.log.close()


@pytest.fixture
def driver() -> Iterator[object]:
    made: list[IpmiPower] = []

    def make(bmc: SimulatedBmc, timeout: float = 5.0) -> IpmiPower:
        power = IpmiPower(bmc.address, bmc.port, "admin", PASSWORD, timeout=timeout)
        made.append(power)
        return power

    yield make
    for power in made:
        power.close()


def test_boot_flags_encode_as_the_specification_says():
    assert BootFlags.for_device(BootDevice.PXE, once=True, uefi=True).pack() == bytes([0xA0, 0x04, 0, 0, 0])
    assert BootFlags.for_device(BootDevice.DISK, once=False, uefi=False).pack() == bytes(
        [0xC0, 0x08, 0, 0, 0]
    )
    assert BootFlags.for_device(BootDevice.CD, once=True, uefi=False).pack() == bytes([0x80, 0x14, 0, 0, 0])
    with pytest.raises(KeyError):
        BootFlags.for_device(BootDevice.HTTP, once=True, uefi=True)
    # other bits of data 2-5 survive a round trip; a selector we have no name for reads as no device
    raw = bytes([0xE0, 0x18 | 0x03, 0x01, 0x02, 0x03])
    flags = BootFlags.unpack(raw)
    assert (flags.selector, flags.selector_name, flags.pack()) == (BootSelector.BIOS_SETUP, "bios_setup", raw)
    assert flags.setting() == BootSetting(device=None, once=False, uefi=True)
    assert parse_get_response(bytes([1, 0x85, 0x80, 0x04, 0, 0, 0])) is None  # marked invalid
    with pytest.raises(ValueError, match="parameter 4"):
        parse_get_response(bytes([1, 0x04, 0, 0, 0, 0, 0]))


def test_set_and_get_boot_device_are_one_command_each(bmcs, driver):
    bmc = bmcs.start("boot-01")
    power = driver(bmc)
    assert isinstance(power, BootControl)
    assert power.get_boot_device() == BootSetting(device=None, once=False, uefi=False)
    power.set_boot_device(BootDevice.PXE)
    assert power.get_boot_device() == BootSetting(BootDevice.PXE, once=True, uefi=True)
    power.set_boot_device(BootDevice.DISK, once=False, uefi=False)
    assert power.get_boot_device() == BootSetting(BootDevice.DISK, once=False, uefi=False)
    power.set_boot_device(BootDevice.CD, once=False, uefi=True)
    assert power.get_boot_device() == BootSetting(BootDevice.CD, once=False, uefi=True)
    overrides = bmcs.lines("boot-01", "boot_override")
    assert [(e["device"], e["persistent"], e["efi"]) for e in overrides] == [
        ("pxe", False, True),
        ("disk", True, False),
        ("cd", True, True),
    ]
    assert len(bmcs.lines("boot-01", "get_boot_option")) == 4
    assert not bmcs.lines("boot-01", "set_boot_option")  # no set-in-progress dance: one request


def test_a_boot_uses_up_once_flags_and_keeps_persistent_ones(bmcs, driver):
    bmc = bmcs.start("boot-02")
    power = driver(bmc)
    power.set_boot_device(BootDevice.PXE, once=True)
    perform_and_confirm(power, PowerAction.CYCLE, timeout=5, first_wait=0.05)
    assert power.get_boot_device() == BootSetting(device=None, once=False, uefi=True)
    power.set_boot_device(BootDevice.DISK, once=False)
    perform_and_confirm(power, PowerAction.CYCLE, timeout=5, first_wait=0.05)
    assert power.get_boot_device() == BootSetting(BootDevice.DISK, once=False, uefi=True)


def test_http_boot_is_refused_before_anything_is_sent(bmcs, driver):
    bmc = bmcs.start("boot-03")
    power = driver(bmc)
    with pytest.raises(DeviceRefused, match="UEFI HTTP") as caught:
        power.set_boot_device(BootDevice.HTTP)
    assert not caught.value.retryable
    assert bmcs.lines("boot-03") == []  # not even a login


def test_identify_on_timed_and_off(bmcs, driver):
    bmc = bmcs.start("boot-04")
    power = driver(bmc)
    assert bmc.identify_state == "off"
    power.identify(None)
    assert bmc.identify_state == "on"
    power.identify(0)
    assert bmc.identify_state == "off"
    power.identify(30)
    assert bmc.identify_state == "timed"
    with pytest.raises(InvalidRequest, match="0-255"):
        power.identify(256)
    assert [e["seconds"] for e in bmcs.lines("boot-04", "identify")] == [None, 0, 30]


@pytest.mark.skipif(IPMITOOL is None, reason="ipmitool is not installed (Debian package ipmitool)")
def test_ipmitool_reads_our_boot_flags_and_we_read_its(bmcs, driver):
    bmc = bmcs.start("boot-05")
    power = driver(bmc)

    def ipmitool(*args: str) -> str:
        assert IPMITOOL is not None
        command = [IPMITOOL, "-I", "lanplus", "-C", "3", "-H", bmc.address, "-p", str(bmc.port)]
        command += ["-U", "admin", "-f", str(bmcs.password_file), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    power.set_boot_device(BootDevice.CD, once=False, uefi=True)
    shown = ipmitool("chassis", "bootparam", "get", "5")
    assert "Boot parameter data: e014000000" in shown
    for text in ("Boot Flag Valid", "all future boots", "BIOS EFI boot", "Force Boot from CD/DVD"):
        assert text in shown
    assert "Set Boot Device to pxe" in ipmitool("chassis", "bootdev", "pxe")
    assert power.get_boot_device() == BootSetting(BootDevice.PXE, once=True, uefi=False)
    ipmitool("chassis", "bootdev", "disk", "options=efiboot,persistent")
    assert power.get_boot_device() == BootSetting(BootDevice.DISK, once=False, uefi=True)
    assert "indefinite" in ipmitool("chassis", "identify", "force")
    assert bmc.identify_state == "on"


def test_packet_loss_is_deterministic_and_about_the_fraction_asked(bmcs):
    first = bmcs.start("loss-a", packet_loss=0.3, seed=7)
    again = SimulatedBmc(
        "loss-a", username="admin", password=PASSWORD, command_log=bmcs.log, packet_loss=0.3, seed=7
    )
    bmcs.made.append(again)
    draws = [first.drops_incoming() for _ in range(1000)]
    assert draws == [again.drops_incoming() for _ in range(1000)]
    assert 250 <= sum(draws) <= 350
    with pytest.raises(ValueError, match="fractions"):
        bmcs.start("loss-b", packet_loss=1.5)


def test_under_30_percent_loss_reads_and_a_cycle_succeed_and_the_cycle_runs_once(bmcs, driver):
    # 30% of the packets the BMC receives and 30% of its answers are lost. With this seed the answer to
    # the cycle is lost, pyghmi sends the cycle again with the same sequence number, and the BMC answers
    # from its retransmit cache. The drops are a function of the seed and the packet sequence, so the run
    # is the same every time (about 4 s: pyghmi waits 0.5-3 s before each retransmission).
    bmc = bmcs.start("lossy-01", packet_loss=0.3, reply_loss=0.3, seed=73)
    power = driver(bmc, timeout=10.0)
    start = time.monotonic()
    for _ in range(3):
        assert power.state() is PowerState.ON
    done = perform_and_confirm(power, PowerAction.CYCLE, timeout=10, first_wait=0.1, max_wait=0.5)
    assert (done.state, done.sent) == (PowerState.ON, True)
    assert time.monotonic() - start < 14
    dropped = bmcs.lines("lossy-01", "packet_dropped")
    assert {e["direction"] for e in dropped} == {"in", "out"}
    assert len(bmcs.lines("lossy-01", "cycle")) == 1
    assert [e for e in bmcs.lines("lossy-01", "retransmit") if e["of"] == "cycle"]
    assert [r.action for r in bmc.sel_records()] == [PowerAction.CYCLE]
