"""RedfishOutlet against the rack PDUs of the lab's Redfish simulator, at the wire (HTTPS, the lab CA pinned)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from remotehands.bmc.base import OutletIdentity, PowerAction, PowerDriver, PowerState, perform_and_confirm
from remotehands.bmc.redfish_outlet import RedfishOutlet
from remotehands.bmc.redfish_pool import RedfishSessionPool
from remotehands.errors import DeviceRefused
from remotehands.lab.bmc_sim import CommandLog
from remotehands.lab.process import read_bmc_log
from remotehands.lab.redfish_sim import RedfishLab, serve_redfish
from remotehands.lab.redfish_sim_pdu import PduOptions

pytestmark = pytest.mark.slow

PASSWORD = "pdu-" + secrets.token_urlsafe(9)
CYCLE_DELAY = 0.4
PDUS = {"pdu-a": ["mac-01", "mac-02", "mac-03", "mac-04"], "pdu-b": ["mac-11", "mac-12"]}


class Lab:
    def __init__(self, sim: RedfishLab, log_path: Path) -> None:
        self.sim = sim
        self.log_path = log_path

    def lines(self, pdu: str, outlet: str, command: str | None = None) -> list[dict[str, object]]:
        return [
            e for e in read_bmc_log(self.log_path, host=pdu, command=command) if e.get("outlet") == outlet
        ]

    def commands(self, pdu: str, outlet: str) -> list[str]:
        return [str(e["command"]) for e in self.lines(pdu, outlet) if e["command"] != "outlet_get"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    where = tmp_path_factory.mktemp("redfish-pdu")
    command_log = CommandLog(where / "bmc-log.jsonl")
    sim = serve_redfish(
        [],
        command_log,
        where / "ca",
        cycle_delay=CYCLE_DELAY,
        password=PASSWORD,
        pdus=PDUS,
        pdu_options={"pdu-b": PduOptions(power_cycle=False)},
    )
    try:
        yield Lab(sim, where / "bmc-log.jsonl")
    finally:
        sim.stop()
        command_log.close()


@pytest.fixture
def outlet(lab: Lab) -> Iterator[object]:
    made: list[RedfishOutlet] = []

    def make(number: int | str, pdu_id: str | None = "pdu-a", **options: object) -> RedfishOutlet:
        options.setdefault("password", PASSWORD)
        driver = RedfishOutlet(
            "127.0.0.1",
            lab.sim.port,
            "admin",
            str(options.pop("password")),
            outlet=number,
            pdu_id=pdu_id,
            tls_ca=str(lab.sim.ca_file),
            timeout=3.0,
            **options,  # type: ignore[arg-type]
        )
        made.append(driver)
        return driver

    yield make
    for driver in made:
        driver.close()


def test_state_name_and_what_it_supports(lab, outlet):
    driver = outlet(2)
    assert isinstance(driver, PowerDriver) and isinstance(driver, OutletIdentity)
    assert driver.state() is PowerState.ON
    assert driver.outlet_name() == "mac-02"
    assert driver.supported() == frozenset({PowerAction.ON, PowerAction.OFF, PowerAction.CYCLE})
    assert len(lab.lines("pdu-a", "2", "outlet_get")) == 2  # the first read found the outlet too
    assert lab.commands("pdu-a", "2") == []


def test_off_and_on_send_one_power_control_each(lab, outlet):
    driver = outlet(1, expected_name="mac-01")
    done = perform_and_confirm(driver, PowerAction.OFF, timeout=5, first_wait=0.05)
    assert (done.state, done.sent) == (PowerState.OFF, True)
    assert perform_and_confirm(driver, PowerAction.OFF, timeout=5).sent is False
    done = perform_and_confirm(driver, PowerAction.ON, timeout=5, first_wait=0.05)
    assert (done.state, done.sent) == (PowerState.ON, True)
    assert lab.commands("pdu-a", "1") == ["outlet_off", "outlet_on"]
    assert [e["status"] for e in lab.lines("pdu-a", "1", "outlet_off")] == [204]
    with pytest.raises(DeviceRefused, match="cannot soft_off"):
        driver.set_state(PowerAction.SOFT_OFF)


def test_cycle_is_one_power_cycle_when_the_pdu_offers_it(lab, outlet):
    driver = outlet(3, expected_name="mac-03")
    done = perform_and_confirm(driver, PowerAction.CYCLE, timeout=5, first_wait=0.05)
    assert (done.state, done.sent) == (PowerState.ON, True)
    assert lab.commands("pdu-a", "3") == ["outlet_power_cycle"]


def test_cycle_falls_back_to_off_wait_on_without_power_cycle(lab, outlet):
    driver = outlet(1, pdu_id="pdu-b", expected_name="mac-11", cycle_off_seconds=0.3)
    assert PowerAction.CYCLE in driver.supported()
    start = time.monotonic()
    done = perform_and_confirm(driver, PowerAction.CYCLE, timeout=5, first_wait=0.05)
    assert (done.state, done.sent) == (PowerState.ON, True)
    assert time.monotonic() - start >= 0.3
    assert lab.commands("pdu-b", "1") == ["outlet_off", "outlet_on"]
    off, on = lab.lines("pdu-b", "1", "outlet_off")[0], lab.lines("pdu-b", "1", "outlet_on")[0]
    assert float(str(on["ts"])) - float(str(off["ts"])) >= 0.3


def test_a_name_mismatch_is_refused_before_anything_is_sent(lab, outlet):
    driver = outlet(4, expected_name="mac-99")
    for act in (lambda: driver.set_state(PowerAction.OFF), driver.cycle):
        with pytest.raises(
            DeviceRefused, match=r"named 'mac-04'.*expects 'mac-99'; nothing was sent"
        ) as caught:
            act()
        assert not caught.value.retryable
    assert lab.commands("pdu-a", "4") == []
    assert driver.state() is PowerState.ON
    # the outlet's Name (not only its UserLabel) identifies it too
    by_name = outlet(4, expected_name="Outlet 4")
    perform_and_confirm(by_name, PowerAction.ON, timeout=5)
    by_name.cycle()
    assert lab.commands("pdu-a", "4") == ["outlet_power_cycle"]


def test_wrong_password_is_refused_without_showing_it(lab, outlet):
    wrong = "wrong-" + secrets.token_hex(6)
    driver = outlet(2, password=wrong)
    with pytest.raises(DeviceRefused, match="refused the credentials") as caught:
        driver.state()
    assert not caught.value.retryable
    assert wrong not in str(caught.value) and PASSWORD not in str(caught.value)
    assert lab.commands("pdu-a", "2") == []


def test_unknown_pdu_outlet_or_an_ambiguous_service_is_refused(outlet):
    with pytest.raises(DeviceRefused, match=r"lists 2 rack PDUs, not one \(it has: pdu-a, pdu-b\)"):
        outlet(1, pdu_id=None).state()
    with pytest.raises(DeviceRefused, match=r"no outlet '9' \(it has: 1, 2, 3, 4\)"):
        outlet(9).state()
    with pytest.raises(DeviceRefused, match=r"no rack PDU 'pdu-z' \(it has: pdu-a, pdu-b\)"):
        outlet(1, pdu_id="pdu-z").state()


def test_outlets_of_one_pdu_share_a_pooled_session(lab, outlet):
    logins = len(read_bmc_log(lab.log_path, host="redfish", command="session_login"))
    with RedfishSessionPool() as pool:
        drivers = [outlet(n, sessions=pool) for n in (1, 2, 3)]
        assert [d.state() for d in drivers] == [PowerState.ON] * 3
    assert len(read_bmc_log(lab.log_path, host="redfish", command="session_login")) == logins + 1


def test_a_host_on_a_redfish_pdu_outlet_is_cycled_by_a_job(lab: Lab, tmp_path: Path) -> None:
    """Inventory (kind pdu, platform redfish) -> factory -> RedfishOutlet -> off, dwell, on, each once."""
    import yaml

    from remotehands.config import Settings
    from remotehands.runtime import Runtime
    from tests.conftest import job_state, open_ticket, run_ticket

    secret = tmp_path / "pdu_password"
    secret.write_text(PASSWORD + "\n")
    inv = tmp_path / "inventory"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "group_vars" / "all.yml").write_text(
        yaml.safe_dump(
            {"sites": {"lab1": {"description": "x"}}, "subscriptions": {"acme-0001": {"customer": "acme"}}}
        )
    )
    hosts = {
        "rfpdu-a": {
            "ansible_host": "127.0.0.1",
            "kind": "pdu",
            "platform": "redfish",
            "port": lab.sim.port,
            "redfish_id": "pdu-a",
            "tls_ca": str(lab.sim.ca_file),
            "credentials": {"username": lab.sim.username, "password": f"file:{secret}"},
        },
        "box-01": {
            "ansible_host": "127.0.0.1",
            "kind": "linux",
            "serial_number": "BOX01",
            "subscription": "acme-0001",
            "power": {"type": "pdu-outlet", "pdu": "rfpdu-a", "outlet": 3, "outlet_name": "mac-03"},
        },
    }
    doc = {"all": {"children": {"lab1": {"vars": {"site": "lab1", "rack": "r1"}, "hosts": hosts}}}}
    (inv / "hosts.yml").write_text(yaml.safe_dump(doc))
    rt = Runtime(
        Settings(db_url=f"sqlite:///{tmp_path / 'j.db'}", inventory=inv, log_file=tmp_path / "l.log")
    )
    before = lab.commands("pdu-a", "3")
    ticket_id = open_ticket(rt, "box-01", params={"off_seconds": 0.2})
    [job_id] = run_ticket(rt, ticket_id)
    assert job_state(rt, job_id) == "succeeded"
    assert lab.commands("pdu-a", "3")[len(before) :] == ["outlet_off", "outlet_on"]
    rt.db.dispose()
