"""RedfishBmc against the lab's Redfish simulator, at the wire (HTTPS on 127.0.0.1, the lab CA pinned)."""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from remotehands.bmc import redfish_quirks
from remotehands.bmc.base import (
    BootControl,
    BootDevice,
    BootSetting,
    PowerAction,
    PowerDriver,
    PowerState,
    VirtualMedia,
    perform_and_confirm,
)
from remotehands.bmc.redfish import RedfishBmc
from remotehands.bmc.redfish_pool import RedfishSessionPool
from remotehands.errors import DeviceRefused, DeviceUnreachable, InternalError, InvalidRequest, RetryableError
from remotehands.lab.bmc_sim import CommandLog
from remotehands.lab.process import read_bmc_log
from remotehands.lab.redfish_sim import RedfishLab, serve_redfish
from remotehands.lab.redfish_sim_system import SystemOptions

pytestmark = pytest.mark.slow

PASSWORD = "rf-" + secrets.token_urlsafe(9)
CYCLE_DELAY = 0.4
HOSTS = [f"rf-{n:02d}" for n in range(1, 21)]


class Lab:
    def __init__(self, lab: RedfishLab, log_path: Path) -> None:
        self.sim = lab
        self.log_path = log_path
        self.port = lab.port
        self.ca = str(lab.ca_file)

    def lines(self, host: str | None = None, command: str | None = None) -> list[dict[str, object]]:
        return read_bmc_log(self.log_path, host=host, command=command)

    def count(self, host: str | None = None, command: str | None = None, ok_only: bool = False) -> int:
        return len(
            [e for e in self.lines(host, command) if not ok_only or int(str(e.get("status", 200))) < 300]
        )


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    where = tmp_path_factory.mktemp("redfish")
    command_log = CommandLog(where / "bmc-log.jsonl")
    options = {
        "rf-03": SystemOptions(reset_types=("On", "ForceOff", "GracefulShutdown", "ForceRestart")),
        "rf-04": SystemOptions(reset_types=("On", "ForceOff")),
        "rf-05": SystemOptions(on_conflict_window=0.8),
        "rf-06": SystemOptions(post_busy_patches=2),
        "rf-09": SystemOptions(already_off_error=True),
        "rf-11": SystemOptions(boot_modes=None),
        "rf-13": SystemOptions(vmedia_actions=False),
    }
    sim = serve_redfish(
        HOSTS, command_log, where / "ca", cycle_delay=CYCLE_DELAY, password=PASSWORD, options=options
    )
    try:
        yield Lab(sim, where / "bmc-log.jsonl")
    finally:
        sim.stop()
        command_log.close()


@pytest.fixture
def make(lab: Lab):
    made: list[RedfishBmc] = []

    def build(host: str | None, **overrides) -> RedfishBmc:
        settings: dict[str, Any] = {"system_id": host, "tls_ca": lab.ca, "timeout": 3.0}
        settings.update(overrides)
        password = settings.pop("password", PASSWORD)
        port = settings.pop("port", lab.port)
        bmc = RedfishBmc("127.0.0.1", port, "admin", password, **settings)
        made.append(bmc)
        return bmc

    yield build
    for bmc in made:
        bmc.close()


def confirm(bmc: RedfishBmc, action: PowerAction):
    return perform_and_confirm(bmc, action, timeout=8, first_wait=0.05, max_wait=0.2)


def reset_types(lab: Lab, host: str) -> list[str]:
    return [str(e["reset_type"]) for e in lab.lines(host) if "reset_type" in e]


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the driver and its power verbs ------------------------------------------------------------------------


def test_constructor_does_no_io_and_the_driver_has_all_three_interfaces(lab, make):
    bmc = make(
        "rf-01", port=free_tcp_port()
    )  # nothing listens there: a constructor that connected would fail
    assert isinstance(bmc, PowerDriver)
    assert isinstance(bmc, BootControl)
    assert isinstance(bmc, VirtualMedia)


def test_status_is_one_get_of_the_system_from_the_first_call_on(lab, make):
    bmc = make("rf-01")
    before = lab.count("rf-01", "get_system")
    assert bmc.state() is PowerState.ON
    assert lab.count("rf-01", "get_system") == before + 1
    assert bmc.state() is PowerState.ON
    assert lab.count("rf-01", "get_system") == before + 2
    assert bmc.supported() == frozenset(PowerAction)


def test_off_on_soft_off_map_to_force_off_on_and_graceful_shutdown(lab, make):
    bmc = make("rf-02")
    assert confirm(bmc, PowerAction.OFF).sent
    assert confirm(bmc, PowerAction.ON).sent
    assert confirm(bmc, PowerAction.SOFT_OFF).state is PowerState.OFF
    assert confirm(bmc, PowerAction.ON).state is PowerState.ON
    assert reset_types(lab, "rf-02") == ["ForceOff", "On", "GracefulShutdown", "On"]


def test_cycle_is_power_cycle_and_reads_back_on(lab, make):
    bmc = make("rf-01")
    done = confirm(bmc, PowerAction.CYCLE)
    assert done.state is PowerState.ON
    assert reset_types(lab, "rf-01")[-1:] == ["PowerCycle"]
    assert lab.lines("rf-01", "cycle")[-1]["reset_type"] == "PowerCycle"


def test_cycle_falls_back_to_force_restart(lab, make):
    bmc = make("rf-03")
    assert bmc.supported() == frozenset(PowerAction)
    assert confirm(bmc, PowerAction.CYCLE).state is PowerState.ON
    assert reset_types(lab, "rf-03") == ["ForceRestart"]


def test_cycle_falls_back_to_off_then_on_as_two_commands(lab, make):
    bmc = make("rf-04")
    assert bmc.supported() == {PowerAction.ON, PowerAction.OFF, PowerAction.CYCLE}
    assert confirm(bmc, PowerAction.CYCLE).state is PowerState.ON
    assert reset_types(lab, "rf-04") == ["ForceOff", "On"]
    with pytest.raises(
        DeviceRefused, match="does not offer power soft_off; its ResetType values: ForceOff, On"
    ):
        bmc.set_state(PowerAction.SOFT_OFF)


def test_set_state_refuses_cycle(make):
    with pytest.raises(InternalError, match="use cycle"):
        make("rf-01").set_state(PowerAction.CYCLE)


# -- quirks --------------------------------------------------------------------------------------------


def test_on_right_after_off_conflict_is_retried(lab, make):
    bmc = make("rf-05")
    confirm(bmc, PowerAction.OFF)
    done = confirm(bmc, PowerAction.ON)
    assert done.state is PowerState.ON
    answers = [(e["reset_type"], e["status"]) for e in lab.lines("rf-05", "power_on")]
    assert answers[0] == ("On", 409) and answers[-1] == ("On", 204)
    assert all(status == 409 for _, status in answers[:-1])
    assert lab.lines("rf-05", "power_on")[0]["error"].endswith("ActionParameterValueConflict")


def test_a_conflict_that_does_not_clear_is_retryable(lab, make, monkeypatch):
    monkeypatch.setattr(redfish_quirks, "ON_RETRY_DELAYS", (0.01, 0.01))
    lab.sim.systems["rf-07"].configure(on_conflict_window=60.0)
    bmc = make("rf-07")
    bmc.set_state(PowerAction.OFF)
    with pytest.raises(RetryableError, match="still refuses to reset On after 3 tries") as err:
        bmc.set_state(PowerAction.ON)
    assert err.value.retryable
    lab.sim.systems["rf-07"].configure(on_conflict_window=0.0)
    bmc.set_state(PowerAction.ON)


def test_boot_override_during_post_is_retried(lab, make):
    bmc = make("rf-06")
    bmc.set_boot_device(BootDevice.PXE, once=True, uefi=True)
    statuses = [e["status"] for e in lab.lines("rf-06", "boot_override")]
    assert statuses == [400, 400, 204]
    assert bmc.get_boot_device() == BootSetting(BootDevice.PXE, once=True, uefi=True)


def test_a_post_that_does_not_end_is_retryable(lab, make, monkeypatch):
    monkeypatch.setattr(redfish_quirks, "POST_RETRY_DELAYS", (0.01,))
    lab.sim.systems["rf-08"].configure(post_busy_patches=5)
    with pytest.raises(RetryableError, match="UnableToModifyDuringSystemPOST"):
        make("rf-08").set_boot_device(BootDevice.CD)
    assert lab.count("rf-08", "boot_override") == 2


@pytest.mark.parametrize(("host", "value"), [("rf-10", None), ("rf-14", "Unknown"), ("rf-15", "Reset")])
def test_transitional_power_states_read_unknown_and_the_loop_keeps_reading(lab, make, host, value):
    lab.sim.systems[host].configure(transitional_window=0.3, transitional_value=value)
    bmc = make(host)
    bmc.cycle()
    assert bmc.state() is PowerState.UNKNOWN
    deadline = time.monotonic() + 5
    while bmc.state() is not PowerState.ON:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    done = perform_and_confirm(bmc, PowerAction.CYCLE, timeout=8, first_wait=0.05, max_wait=0.1)
    assert done.state is PowerState.ON and done.reads > 3
    seen = [e["power_state"] for e in lab.lines(host, "get_system")][-done.reads :]
    assert seen[0] == value and "Off" in seen and "PoweringOn" in seen and seen[-1] == "On"


def test_already_off_error_on_force_off_is_success(lab, make):
    bmc = make("rf-09")
    bmc.set_state(PowerAction.OFF)
    assert bmc.state() is PowerState.OFF
    bmc.set_state(PowerAction.OFF)  # the BMC answers 409 "Server is already powered OFF."
    bmc.set_state(PowerAction.SOFT_OFF)
    statuses = [e["status"] for e in lab.lines("rf-09") if e["command"] in ("power_off", "soft_off")]
    assert statuses == [204, 409, 409]
    bmc.set_state(PowerAction.ON)


# -- boot override -----------------------------------------------------------------------------------------


def test_boot_override_set_and_read_back(lab, make):
    bmc = make("rf-12")
    assert bmc.get_boot_device() == BootSetting(None, once=False, uefi=True)
    bmc.set_boot_device(BootDevice.DISK, once=False, uefi=False)
    assert bmc.get_boot_device() == BootSetting(BootDevice.DISK, once=False, uefi=False)
    bmc.set_boot_device(BootDevice.HTTP)
    assert bmc.get_boot_device() == BootSetting(BootDevice.HTTP, once=True, uefi=True)
    last = lab.lines("rf-12", "boot_override")[-1]
    assert (last["target"], last["enabled"], last["mode"]) == ("UefiHttp", "Once", "UEFI")
    with pytest.raises(InvalidRequest, match="UEFI HTTP boot needs UEFI"):
        bmc.set_boot_device(BootDevice.HTTP, uefi=False)
    confirm(bmc, PowerAction.CYCLE)  # a boot that uses the "once" override clears it
    assert bmc.get_boot_device().device is None


def test_boot_mode_is_sent_only_when_the_bmc_lists_it(lab, make):
    bmc = make("rf-11")
    bmc.set_boot_device(BootDevice.CD, once=True, uefi=False)
    assert "mode" not in lab.lines("rf-11", "boot_override")[-1]
    assert bmc.get_boot_device() == BootSetting(BootDevice.CD, once=True, uefi=None)


# -- virtual media -----------------------------------------------------------------------------------------


def test_virtual_media_insert_and_eject_with_actions(lab, make):
    bmc = make("rf-12")
    assert bmc.inserted() is None
    bmc.insert("http://images.lab/esxi-8.iso")
    assert bmc.inserted() == "http://images.lab/esxi-8.iso"
    bmc.insert("http://images.lab/esxi-8.iso")  # in already: nothing sent
    assert lab.count("rf-12", "vmedia_insert") == 1
    bmc.insert("http://images.lab/ubuntu.iso")  # another image: eject, then insert
    assert bmc.inserted() == "http://images.lab/ubuntu.iso"
    bmc.eject()
    bmc.eject()  # empty already: nothing sent
    assert bmc.inserted() is None
    commands = [e["command"] for e in lab.lines("rf-12") if str(e["command"]).startswith("vmedia")]
    assert commands == ["vmedia_insert", "vmedia_eject", "vmedia_insert", "vmedia_eject"]
    assert not any(e.get("patch") for e in lab.lines("rf-12") if str(e["command"]).startswith("vmedia"))


def test_virtual_media_by_patch_when_no_actions_are_offered(lab, make):
    bmc = make("rf-13")
    bmc.insert("http://images.lab/rescue.iso")
    assert bmc.inserted() == "http://images.lab/rescue.iso"
    bmc.eject()
    assert bmc.inserted() is None
    lines = [e for e in lab.lines("rf-13") if str(e["command"]).startswith("vmedia")]
    assert [(e["command"], e.get("patch")) for e in lines] == [
        ("vmedia_insert", True),
        ("vmedia_eject", True),
    ]


# -- sessions ------------------------------------------------------------------------------------------


def test_one_login_for_many_calls_and_close_logs_out(lab, make):
    logins, logouts = lab.count(None, "session_login"), lab.count(None, "session_logout")
    bmc = make("rf-17")
    for _ in range(10):
        bmc.state()
    bmc.get_boot_device()
    bmc.inserted()
    assert lab.count(None, "session_login") == logins + 1
    session = lab.lines(None, "session_login")[-1]["session"]
    assert {e["auth"] for e in lab.lines("rf-17", "get_system")} == {session}
    bmc.close()
    bmc.close()
    assert lab.count(None, "session_logout") == logouts + 1
    assert lab.lines(None, "session_logout")[-1]["session"] == session


def test_a_401_logs_in_again_once(lab, make):
    bmc = make("rf-17")
    bmc.state()
    logins = lab.count(None, "session_login")
    lab.sim.drop_sessions()
    assert bmc.state() is PowerState.ON
    assert lab.count(None, "session_login") == logins + 1
    assert lab.lines("rf-17", "unauthorized")


def test_a_pool_shares_one_session_among_the_systems_of_a_service(lab):
    logins, logouts = lab.count(None, "session_login"), lab.count(None, "session_logout")
    with RedfishSessionPool(max_connections=4) as pool:
        drivers = [
            RedfishBmc("127.0.0.1", lab.port, "admin", PASSWORD, system_id=h, tls_ca=lab.ca, sessions=pool)
            for h in HOSTS[:8]
        ]
        threads = [threading.Thread(target=d.state) for d in drivers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for driver in drivers:
            assert driver.state() is not PowerState.UNKNOWN
            driver.close()  # the pool's session stays open
        assert lab.count(None, "session_logout") == logouts
        wrong = RedfishBmc(
            "127.0.0.1", lab.port, "admin", "not-" + PASSWORD, system_id="rf-01", tls_ca=lab.ca, sessions=pool
        )
        with pytest.raises(DeviceRefused):
            wrong.state()  # other credentials never ride on the pool's session
    assert lab.count(None, "session_login", ok_only=True) == logins + 1
    assert lab.count(None, "session_logout") == logouts + 1


def test_wrong_password_is_refused_fatally_without_showing_it(lab, make, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-" + secrets.token_hex(8)
    bmc = make("rf-01", password=wrong)
    with pytest.raises(DeviceRefused, match="refused the credentials of user 'admin'") as err:
        bmc.state()
    assert not err.value.retryable
    assert f"127.0.0.1:{lab.port}" in str(err.value)
    for text in (str(err.value), repr(err.value.args), repr(bmc), caplog.text):
        assert wrong not in text
        assert PASSWORD not in text


def test_a_system_id_the_service_does_not_have_and_an_ambiguous_service(lab, make):
    with pytest.raises(DeviceRefused, match=r"has no system 'nope'.*set power\.system_id"):
        make("nope").state()
    with pytest.raises(DeviceRefused, match=f"lists {len(HOSTS)} systems, not one"):
        make(None).state()


def test_a_dead_port_is_unreachable_quickly(make):
    bmc = make("rf-01", port=free_tcp_port(), timeout=1.0)
    start = time.monotonic()
    with pytest.raises(DeviceUnreachable, match=r"127\.0\.0\.1:.*connection refused") as err:
        bmc.state()
    assert err.value.retryable
    assert time.monotonic() - start < 3


# -- TLS -----------------------------------------------------------------------------------------------


def test_tls_verified_against_the_pinned_lab_ca(make):
    assert make("rf-18").state() is PowerState.ON


def test_tls_against_the_system_store_fails_clearly(lab, make):
    bmc = make("rf-18", tls_ca=None)
    with pytest.raises(DeviceRefused) as err:
        bmc.state()
    text = str(err.value)
    assert "does not verify against the system CA store" in text
    assert "pin the CA that issued this BMC's certificate with tls_ca" in text
    assert not err.value.retryable


def test_tls_with_a_ca_that_did_not_sign_the_certificate_fails(tmp_path, make):
    from remotehands.lab.lab_ca import issue_lab_tls

    other = issue_lab_tls(tmp_path / "other")
    with pytest.raises(DeviceRefused, match=f"pinned CA bundle tls_ca={other.ca_file}"):
        make("rf-18", tls_ca=str(other.ca_file)).state()
    with pytest.raises(DeviceRefused, match="cannot load the pinned CA bundle"):
        make("rf-18", tls_ca=str(tmp_path / "missing.pem")).state()


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_insecure_works_and_warns_once(make, caplog):
    caplog.set_level(logging.WARNING, logger="remotehands.bmc.redfish_connection")
    bmc = make("rf-18", tls_ca=None, tls_insecure=True)
    assert bmc.state() is PowerState.ON
    assert bmc.state() is PowerState.ON
    bmc.set_boot_device(BootDevice.PXE)
    warnings = [r for r in caplog.records if "verification is OFF" in r.getMessage()]
    assert len(warnings) == 1
