"""PowerStoreArray against the lab's PowerStore simulator, at the wire (HTTPS on 127.0.0.1, the lab CA pinned)."""

from __future__ import annotations

import json
import logging
import re
import secrets
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from remotehands.errors import DeviceRefused, DeviceUnreachable, InvalidRequest
from remotehands.inventory.models import Credentials, StorageArray
from remotehands.lab.array_powerstore import PowerStoreSim, lab_powerstore
from remotehands.lab.bmc_sim import CommandLog
from remotehands.lab.lab_ca import issue_lab_tls
from remotehands.lab.redfish_sim_http import TlsJsonServer
from remotehands.lab.san import San
from remotehands.storage.base import GiB
from remotehands.storage.powerstore import PowerStoreArray

TiB = 1024 * GiB
USER = "admin"
PASSWORD = "ps-" + secrets.token_urlsafe(12)
PASSWORD_VAR = "RH_TEST_PSTORE_PASSWORD"
HOSTS = ("lnx-01", "lnx-02")
VOLUME = "lnx-xfs-01"


@dataclass
class Lab:
    sim: PowerStoreSim
    san: San
    port: int
    ca_file: Path
    log_path: Path

    def array(self, **changes: object) -> StorageArray:
        fields: dict[str, object] = {
            "name": "san-pstore-01",
            "platform": "powerstore",
            "site": "lab",
            "mgmt_address": "127.0.0.1",
            "port": self.port,
            "credentials": Credentials(username=USER, password=f"env:{PASSWORD_VAR}"),
            "tls_ca": str(self.ca_file),
        }
        return StorageArray.model_validate(fields | changes)

    def resizes(self) -> list[dict[str, object]]:
        lines = [json.loads(line) for line in self.log_path.read_text().splitlines()]
        return [line for line in lines if line["command"] == "resize"]

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    monkeypatch.setenv(PASSWORD_VAR, PASSWORD)
    tls = issue_lab_tls(tmp_path / "tls")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.cert_file, tls.key_file)
    san = San()
    command_log = CommandLog(tmp_path / "array-log.jsonl")
    sim = lab_powerstore(san, USER, PASSWORD, HOSTS, command_log)
    server = TlsJsonServer(("127.0.0.1", 0), sim, context)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Lab(sim, san, server.server_address[1], tls.ca_file, tmp_path / "array-log.jsonl")
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()
        server.close_connections()
        command_log.close()


@pytest.fixture
def driver(lab: Lab) -> Iterator[PowerStoreArray]:
    array = PowerStoreArray(lab.array())
    yield array
    array.close()


def test_volume_is_found_with_its_naa_and_size(lab: Lab, driver: PowerStoreArray) -> None:
    lun = driver.lun(VOLUME)
    (san_lun,) = lab.san.luns.values()
    assert re.fullmatch(r"naa\.68ccf098[0-9a-f]{24}", lun.naa)
    assert lun.naa == san_lun.naa
    assert (lun.name, lun.size) == (VOLUME, 100 * GiB)
    assert lab.san.luns_of("lnx-02") == [san_lun]


def test_unknown_volume_is_invalid_request_naming_lun_and_close_names(driver: PowerStoreArray) -> None:
    with pytest.raises(InvalidRequest) as caught:
        driver.lun("lnx-xfs-02")
    assert "lun" in str(caught.value)
    assert VOLUME in str(caught.value)
    # the API filters case-insensitively; only the exact name is the volume
    with pytest.raises(InvalidRequest):
        driver.lun(VOLUME.upper())


def test_room_is_the_appliance_free_space_and_the_256_tb_limit(driver: PowerStoreArray) -> None:
    room = driver.room(driver.lun(VOLUME))
    assert room.free == 12 * TiB - (7 * TiB + 512 * GiB)
    assert room.max_size == 256 * TiB
    assert room.container == "appliance A1 of san-pstore-01"


def test_resize_grows_the_volume_and_its_lun(lab: Lab, driver: PowerStoreArray) -> None:
    driver.resize(driver.lun(VOLUME), 150 * GiB)
    assert driver.lun(VOLUME).size == 150 * GiB
    assert lab.sim.volume_size(VOLUME) == 150 * GiB
    assert next(iter(lab.san.luns.values())).size == 150 * GiB
    assert [(e["bmc"], e["lun"], e["size"]) for e in lab.resizes()] == [("san-pstore-01", VOLUME, 150 * GiB)]


def test_a_patch_without_the_csrf_token_is_refused(lab: Lab) -> None:
    with httpx.Client(base_url=lab.base_url, verify=ssl.create_default_context(cafile=lab.ca_file)) as client:
        login = client.get("/api/rest/login_session", auth=(USER, PASSWORD))
        assert login.status_code == 200
        token = login.headers["DELL-EMC-TOKEN"]
        found = client.get("/api/rest/volume", params={"name": f"eq.{VOLUME}"})
        assert found.json() == [{"id": found.json()[0]["id"]}]  # no select: only the id
        volume_id = found.json()[0]["id"]
        refused = client.patch(f"/api/rest/volume/{volume_id}", json={"size": 150 * GiB})
        assert refused.status_code == 403
        (message,) = refused.json()["messages"]
        assert message["severity"] == "Error"
        assert "DELL-EMC-TOKEN" in message["message_l10n"]
        assert lab.sim.volume_size(VOLUME) == 100 * GiB
        done = client.patch(
            f"/api/rest/volume/{volume_id}", json={"size": 150 * GiB}, headers={"DELL-EMC-TOKEN": token}
        )
        assert done.status_code == 204
        assert client.post("/api/rest/logout").status_code == 204
        assert client.get("/api/rest/volume").status_code == 401


def test_shrinking_is_refused_with_the_arrays_message(lab: Lab, driver: PowerStoreArray) -> None:
    with pytest.raises(DeviceRefused) as caught:
        driver.resize(driver.lun(VOLUME), 50 * GiB)
    assert "must be greater than its size" in str(caught.value)
    assert lab.sim.volume_size(VOLUME) == 100 * GiB
    assert lab.resizes() == []


@pytest.mark.parametrize("size", [50 * TiB, 300 * TiB])
def test_growing_past_the_appliance_or_the_limit_is_refused(
    lab: Lab, driver: PowerStoreArray, size: int
) -> None:
    with pytest.raises(DeviceRefused) as caught:
        driver.resize(driver.lun(VOLUME), size)
    assert ("free physical space" if size < 256 * TiB else "property size") in str(caught.value)
    assert lab.sim.volume_size(VOLUME) == 100 * GiB


def test_wrong_password_is_refused_and_never_shown(
    lab: Lab, driver: PowerStoreArray, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "wrong-" + secrets.token_urlsafe(12)
    monkeypatch.setenv(PASSWORD_VAR, wrong)
    with pytest.raises(DeviceRefused) as caught:
        driver.lun(VOLUME)
    assert "401" in str(caught.value)
    for text in (str(caught.value), caught.value.message, repr(caught.value), str(caught.value.fix)):
        assert wrong not in text
        assert PASSWORD not in text
    assert lab.sim.open_sessions() == 0


def test_a_ca_that_is_not_the_labs_is_refused_as_tls(lab: Lab, tmp_path: Path) -> None:
    other = issue_lab_tls(tmp_path / "other-ca", common_name="not the lab CA")
    array = PowerStoreArray(lab.array(tls_ca=str(other.ca_file)))
    try:
        with pytest.raises(DeviceRefused) as caught:
            array.lun(VOLUME)
        assert "TLS" in str(caught.value)
    finally:
        array.close()
    assert lab.sim.open_sessions() == 0


def test_no_io_until_first_use(lab: Lab) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    array = PowerStoreArray(lab.array(port=dead))  # must not fail here
    with pytest.raises(DeviceUnreachable):
        array.lun(VOLUME)
    array.close()


def test_resize_error_is_unreachable_with_the_arrays_message_and_changes_nothing(
    lab: Lab, driver: PowerStoreArray
) -> None:
    lun = driver.lun(VOLUME)
    lab.sim.set_fault("resize_error", True)
    with pytest.raises(DeviceUnreachable) as caught:
        driver.resize(lun, 150 * GiB)
    assert "500" in str(caught.value)
    assert "An internal error occurred" in str(caught.value)
    assert driver.lun(VOLUME).size == 100 * GiB
    assert lab.resizes() == []
    driver.resize(lun, 150 * GiB)  # fired once
    assert driver.lun(VOLUME).size == 150 * GiB


def test_error_after_resize_hides_the_volume_until_cleared(lab: Lab, driver: PowerStoreArray) -> None:
    lun = driver.lun(VOLUME)
    lab.sim.set_fault("error_after_resize", True)
    with pytest.raises(DeviceUnreachable):
        driver.resize(lun, 150 * GiB)
    assert lab.sim.volume_size(VOLUME) == 150 * GiB  # applied, though answered 500
    for _ in range(2):
        with pytest.raises(DeviceUnreachable):
            driver.lun(VOLUME)
    with pytest.raises(DeviceUnreachable):
        driver.room(lun)
    lab.sim.set_fault("error_after_resize", False)
    assert driver.lun(VOLUME).size == 150 * GiB
    assert len(lab.resizes()) == 1


def _session_with_logs(lab: Lab, caplog: pytest.LogCaptureFixture) -> list[str]:
    """Log in, read, grow, get refused and log out at DEBUG; the secrets that must not be logged."""
    caplog.set_level(logging.DEBUG)
    array = PowerStoreArray(lab.array())
    lun = array.lun(VOLUME)
    array.room(lun)
    array.resize(lun, 150 * GiB)
    with pytest.raises(DeviceRefused):
        array.resize(lun, 100 * GiB)
    assert lab.sim.open_sessions() == 1
    array.close()
    assert lab.sim.open_sessions() == 0
    issued = lab.sim.issued_secrets()
    assert len(issued) == 2  # one token, one cookie: one login
    return [PASSWORD, *issued]


def test_close_logs_out_and_no_secret_reaches_a_log(lab: Lab, caplog: pytest.LogCaptureFixture) -> None:
    secrets_ = _session_with_logs(lab, caplog)
    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("httpcore"))
    assert "PATCH /api/rest/volume/" in logged
    for secret in secrets_:
        assert secret not in logged


def test_httpcore_debug_trace_does_not_show_the_login_secrets(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    secrets_ = _session_with_logs(lab, caplog)
    for secret in secrets_:
        assert secret not in caplog.text


def test_unknown_fault_names_are_refused(lab: Lab) -> None:
    assert sorted(PowerStoreSim.FAULTS) == ["error_after_resize", "resize_error"]
    with pytest.raises(ValueError, match="resize_error"):
        lab.sim.set_fault("disk_full", True)
