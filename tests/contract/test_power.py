"""The power contract: every power driver, against its simulator at the wire, behaves the same way."""

from __future__ import annotations

import time

import pytest

from remotehands.bmc.base import PowerAction, PowerDriver, PowerState, perform_and_confirm
from remotehands.errors import DeviceRefused, DeviceUnreachable
from tests.contract.target import ContractTarget


def _nosleep_short(seconds: float) -> None:
    time.sleep(min(seconds, 0.2))


def _ensure(driver: PowerDriver, state: PowerState, target: ContractTarget) -> None:
    action = PowerAction.ON if state is PowerState.ON else PowerAction.OFF
    perform_and_confirm(driver, action, timeout=target.settle + 5, sleep=_nosleep_short)


def test_is_a_power_driver(target: ContractTarget):
    driver = target.make()
    try:
        assert isinstance(driver, PowerDriver)
        assert {PowerAction.ON, PowerAction.OFF, PowerAction.CYCLE} <= driver.supported()
        assert driver.state() in (PowerState.ON, PowerState.OFF)
    finally:
        driver.close()


def test_off_then_on_each_send_exactly_one_command(target: ContractTarget):
    driver = target.make()
    try:
        _ensure(driver, PowerState.ON, target)
        offs, ons = target.received(PowerAction.OFF), target.received(PowerAction.ON)
        done = perform_and_confirm(driver, PowerAction.OFF, timeout=target.settle + 5, sleep=_nosleep_short)
        assert done.state is PowerState.OFF and done.sent
        assert target.received(PowerAction.OFF) == offs + 1
        done = perform_and_confirm(driver, PowerAction.ON, timeout=target.settle + 5, sleep=_nosleep_short)
        assert done.state is PowerState.ON and done.sent
        assert target.received(PowerAction.ON) == ons + 1
    finally:
        driver.close()


def test_on_when_on_and_off_when_off_send_nothing(target: ContractTarget):
    driver = target.make()
    try:
        _ensure(driver, PowerState.ON, target)
        ons = target.received(PowerAction.ON)
        done = perform_and_confirm(driver, PowerAction.ON, timeout=target.settle + 5, sleep=_nosleep_short)
        assert done.sent is False and done.state is PowerState.ON
        assert target.received(PowerAction.ON) == ons
        _ensure(driver, PowerState.OFF, target)
        offs = target.received(PowerAction.OFF)
        done = perform_and_confirm(driver, PowerAction.OFF, timeout=target.settle + 5, sleep=_nosleep_short)
        assert done.sent is False and done.state is PowerState.OFF
        assert target.received(PowerAction.OFF) == offs
    finally:
        _ensure(driver, PowerState.ON, target)
        driver.close()


def test_cycle_sends_one_cycle_and_comes_back_on(target: ContractTarget):
    driver = target.make()
    try:
        _ensure(driver, PowerState.ON, target)
        cycles = target.received(PowerAction.CYCLE)
        done = perform_and_confirm(driver, PowerAction.CYCLE, timeout=target.settle + 5, sleep=_nosleep_short)
        assert done.state is PowerState.ON
        assert target.received(PowerAction.CYCLE) == cycles + 1
    finally:
        driver.close()


def test_wrong_credentials_are_refused_fatally_without_the_secret(target: ContractTarget):
    driver = target.make(password="wrong-password-0")
    try:
        with pytest.raises(DeviceRefused) as err:
            driver.state()
        assert not err.value.retryable
        if target.secret:
            assert target.secret not in str(err.value)
    finally:
        driver.close()


def test_a_device_that_does_not_answer_is_unreachable_within_bounds(target: ContractTarget):
    dead_port = target.extra["dead_port"]
    assert callable(dead_port)
    driver = target.make(port=dead_port(), timeout=1.0)
    start = time.monotonic()
    try:
        with pytest.raises(DeviceUnreachable) as err:
            driver.state()
        assert err.value.retryable
        assert "127.0.0.1" in str(err.value)
    finally:
        driver.close()
    assert time.monotonic() - start < 15
