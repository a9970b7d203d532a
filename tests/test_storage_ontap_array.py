"""OntapArray against the lab's ONTAP simulator, at the wire (HTTPS on 127.0.0.1, the lab CA pinned)."""

from __future__ import annotations

import secrets
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from remotehands.errors import DeviceRefused, DeviceUnreachable, InvalidRequest
from remotehands.inventory.models import Credentials, StorageArray
from remotehands.lab.array_ontap import OntapSim, lab_ontap, serve, stop_serving
from remotehands.lab.lab_ca import issue_lab_tls
from remotehands.lab.san import San
from remotehands.storage.base import GiB
from remotehands.storage.ontap import OntapArray

USER = "rh-storage"
PASSWORD = "ontap-" + secrets.token_urlsafe(12)
LUN0 = "/vol/vol_esx01/lun0"
HOSTS = ("esx-01", "esx-02")


class CommandLog:
    """The lab's command log interface, kept in memory."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def write(self, device: str, command: str, **extra: Any) -> None:
        self.lines.append({"bmc": device, "command": command, **extra})


class Lab:
    def __init__(self, sim: OntapSim, san: San, log: CommandLog, port: int, ca: Path) -> None:
        self.sim, self.san, self.log, self.port, self.ca = sim, san, log, port, ca

    def array(self, *, ca: Path | None = None, password_var: str = "RH_TEST_ONTAP_PASSWORD") -> StorageArray:
        return StorageArray(
            name="san-ontap-01",
            platform="ontap",
            site="lab",
            mgmt_address="127.0.0.1",
            port=self.port,
            credentials=Credentials(username=USER, password=f"env:{password_var}"),
            tls_ca=str(ca or self.ca),
        )

    def san_lun(self) -> Any:
        (lun,) = self.san.luns.values()
        return lun


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    monkeypatch.setenv("RH_TEST_ONTAP_PASSWORD", PASSWORD)
    tls = issue_lab_tls(tmp_path / "tls")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.cert_file, tls.key_file)
    san, log = San(), CommandLog()
    sim = lab_ontap(san, USER, PASSWORD, HOSTS, log)
    server = serve(sim, context)
    try:
        yield Lab(sim, san, log, server.server_address[1], tls.ca_file)
    finally:
        stop_serving(server)


@pytest.fixture
def array(lab: Lab) -> Iterator[OntapArray]:
    driver = OntapArray(lab.array())
    yield driver
    driver.close()


def test_lun_is_found_with_its_naa_and_size(lab: Lab, array: OntapArray) -> None:
    lun = array.lun(LUN0)
    san_lun = lab.san_lun()
    assert lun.name == LUN0
    assert lun.size == 100 * GiB
    assert lun.naa == san_lun.naa
    assert lun.naa.startswith("naa.600a0980") and len(lun.naa) == 36
    assert san_lun.hosts == HOSTS


def test_a_lun_may_be_named_with_its_svm(lab: Lab, array: OntapArray) -> None:
    """SVM:/vol/VOL/LUN finds the LUN in that SVM only (volume names are unique per SVM, not per array)."""
    svm = lab.sim.svm["name"]
    assert array.lun(f"{svm}:{LUN0}").naa == array.lun(LUN0).naa
    with pytest.raises(InvalidRequest, match="has no LUN"):
        array.lun(f"svm_other:{LUN0}")


def test_unknown_lun_is_an_invalid_request_naming_lun_and_close_names(array: OntapArray) -> None:
    with pytest.raises(InvalidRequest) as caught:
        array.lun("/vol/vol_esx01/lun1")
    assert "lun" in str(caught.value).split(":")[0]
    assert LUN0 in str(caught.value)


def test_room_is_the_volume_space_and_the_max_resize_size(array: OntapArray) -> None:
    room = array.room(array.lun(LUN0))
    assert room.free == 400 * GiB
    assert room.max_size == 16 * 1024**4
    assert room.container == "volume vol_esx01 (aggregate aggr1)"


def test_resize_grows_the_lun_on_the_array_and_on_the_san(lab: Lab, array: OntapArray) -> None:
    lun = array.lun(LUN0)
    array.resize(lun, 150 * GiB)
    assert array.lun(LUN0).size == 150 * GiB
    assert lab.sim.lun_size(LUN0) == 150 * GiB
    assert lab.san_lun().size == 150 * GiB
    assert array.room(lun).free == 350 * GiB
    assert lab.log.lines == [{"bmc": "san-ontap-01", "command": "resize", "lun": LUN0, "size": 150 * GiB}]


def test_growing_beyond_the_volume_is_refused_with_ontaps_message(lab: Lab, array: OntapArray) -> None:
    lun = array.lun(LUN0)
    with pytest.raises(DeviceRefused) as caught:
        array.resize(lun, 600 * GiB)
    assert 'not enough space in volume "vol_esx01"' in str(caught.value)
    assert lab.sim.lun_size(LUN0) == 100 * GiB
    assert lab.sim.volume_available("vol_esx01") == 400 * GiB
    assert lab.log.lines == []


def test_growing_beyond_the_max_resize_size_is_refused(lab: Lab) -> None:
    aggr = lab.sim.add_aggregate("aggr2", 1024 * GiB, 1024 * GiB)
    volume = lab.sim.add_volume("vol_old", aggr, 200 * GiB, 150 * GiB)
    lab.sim.add_lun(volume, "lun0", 10 * GiB, serial="wpEzy]QpkWFm", max_resize_size=64 * GiB)
    driver = OntapArray(lab.array())
    try:
        lun = driver.lun("/vol/vol_old/lun0")
        assert lun.naa == "naa.600a0980" + "7770457a795d51706b57466d"
        assert driver.room(lun).max_size == 64 * GiB
        with pytest.raises(DeviceRefused, match="maximum resize size"):
            driver.resize(lun, 100 * GiB)
    finally:
        driver.close()
    assert lab.sim.lun_size("/vol/vol_old/lun0") == 10 * GiB


def test_the_simulator_speaks_ontaps_rest_shapes(lab: Lab) -> None:
    """What the driver relies on, read raw: collections, the CLI passthrough's rows, errors."""
    verify = ssl.create_default_context(cafile=str(lab.ca))
    with httpx.Client(base_url=f"https://127.0.0.1:{lab.port}", verify=verify) as client:
        assert client.get("/api/cluster").json() == {
            "error": {"message": "not authorized for that command", "code": "6"}
        }
        client.auth = httpx.BasicAuth(USER, PASSWORD)
        luns = client.get("/api/storage/luns").json()
        assert luns["num_records"] == 1 and set(luns["records"][0]) == {"uuid", "name"}
        rows = client.get("/api/private/cli/lun", params={"path": LUN0, "fields": "max-resize-size"}).json()
        assert rows == {
            "records": [{"vserver": "svm_san_ontap_01", "path": LUN0, "max_resize_size": 16 * 1024**4}],
            "num_records": 1,
        }
        refused = client.get("/api/storage/luns", params={"colour": "blue"})
        assert refused.status_code == 400
        assert refused.json()["error"] == {
            "message": 'Unexpected argument "colour".',
            "code": "262179",
            "target": "colour",
        }
        assert client.get("/api/storage/luns/nope").json()["error"]["code"] == "5374875"
        assert client.get("/api/cluster").json()["version"]["generation"] == 9


def test_shrinking_is_refused(array: OntapArray) -> None:
    with pytest.raises(DeviceRefused, match="Reducing the size of a LUN"):
        array.resize(array.lun(LUN0), 50 * GiB)


def test_a_wrong_password_is_refused_and_never_shown(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "not-" + secrets.token_urlsafe(12)
    monkeypatch.setenv("RH_TEST_ONTAP_WRONG", wrong)
    driver = OntapArray(lab.array(password_var="RH_TEST_ONTAP_WRONG"))
    try:
        with pytest.raises(DeviceRefused) as caught:
            driver.lun(LUN0)
    finally:
        driver.close()
    exc = caught.value
    assert "401" in str(exc)
    for text in (str(exc), exc.message, repr(exc), str(exc.fix)):
        assert wrong not in text and PASSWORD not in text


def test_a_ca_that_is_not_the_labs_is_refused_as_tls(lab: Lab, tmp_path: Path) -> None:
    other = issue_lab_tls(tmp_path / "other", common_name="some other CA")
    driver = OntapArray(lab.array(ca=other.ca_file))
    try:
        with pytest.raises(DeviceRefused, match="TLS"):
            driver.lun(LUN0)
    finally:
        driver.close()


def test_resize_error_is_unreachable_with_the_arrays_message_and_changes_nothing(
    lab: Lab, array: OntapArray
) -> None:
    lun = array.lun(LUN0)
    lab.sim.set_fault("resize_error", True)
    with pytest.raises(DeviceUnreachable, match="timed out waiting for the node"):
        array.resize(lun, 150 * GiB)
    assert lab.sim.lun_size(LUN0) == 100 * GiB
    assert lab.san_lun().size == 100 * GiB
    assert lab.log.lines == []
    array.resize(lun, 150 * GiB)  # the fault fired once
    assert array.lun(LUN0).size == 150 * GiB


def test_error_after_resize_applies_then_fails_reads_until_cleared(lab: Lab, array: OntapArray) -> None:
    lun = array.lun(LUN0)
    lab.sim.set_fault("error_after_resize", True)
    with pytest.raises(DeviceUnreachable, match="500"):
        array.resize(lun, 200 * GiB)
    assert lab.san_lun().size == 200 * GiB
    assert len(lab.log.lines) == 1
    for _ in range(2):
        with pytest.raises(DeviceUnreachable, match="metadata is being updated"):
            array.lun(LUN0)
    with pytest.raises(DeviceUnreachable):
        array.room(lun)
    lab.sim.set_fault("error_after_resize", False)
    assert array.lun(LUN0).size == 200 * GiB


def test_unknown_fault_is_refused(lab: Lab) -> None:
    with pytest.raises(ValueError, match="resize_error"):
        lab.sim.set_fault("disk_on_fire", True)
