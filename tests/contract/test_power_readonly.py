"""The read-only part of the power contract, against DMTF's public rack-mount mockup served by ``sushy-static``.

``sushy-static`` serves a static tree: every GET answers the mockup's file, every POST and PATCH answers 204
and changes nothing, and no credentials are checked. So only reads can be held to the contract here: the
driver must find the one system of a full, standard tree it was not written against, read its power
state, derive what it supports from ``ResetType@Redfish.AllowableValues``, and read the boot override and
the virtual CD. Its login POST is answered 204 without a token, so the driver falls back to HTTP Basic.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from remotehands.bmc.base import BootDevice, BootSetting, PowerAction, PowerDriver, PowerState
from remotehands.bmc.redfish import RedfishBmc
from remotehands.lab.lab_ca import issue_lab_tls

MOCKUP = Path(__file__).resolve().parents[1] / "data" / "redfish-mockups" / "public-rackmount1"
SUSHY_STATIC = Path(sys.executable).parent / "sushy-static"


@pytest.fixture(scope="module")
def mockup(tmp_path_factory: pytest.TempPathFactory):
    assert MOCKUP.is_dir(), f"the DMTF mockup ships with the tests at {MOCKUP}"
    sushy_static = str(SUSHY_STATIC) if SUSHY_STATIC.exists() else "sushy-static"
    where = tmp_path_factory.mktemp("sushy-static")
    tls = issue_lab_tls(where / "tls")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    out = (where / "sushy-static.log").open("wb")
    command = [sushy_static, "-m", str(MOCKUP), "-i", "127.0.0.1", "-p", str(port)]
    command += ["-c", str(tls.cert_file), "-k", str(tls.key_file)]
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, (where / "sushy-static.log").read_text(errors="replace")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                assert time.monotonic() < deadline, "sushy-static did not listen in time"
                time.sleep(0.1)
        yield port, str(tls.ca_file)
    finally:
        proc.terminate()
        proc.wait(10)
        out.close()


@pytest.fixture
def driver(mockup):
    port, ca = mockup
    bmc = RedfishBmc("127.0.0.1", port, "admin", "mockup-any-password", tls_ca=ca, timeout=5.0)
    yield bmc
    bmc.close()


def _system() -> dict[str, Any]:
    system: dict[str, Any] = json.loads((MOCKUP / "Systems" / "437XR1138R2" / "index.json").read_text())
    return system


def test_state_and_supported_of_a_full_standard_tree(driver):
    assert isinstance(driver, PowerDriver)
    expected = {"On": PowerState.ON, "Off": PowerState.OFF}[_system()["PowerState"]]
    assert driver.state() is expected
    # the mockup allows On, ForceOff, GracefulShutdown, ForceRestart, ... but no PowerCycle
    assert driver.supported() == frozenset(PowerAction)


def test_boot_override_and_virtual_cd_read_back(driver):
    boot = _system()["Boot"]
    assert boot["BootSourceOverrideTarget"] == "Pxe" and boot["BootSourceOverrideEnabled"] == "Once"
    assert driver.get_boot_device() == BootSetting(BootDevice.PXE, once=True, uefi=True)
    cd = json.loads((MOCKUP / "Systems" / "437XR1138R2" / "VirtualMedia" / "CD1" / "index.json").read_text())
    assert driver.inserted() == cd["Image"]  # the CD, not the USB stick listed before it
