"""The MDM client (remotehands.mdm) against the NanoMDM-style simulator over HTTP on 127.0.0.1."""

from __future__ import annotations

import logging
import plistlib
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import httpx
import pytest

from remotehands.errors import BadInput, ConfigError, DeviceRefused, DeviceUnreachable, UnknownTarget
from remotehands.lab.mdm_sim import MdmSim
from remotehands.lab.ticket_sims.harness import ServerThread, free_port
from remotehands.mdm import CommandState, MdmClient, MdmCommandStatus, erase_command

KEY = "sim-mdm-api-key-7f3a9c"
SCALE = 0.001  # a 5 s check-in takes 5 ms, a 600 s erase 0.6 s


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[MdmSim, ServerThread]]:
    sim = MdmSim(api_key=KEY, time_scale=SCALE)
    thread = ServerThread(sim.app).start()
    yield sim, thread
    sim.close()
    thread.stop()


@pytest.fixture
def sim(server: tuple[MdmSim, ServerThread]) -> Iterator[MdmSim]:
    sim = server[0]
    sim.faults.reset()
    sim.on_erase = sim.on_enroll = None
    sim.erase_seconds, sim.notnow_retry = 600.0, 60.0
    yield sim
    sim.faults.reset()


@pytest.fixture
def client(server: tuple[MdmSim, ServerThread]) -> Iterator[MdmClient]:
    with MdmClient(server[1].url, KEY, timeout=5.0, sleep=lambda _s: None) as mdm:
        yield mdm


def new_mac(sim: MdmSim) -> str:
    udid = str(uuid.uuid4()).upper()
    sim.add_device(udid, serial="C02" + udid[:9].replace("-", ""))
    return udid


def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


def settled(client: MdmClient, command_uuid: str) -> MdmCommandStatus:
    seen: list[MdmCommandStatus] = []

    def finished() -> bool:
        seen.append(client.command_status(command_uuid))
        return seen[-1].finished

    until(finished)
    return seen[-1]


def test_erase_sends_the_plist_is_acknowledged_and_the_mac_re_enrolls(sim: MdmSim, client: MdmClient):
    udid = new_mac(sim)
    erased: list[str] = []
    sim.on_erase = erased.append
    sim.erase_seconds = 300.0  # 0.3 s dark
    sent_at = datetime.now(UTC)

    command_uuid = client.erase(udid, pin="123456")

    received = sim.command(command_uuid)
    assert received.udid == udid
    assert plistlib.loads(received.body) == {
        "CommandUUID": command_uuid,
        "Command": {
            "RequestType": "EraseDevice",
            "PIN": "123456",
            "PreserveDataPlan": True,
            "ObliterationBehavior": "DoNotObliterate",
        },
    }
    assert received.body == erase_command(command_uuid, pin="123456")
    status = settled(client, command_uuid)
    assert status.state is CommandState.ACKNOWLEDGED
    assert (status.udid, status.request_type) == (udid, "EraseDevice")
    assert erased == [udid]
    assert not client.enrolled(udid)  # dark while erasing
    until(lambda: client.enrolled(udid, since=sent_at))
    device = client.device(udid)
    assert device.enrolled_at is not None and device.enrolled_at > sent_at
    assert sim.device(udid).erases == 1 and sim.device(udid).enrollments == 1
    assert not client.enrolled(udid, since=datetime.now(UTC))  # not re-enrolled after "now"


def test_enqueue_without_push_waits_for_push(sim: MdmSim, client: MdmClient):
    udid = new_mac(sim)
    command_uuid = client.erase(udid, push=False, preserve_data_plan=False, obliteration_behavior=None)

    assert plistlib.loads(sim.command(command_uuid).body)["Command"] == {
        "RequestType": "EraseDevice",
        "PreserveDataPlan": False,
    }
    time.sleep(0.05)
    assert client.command_status(command_uuid).state is CommandState.PENDING
    assert sim.device(udid).pushes == 0 and sim.device(udid).checkins == 0
    client.push(udid)
    assert settled(client, command_uuid).state is CommandState.ACKNOWLEDGED
    assert sim.device(udid).pushes == 1


def test_resending_the_same_command_uuid_erases_once(
    sim: MdmSim, client: MdmClient, monkeypatch: pytest.MonkeyPatch
):
    udid = new_mac(sim)
    erased: list[str] = []
    sim.on_erase = erased.append
    sim.set_fault(udid, "silent")  # the job "crashes" while the command is still queued
    command_uuid = str(uuid.uuid4()).upper()
    assert client.erase(udid, command_uuid=command_uuid) == command_uuid

    # Resumed: the results store knows the command, so it is not sent again.
    assert client.erase(udid, command_uuid=command_uuid) == command_uuid
    assert sim.command(command_uuid).enqueue_attempts == 1

    # A store fed only by the webhook does not know a queued command: the server refuses the duplicate.
    unknown = MdmCommandStatus(command_uuid, CommandState.UNKNOWN)
    with monkeypatch.context() as patch:
        patch.setattr(client, "command_status", lambda _uuid: unknown)
        assert client.erase(udid, command_uuid=command_uuid) == command_uuid
    assert sim.command(command_uuid).enqueue_attempts == 2
    assert len(sim.device(udid).queue) == 1

    sim.set_fault(udid, None)
    client.push(udid)
    assert settled(client, command_uuid).state is CommandState.ACKNOWLEDGED
    until(lambda: client.enrolled(udid))
    assert client.erase(udid, command_uuid=command_uuid) == command_uuid  # after the fact, too
    client.push(udid)
    time.sleep(0.05)
    assert erased == [udid] and sim.device(udid).erases == 1
    assert [c.command_uuid for c in sim.commands(udid)] == [command_uuid]


def test_a_command_uuid_of_another_device_is_refused(sim: MdmSim, client: MdmClient):
    first, second = new_mac(sim), new_mac(sim)
    sim.set_fault(first, "silent")
    command_uuid = client.erase(first)
    with pytest.raises(BadInput, match="was sent to"):
        client.erase(second, command_uuid=command_uuid)
    assert sim.commands(second) == []


def test_wrong_key_is_refused_at_once_and_never_shown(
    server: tuple[MdmSim, ServerThread], sim: MdmSim, caplog: pytest.LogCaptureFixture
):
    udid = new_mac(sim)
    wrong = "wrong-mdm-key-5d1e0b"
    caplog.set_level(logging.DEBUG)
    before = sim.faults.requests
    with MdmClient(server[1].url, wrong, timeout=5.0) as bad, pytest.raises(DeviceRefused) as raised:
        bad.erase(udid)
    assert sim.faults.requests - before == 1  # not retried
    assert not raised.value.retryable
    assert "refused the API key" in str(raised.value)
    for text in (raised.value.message, str(raised.value.fix), caplog.text):
        assert wrong not in text and KEY not in text
    assert sim.commands(udid) == []


def test_no_server_is_unreachable_and_retryable():
    with (
        MdmClient(f"http://127.0.0.1:{free_port()}", KEY, timeout=2.0) as mdm,
        pytest.raises(DeviceUnreachable) as raised,
    ):
        mdm.erase("0000-DEAD")
    assert raised.value.retryable
    assert KEY not in raised.value.message


def test_outages_are_retried_then_unreachable(sim: MdmSim, client: MdmClient):
    udid = new_mac(sim)
    sim.faults.fail(1)
    command_uuid = client.erase(udid)
    assert settled(client, command_uuid).state is CommandState.ACKNOWLEDGED

    sim.faults.throttle(10, retry_after="0")
    with pytest.raises(DeviceUnreachable, match="429"):
        client.push(udid)


def test_error_answer_carries_the_error_chain(sim: MdmSim, client: MdmClient):
    udid = new_mac(sim)
    erased: list[str] = []
    sim.on_erase = erased.append
    chain = [
        {
            "ErrorCode": 12081,
            "ErrorDomain": "MCMDMErrorDomain",
            "LocalizedDescription": "Erase preflight failed",
            "USEnglishDescription": "EACS preflight failed",
        }
    ]
    sim.set_fault(udid, "error", error_chain=chain)

    status = settled(client, client.erase(udid))

    assert status.state is CommandState.ERROR
    assert [(e.code, e.domain, e.description) for e in status.error_chain] == [
        (12081, "MCMDMErrorDomain", "EACS preflight failed")
    ]
    assert "MCMDMErrorDomain 12081: EACS preflight failed" in status.error_text()
    assert erased == [] and client.enrolled(udid)


def test_not_now_then_acknowledged(sim: MdmSim, client: MdmClient):
    udid = new_mac(sim)
    erased: list[str] = []
    sim.on_erase = erased.append
    sim.notnow_retry = 200.0  # the device comes back by itself 0.2 s later
    sim.set_fault(udid, "notnow", notnow_count=2)

    command_uuid = client.erase(udid)
    until(lambda: client.command_status(command_uuid).state is CommandState.NOT_NOW)
    assert not client.command_status(command_uuid).finished

    assert settled(client, command_uuid).state is CommandState.ACKNOWLEDGED
    assert sim.command(command_uuid).history == ["Pending", "NotNow", "NotNow", "Acknowledged"]
    assert erased == [udid]


def test_silent_device_stays_pending(sim: MdmSim, client: MdmClient):
    udid = new_mac(sim)
    sim.set_fault(udid, "silent")
    command_uuid = client.erase(udid)
    client.push(udid)
    time.sleep(0.05)
    assert client.command_status(command_uuid).state is CommandState.PENDING
    assert sim.device(udid).pushes == 2 and sim.device(udid).checkins == 0


def test_unknown_device_and_command(sim: MdmSim, client: MdmClient):
    with pytest.raises(UnknownTarget, match="no enrollment"):
        client.erase("NOT-ENROLLED-UDID")
    with pytest.raises(UnknownTarget):
        client.push("NOT-ENROLLED-UDID")
    with pytest.raises(UnknownTarget):
        client.enrolled("NOT-ENROLLED-UDID")
    assert client.command_status("NEVER-SENT").state is CommandState.UNKNOWN


def test_bad_input_is_refused_before_any_request(sim: MdmSim, client: MdmClient):
    before = sim.faults.requests
    with pytest.raises(BadInput):
        client.erase("UDID-A,UDID-B")  # a comma would address two Macs
    with pytest.raises(BadInput, match="six ASCII digits"):
        client.erase(new_mac(sim), pin="12345")
    with pytest.raises(BadInput, match="ObliterationBehavior"):
        client.erase(new_mac(sim), obliteration_behavior="Sometimes")
    assert sim.faults.requests == before


def test_settings_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="without credentials") as raised:
        MdmClient("https://nanomdm:url-secret-99@mdm.example.net", KEY)
    assert "url-secret-99" not in str(raised.value)
    with pytest.raises(ConfigError, match="CA bundle"):
        MdmClient("https://mdm.example.net", KEY, verify=str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match="empty"):
        MdmClient("https://mdm.example.net", "")


def test_sim_speaks_nanomdm(server: tuple[MdmSim, ServerThread], sim: MdmSim):
    udid = new_mac(sim)
    body = plistlib.dumps({"Command": {"RequestType": "ProfileList"}, "CommandUUID": "0001_ProfileList"})
    with httpx.Client(base_url=server[1].url, auth=("nanomdm", KEY)) as http:
        first = http.put(f"/v1/enqueue/{udid}", content=body)
        again = http.put(f"/v1/enqueue/{udid}?nopush=1", content=body)
        bad = http.put(f"/v1/enqueue/{udid}", content=b"not a plist")
        push = http.post(f"/v1/push/{udid}")
    assert first.status_code == 200
    assert first.json()["command_uuid"] == "0001_ProfileList"
    assert first.json()["request_type"] == "ProfileList"
    assert "push_result" in first.json()["status"][udid]
    assert again.status_code == 500 and "duplicate" in again.json()["command_error"]
    assert bad.status_code == 500 and "command_error" in bad.json()
    assert push.status_code == 200 and "push_result" in push.json()["status"][udid]
    assert httpx.get(f"{server[1].url}/v1/push/{udid}", auth=("nanomdm", "nope")).status_code == 401
    assert httpx.get(f"{server[1].url}/v1/devices/{udid}").status_code == 401
