"""SnmpOutlet against the lab's simulated PDUs, at the wire (UDP on 127.0.0.1), one simulator per model."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from remotehands.bmc.base import PowerAction, PowerDriver, PowerState, perform_and_confirm
from remotehands.bmc.pdu import SnmpOutlet
from remotehands.bmc.pdu_models import MODELS
from remotehands.errors import DeviceRefused, DeviceUnreachable, NeedsOperator
from remotehands.lab.bmc_sim import CommandLog
from remotehands.lab.pdu_sim import PduLab, PduSpec, serve_pdus, wait_until

COMMUNITY = "lab-rw-community-7"
V3_USER = "rhadmin"
AUTH_KEY = "lab-auth-key-0451"
PRIV_KEY = "lab-priv-key-9137"
NAMES = {n: f"mac-{n:02d}" for n in range(1, 9)}
MODEL_NAMES = sorted(MODELS)


def _spec(name: str, model: str, **extra: object) -> PduSpec:
    return PduSpec(
        name,
        model,
        8,
        NAMES,
        community=COMMUNITY,
        v3_user=V3_USER,
        v3_auth_key=AUTH_KEY,
        v3_priv_key=PRIV_KEY,
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def command_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CommandLog]:
    log = CommandLog(tmp_path_factory.mktemp("pdu") / "commands.jsonl")
    yield log
    log.close()


@pytest.fixture(scope="module")
def log_path(command_log: CommandLog) -> Path:
    return command_log.path


@pytest.fixture(scope="module")
def pdus(command_log: CommandLog) -> Iterator[PduLab]:
    specs = [_spec(model, model) for model in MODEL_NAMES]
    specs.append(_spec("chain", "apc-rpdu2", unit=2, rows_before=8))
    specs.append(_spec("mystery", "apc-rpdu", sys_object_id="1.3.6.1.4.1.99999.7.1"))
    lab = serve_pdus(specs, command_log, cycle_delay=0.5)
    yield lab
    lab.stop()


def commands(log_path: Path, pdu: str, command: str | None = None) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    return [e for e in lines if e["bmc"] == pdu and (command is None or e["command"] == command)]


def outlet(lab: PduLab, pdu: str, number: int = 3, **kw: object) -> SnmpOutlet:
    options: dict[str, object] = {"community": COMMUNITY, "timeout": 1.0}
    if kw.get("version") == "v3":
        options = {"v3_user": V3_USER, "v3_auth_key": AUTH_KEY, "v3_priv_key": PRIV_KEY, "timeout": 1.0}
    options.update(kw)
    return SnmpOutlet("127.0.0.1", lab.port_of(pdu), number, **options)  # type: ignore[arg-type]


def _short(seconds: float) -> None:
    time.sleep(min(seconds, 0.1))


@pytest.mark.parametrize("version", ["v2c", "v3"])
@pytest.mark.parametrize("model", MODEL_NAMES)
def test_each_model_reads_and_switches_with_one_command_per_action(pdus, log_path, model, version):
    driver = outlet(pdus, model, 3, version=version, expected_name="mac-03")
    try:
        assert isinstance(driver, PowerDriver)
        assert driver.outlet_name() == "mac-03"
        assert driver.state() is PowerState.ON
        for action, command, state in (
            (PowerAction.OFF, "outlet_off", PowerState.OFF),
            (PowerAction.ON, "outlet_on", PowerState.ON),
            (PowerAction.CYCLE, "outlet_reboot", PowerState.ON),
        ):
            before = len(commands(log_path, model))
            done = perform_and_confirm(driver, action, timeout=10, sleep=_short)
            assert done.sent and done.state is state
            new = commands(log_path, model)[before:]
            assert [(e["command"], e["outlet"]) for e in new] == [(command, 3)]
        assert pdus.pdu(model).is_on(3)
    finally:
        driver.close()


def test_the_model_can_be_named_instead_of_detected(pdus):
    driver = outlet(pdus, "raritan-px", 5, model="raritan-px")
    try:
        assert driver.state() is PowerState.ON and driver.outlet_name() == "mac-05"
    finally:
        driver.close()


def test_rpdu2_rows_are_looked_up_not_assumed(pdus, log_path):
    # Rows 1-8 belong to the first PDU of the chain; this PDU's outlet 3 is row 11.
    driver = outlet(pdus, "chain", 3, unit=2, expected_name="mac-03")
    try:
        before = len(commands(log_path, "chain"))
        perform_and_confirm(driver, PowerAction.OFF, timeout=10, sleep=_short)
        new = commands(log_path, "chain")[before:]
        assert [(e["command"], e["unit"], e["outlet"], e["row"]) for e in new] == [("outlet_off", 2, 3, 11)]
        assert not pdus.pdu("chain").is_on(3)
        perform_and_confirm(driver, PowerAction.ON, timeout=10, sleep=_short)
    finally:
        driver.close()


def test_an_outlet_name_mismatch_is_refused_before_any_command(pdus, log_path):
    driver = outlet(pdus, "apc-rpdu", 4, expected_name="mac-03")
    try:
        before = len(commands(log_path, "apc-rpdu"))
        for act in (lambda: driver.set_state(PowerAction.OFF), driver.cycle):
            with pytest.raises(DeviceRefused) as err:
                act()
            assert "'mac-04'" in str(err.value) and "'mac-03'" in str(err.value)
            assert "nothing was sent" in str(err.value)
        assert commands(log_path, "apc-rpdu")[before:] == []
        assert pdus.pdu("apc-rpdu").is_on(4)
    finally:
        driver.close()


def test_an_unknown_sys_object_id_is_refused_naming_it(pdus, log_path):
    driver = outlet(pdus, "mystery", 3)
    try:
        with pytest.raises(DeviceRefused) as err:
            driver.set_state(PowerAction.OFF)
        assert "1.3.6.1.4.1.99999.7.1" in str(err.value)
        assert "pdu_models.py" in str(err.value)
        assert not err.value.retryable
        assert commands(log_path, "mystery") == []
    finally:
        driver.close()


def test_an_outlet_the_pdu_does_not_have_is_refused(pdus):
    for driver in (outlet(pdus, "apc-rpdu", 30), outlet(pdus, "apc-rpdu", 3, model="raritan-px")):
        try:
            with pytest.raises(DeviceRefused) as err:
                driver.state()
            assert "does not exist" in str(err.value)
        finally:
            driver.close()


def test_soft_off_is_not_an_outlet_action(pdus):
    driver = outlet(pdus, "apc-rpdu", 3)
    try:
        assert PowerAction.SOFT_OFF not in driver.supported()
        with pytest.raises(DeviceRefused):
            driver.set_state(PowerAction.SOFT_OFF)
    finally:
        driver.close()


def test_a_wrong_community_times_out_and_says_it_may_be_the_community(pdus):
    driver = outlet(pdus, "apc-rpdu", 3, community="not-the-community-1", timeout=0.3, retries=0)
    try:
        with pytest.raises(DeviceUnreachable) as err:
            driver.state()
        assert err.value.retryable
        text = str(err.value)
        assert "wrong community" in text and f"127.0.0.1:{pdus.port_of('apc-rpdu')}" in text
        assert "not-the-community-1" not in text and COMMUNITY not in text
    finally:
        driver.close()


@pytest.mark.parametrize(
    ("user", "auth", "priv"),
    [
        (V3_USER, "wrong-auth-key-22", PRIV_KEY),  # USM report usmStatsWrongDigests
        (V3_USER, AUTH_KEY, "wrong-priv-key-33"),  # usmStatsDecryptionErrors
        ("nobody", AUTH_KEY, PRIV_KEY),  # usmStatsUnknownUserNames
    ],
)
def test_wrong_v3_credentials_are_refused_fatally_without_the_keys(pdus, user, auth, priv):
    # A v3 agent answers a bad key with a USM report, so unlike v2c this is a refusal, not a timeout.
    driver = outlet(pdus, "apc-rpdu", 3, version="v3", v3_user=user, v3_auth_key=auth, v3_priv_key=priv)
    try:
        with pytest.raises(DeviceRefused) as err:
            driver.state()
        assert not err.value.retryable
        for secret in (auth, priv, AUTH_KEY, PRIV_KEY):
            assert secret not in str(err.value)
    finally:
        driver.close()


@pytest.fixture(scope="module")
def lossy_pdu(command_log: CommandLog) -> Iterator[PduLab]:
    # Two-second off-period: the driver needs readings closer together than that to see a reboot it
    # sent but got no answer for. 30 % of datagrams are dropped in each direction.
    lab = serve_pdus(
        [_spec("lossy", "apc-rpdu", packet_loss=0.3, seed=20240611)], command_log, cycle_delay=2.0
    )
    yield lab
    lab.stop()


def test_thirty_percent_packet_loss_still_runs_each_action_exactly_once(lossy_pdu, log_path):
    driver = outlet(lossy_pdu, "lossy", 3, timeout=0.3, retries=12, expected_name="mac-03")
    try:
        for action, command in (
            (PowerAction.OFF, "outlet_off"),
            (PowerAction.ON, "outlet_on"),
            (PowerAction.CYCLE, "outlet_reboot"),
            (PowerAction.CYCLE, "outlet_reboot"),
        ):
            before = len(commands(log_path, "lossy"))
            done = perform_and_confirm(driver, action, timeout=20, sleep=_short)
            assert done.sent
            assert [e["command"] for e in commands(log_path, "lossy")[before:]] == [command]
        assert lossy_pdu.pdu("lossy").is_on(3)
    finally:
        driver.close()


@pytest.fixture(scope="module")
def quiet_pdu(command_log: CommandLog) -> Iterator[PduLab]:
    lab = serve_pdus([_spec("quiet", "apc-rpdu2")], command_log, cycle_delay=1.0)
    yield lab
    lab.stop()


@pytest.mark.parametrize(
    ("lost", "start", "action", "verdict"),
    [
        ("answers", PowerState.ON, PowerAction.OFF, "ran"),
        ("requests", PowerState.ON, PowerAction.OFF, "did not run"),
        ("answers", PowerState.ON, PowerAction.CYCLE, "ran"),
        ("requests", PowerState.ON, PowerAction.CYCLE, "did not run"),
        ("answers", PowerState.OFF, PowerAction.CYCLE, "ran"),
        ("requests", PowerState.OFF, PowerAction.CYCLE, "did not run"),
    ],
)
def test_an_unanswered_command_is_judged_from_the_outlet_before_it_is_sent_again(
    quiet_pdu, log_path, caplog, lost, start, action, verdict
):
    driver = outlet(quiet_pdu, "quiet", 3, timeout=0.3)
    sim = quiet_pdu.pdu("quiet")
    command = {PowerAction.OFF: "outlet_off", PowerAction.CYCLE: "outlet_reboot"}[action]
    try:
        perform_and_confirm(driver, PowerAction(start.value), timeout=10, sleep=_short)
        assert wait_until(lambda: sim.is_on(3) is (start is PowerState.ON), 5)
        before = len(commands(log_path, "quiet"))
        sim.lose_next_commands(**{lost: 1})
        with caplog.at_level("WARNING", logger="remotehands.bmc.pdu"):
            driver.cycle() if action is PowerAction.CYCLE else driver.set_state(action)
        assert [e["command"] for e in commands(log_path, "quiet")[before:]] == [command]
        assert f"no answer to {action.value} (attempt 1): it {verdict}" in caplog.text
        assert wait_until(lambda: sim.is_on(3) is (action is PowerAction.CYCLE), 5)
    finally:
        perform_and_confirm(driver, PowerAction.ON, timeout=10, sleep=_short)
        driver.close()


def test_a_reboot_that_cannot_be_judged_is_left_to_an_operator_not_sent_twice(pdus, log_path):
    # This lab's off-period (0.5 s) reads as 0 whole seconds: no reading can prove the reboot did not run.
    driver = outlet(pdus, "apc-rpdu", 6, timeout=0.3)
    try:
        before = len(commands(log_path, "apc-rpdu"))
        pdus.pdu("apc-rpdu").lose_next_commands(answers=1)
        with pytest.raises(NeedsOperator) as err:
            driver.cycle()
        assert "twice" in str(err.value)
        assert [e["command"] for e in commands(log_path, "apc-rpdu")[before:]] == ["outlet_reboot"]
        assert wait_until(lambda: pdus.pdu("apc-rpdu").is_on(6), 5)
    finally:
        driver.close()
