"""PureArray against the lab's FlashArray simulator, at the wire (HTTPS on 127.0.0.1, the lab CA pinned)."""

from __future__ import annotations

import json
import logging
import secrets
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from remotehands.errors import DeviceRefused, DeviceUnreachable, InvalidRequest
from remotehands.inventory.models import Credentials, StorageArray
from remotehands.lab.array_pure import (
    ERROR_AFTER_RESIZE,
    FAULTS,
    INTERNAL,
    RESIZE_ERROR,
    PureSim,
    lab_pure,
)
from remotehands.lab.bmc_sim import CommandLog
from remotehands.lab.lab_ca import LabTls, issue_lab_tls
from remotehands.lab.redfish_sim_http import TlsJsonServer
from remotehands.lab.san import San
from remotehands.storage.base import GiB
from remotehands.storage.pure import MAX_VOLUME_SIZE, PureArray, pick_version

TiB = 1024 * GiB
TOKEN_ENV = "RH_TEST_PURE_API_TOKEN"
VOLUME = "lnx-data-01"


@dataclass
class PureLab:
    sim: PureSim
    san: San
    port: int
    ca_file: Path
    token: str
    log_path: Path

    def resizes(self) -> list[dict[str, object]]:
        lines = [json.loads(line) for line in self.log_path.read_text().splitlines()]
        return [line for line in lines if line["command"] == "resize"]

    def size(self) -> int:
        return self.sim.volume(VOLUME).lun.size


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[LabTls, ssl.SSLContext]:
    files = issue_lab_tls(tmp_path_factory.mktemp("pure-tls"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.cert_file, files.key_file)
    return files, context


@pytest.fixture
def pure(
    tmp_path: Path, tls: tuple[LabTls, ssl.SSLContext], monkeypatch: pytest.MonkeyPatch
) -> Iterator[PureLab]:
    files, context = tls
    token = "pure-" + secrets.token_hex(16)
    monkeypatch.setenv(TOKEN_ENV, token)
    san = San()
    command_log = CommandLog(tmp_path / "array-log.jsonl")
    sim = lab_pure(san, token, ("lnx-01",), command_log)
    server = TlsJsonServer(("127.0.0.1", 0), sim, context)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield PureLab(sim, san, server.server_address[1], files.ca_file, token, tmp_path / "array-log.jsonl")
    finally:
        server.shutdown()
        server.close_connections()
        server.server_close()
        thread.join(5)
        command_log.close()


def array_of(lab: PureLab, *, ca_file: Path | None = None) -> StorageArray:
    return StorageArray(
        name="san-pure-01",
        platform="pure",
        site="lab",
        mgmt_address="127.0.0.1",
        port=lab.port,
        credentials=Credentials(username="pureuser", password=f"env:{TOKEN_ENV}"),
        tls_ca=str(ca_file or lab.ca_file),
    )


@pytest.fixture
def driver(pure: PureLab) -> Iterator[PureArray]:
    array = PureArray(array_of(pure))
    yield array
    array.close()


def test_volume_found_with_its_naa_and_size(pure: PureLab, driver: PureArray) -> None:
    lun = driver.lun(VOLUME)
    volume = pure.sim.volume(VOLUME)
    assert lun.naa == "naa.624a9370" + volume.serial.lower()
    assert len(lun.naa) == 36 and lun.naa in pure.san.luns
    assert pure.san.luns[lun.naa].hosts == ("lnx-01",)
    assert (lun.id, lun.name, lun.size) == (volume.id, VOLUME, 100 * GiB)
    assert driver.api_version == "2.26"  # the highest 2.x the array offers (it also lists 1.x)


def test_no_network_before_first_use(pure: PureLab) -> None:
    array = PureArray(array_of(pure, ca_file=Path("/nonexistent/ca.pem")))
    assert array.api_version is None
    array.close()  # nothing opened, nothing to log out of


def test_version_negotiation(pure: PureLab, driver: PureArray) -> None:
    assert pick_version(["1.19", "2.0", "2.1", "2.2", "2.10", "2.9"]) == "2.10"
    assert pick_version(["1.19", "2.0", "2.1", "3.0"]) is None
    pure.sim.api_versions = tuple(f"2.{n}" for n in range(41))
    driver.lun(VOLUME)
    assert driver.api_version == "2.26"  # never newer than the driver knows
    pure.sim.api_versions = ("1.17", "1.19")
    old = PureArray(array_of(pure))
    with pytest.raises(DeviceRefused, match="offers no REST version"):
        old.lun(VOLUME)
    old.close()


def test_unknown_volume_names_the_field_and_close_names(driver: PureArray) -> None:
    with pytest.raises(InvalidRequest) as caught:
        driver.lun("lnx-data-1")
    assert caught.value.message.startswith("lun:")
    assert "did you mean lnx-data-01" in str(caught.value)
    with pytest.raises(InvalidRequest, match="lun"):
        driver.lun("x' or name='*")


def test_destroyed_volume_counts_as_absent(pure: PureLab, driver: PureArray) -> None:
    pure.sim.add_volume("old-data", 10 * GiB)
    assert driver.lun("old-data").size == 10 * GiB
    pure.sim.destroy_volume("old-data")
    with pytest.raises(InvalidRequest, match="has no volume 'old-data'"):
        driver.lun("old-data")


def test_room_is_free_physical_space(driver: PureArray) -> None:
    lun = driver.lun(VOLUME)
    room = driver.room(lun)
    assert room.free == 1 * TiB
    assert room.max_size == MAX_VOLUME_SIZE == 4 * 1024**5
    assert room.container == "array san-pure-01"
    assert 150 * GiB - lun.size <= room.free  # the lab's growth that fits
    assert 50 * TiB - lun.size > room.free  # and the one that does not


def test_resize_grows_the_volume(pure: PureLab, driver: PureArray, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    lun = driver.lun(VOLUME)
    driver.resize(lun, 150 * GiB)
    assert pure.size() == 150 * GiB
    assert pure.san.luns[lun.naa].size == 150 * GiB
    assert driver.lun(VOLUME).size == 150 * GiB
    assert [(e["bmc"], e["lun"], e["size"]) for e in pure.resizes()] == [("san-pure-01", VOLUME, 150 * GiB)]
    driver.close()
    assert pure.token not in caplog.text


def test_shrink_is_refused_by_the_array(pure: PureLab, driver: PureArray) -> None:
    lun = driver.lun(VOLUME)
    with pytest.raises(DeviceRefused) as caught:
        driver.resize(lun, 50 * GiB)
    assert "Implicit truncation not permitted." in str(caught.value)
    assert "answered 400" in str(caught.value)
    assert pure.size() == 100 * GiB
    assert pure.resizes() == []


def test_growth_beyond_the_largest_volume_is_refused(pure: PureLab, driver: PureArray) -> None:
    lun = driver.lun(VOLUME)
    with pytest.raises(DeviceRefused, match="exceeds the maximum volume size"):
        driver.resize(lun, MAX_VOLUME_SIZE + 512)
    assert pure.size() == 100 * GiB


def test_wrong_token_is_refused_and_never_shown(
    pure: PureLab, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-" + secrets.token_hex(16)
    monkeypatch.setenv(TOKEN_ENV, wrong)
    array = PureArray(array_of(pure))
    with pytest.raises(DeviceRefused) as caught:
        array.lun(VOLUME)
    array.close()
    text = str(caught.value)
    assert "Unable to list user for API token." in text
    assert f"env:{TOKEN_ENV}" in text  # the fix names the reference, not the value
    for secret in (wrong, pure.token):
        assert secret not in text
        assert secret not in repr(caught.value.args)
        assert secret not in caplog.text


def test_a_ca_that_is_not_the_labs_is_refused(pure: PureLab, tmp_path: Path) -> None:
    other = issue_lab_tls(tmp_path / "other-ca", common_name="not the lab CA")
    array = PureArray(array_of(pure, ca_file=other.ca_file))
    with pytest.raises(DeviceRefused, match="TLS certificate not trusted"):
        array.lun(VOLUME)
    array.close()


def test_resize_error_changes_nothing_and_fires_once(pure: PureLab, driver: PureArray) -> None:
    lun = driver.lun(VOLUME)
    pure.sim.set_fault(RESIZE_ERROR, True)
    with pytest.raises(DeviceUnreachable) as caught:
        driver.resize(lun, 150 * GiB)
    assert INTERNAL in str(caught.value) and "answered 500" in str(caught.value)
    assert pure.size() == 100 * GiB and driver.lun(VOLUME).size == 100 * GiB
    assert pure.resizes() == []
    driver.resize(lun, 150 * GiB)
    assert pure.size() == 150 * GiB


def test_error_after_resize_hides_the_volume_until_cleared(pure: PureLab, driver: PureArray) -> None:
    lun = driver.lun(VOLUME)
    pure.sim.set_fault(ERROR_AFTER_RESIZE, True)
    with pytest.raises(DeviceUnreachable, match="answered 500"):
        driver.resize(lun, 150 * GiB)
    assert pure.size() == 150 * GiB  # applied, although the answer was an error
    assert len(pure.resizes()) == 1
    for _ in range(2):
        with pytest.raises(DeviceUnreachable, match=INTERNAL):
            driver.lun(VOLUME)
    assert driver.room(lun).free == 1 * TiB  # the array itself still answers
    pure.sim.set_fault(ERROR_AFTER_RESIZE, False)
    assert driver.lun(VOLUME).size == 150 * GiB


def test_sim_sessions_and_error_bodies_at_the_wire(pure: PureLab) -> None:
    base = f"https://127.0.0.1:{pure.port}"
    with httpx.Client(base_url=base, verify=ssl.create_default_context(cafile=str(pure.ca_file))) as client:
        versions = client.get("/api/api_version").json()["version"]
        assert "1.19" in versions and versions[-1] == "2.26"
        refused = client.get("/api/2.26/volumes")
        assert refused.status_code == 401
        assert refused.json() == {"errors": [{"message": "Invalid session."}]}
        login = client.post("/api/2.26/login", headers={"api-token": pure.token})
        assert login.status_code == 200 and login.json() == {"items": [{"username": "pureuser"}]}
        session = {"x-auth-token": login.headers["x-auth-token"]}
        missing = client.get("/api/2.26/volumes", params={"names": "nope"}, headers=session)
        assert missing.status_code == 400
        assert missing.json() == {"errors": [{"context": "nope", "message": "Volume does not exist."}]}
        item = client.get("/api/2.26/volumes", params={"names": VOLUME}, headers=session).json()["items"][0]
        assert len(item["serial"]) == 24 and item["serial"] == item["serial"].upper()
        assert (item["provisioned"], item["destroyed"]) == (100 * GiB, False)
        assert item["space"]["total_provisioned"] == 100 * GiB
        space = client.get("/api/2.26/arrays/space", headers=session).json()["items"][0]
        assert space["capacity"] - space["space"]["total_used"] == 1 * TiB
        assert space["space"]["total_physical"] == space["space"]["total_used"]
        shrunk = client.patch(
            "/api/2.26/volumes",
            params={"names": VOLUME, "truncate": "true"},
            json={"provisioned": 80 * GiB},
            headers=session,
        )
        assert shrunk.status_code == 200 and shrunk.json()["items"][0]["provisioned"] == 80 * GiB
        assert client.post("/api/2.26/logout", headers=session).status_code == 200
        assert client.get("/api/2.26/volumes", headers=session).status_code == 401
    assert pure.size() == 80 * GiB and len(pure.resizes()) == 1


def test_faults_are_declared() -> None:
    assert frozenset({RESIZE_ERROR, ERROR_AFTER_RESIZE}) == FAULTS
    with pytest.raises(ValueError, match="unknown Pure fault"):
        PureSim("a", San(), "token").set_fault("disk_full", True)
