"""net.add_ip and net.release_ip: addresses from the lab site's IP plan (203.0.113.128/25, .129-.135 reserved),
routed on the lab's firewalls over real Netmiko sessions, released again. Each test releases what it added, so
the firewalls' configs end as they began for the tests that share the session's lab."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest

from remotehands.config import IpamSettings, Settings
from remotehands.errors import InvalidRequest
from remotehands.jobs import store
from remotehands.lab.netbox_sim import NetBoxSim
from remotehands.lab.process import LabInfo
from remotehands.lab.ticket_sims.harness import ServerThread
from remotehands.network.ipam import BuiltinPlan
from remotehands.runtime import Runtime
from remotehands.tickets.base import Severity, TaskRequest, TicketType
from remotehands.tickets.builtin import NewTicket
from tests.conftest import run_ticket, settle

FIREWALLS = ("fw-asa-01", "fw-ios-01", "fw-srx-01", "fw-fgt-01")
NEXT_HOP = "198.51.100.10"
# How each platform's running config shows a /32 route of ADDRESS to NEXT_HOP.
ROUTE = {
    "fw-asa-01": "route inside {address} 255.255.255.255 198.51.100.10",
    "fw-ios-01": "ip route {address} 255.255.255.255 198.51.100.10",
    "fw-srx-01": "set routing-options static route {address}/32 next-hop 198.51.100.10",
    "fw-fgt-01": "set dst {address} 255.255.255.255",
}


def _config(lab: LabInfo, name: str) -> str:
    firewalls = json.loads((lab.state_dir / "lab.json").read_text())["firewalls"]
    return Path(firewalls[name]["config"]).read_text()


def _ticket(rt: Runtime, devices: str | tuple[str, ...], action: str, params: dict[str, object]) -> str:
    targets = (devices,) if isinstance(devices, str) else devices
    ticket_id = rt.tickets.create(
        NewTicket(
            type=TicketType.CONFIG_CHANGE,
            severity=Severity.DEGRADED,
            title=f"{action} on {', '.join(targets)}",
            requester="alice",
            customer="provider",
            subscription="provider",
            request=TaskRequest(action=action, targets=targets, params=params),
        ),
        rt.inventory(),
    )
    rt.tickets.approve(ticket_id, "bob")
    return ticket_id


def _job(rt: Runtime, job_id: int) -> tuple[str, str, dict[str, str]]:
    with rt.db.session() as s:
        job = store.get_job(s, job_id)
        return job.state, job.reason or "", {r.name: r.result or "" for r in store.steps_of(s, job_id)}


def _assigned(rt: Runtime, customer: str | None = None, key: str | None = None) -> list[str]:
    plan = BuiltinPlan(rt.db, rt.inventory())
    return sorted(str(a.address) for a in plan.assignments("lab1", customer=customer, key=key))


def test_ipam_network_concurrent_add_ip_jobs_route_distinct_addresses_then_release(
    rt: Runtime, lab: LabInfo
) -> None:
    before = {d: _config(lab, d) for d in FIREWALLS}
    ticket = _ticket(rt, FIREWALLS, "net.add_ip", {"customer": "acme", "count": 2, "next_hop": NEXT_HOP})
    ids = run_ticket(rt, ticket, timeout=180)  # four jobs on the executor's threads, one prefix
    held: dict[str, list[str]] = {}
    for job_id in ids:
        state, reason, steps = _job(rt, job_id)
        assert state == "succeeded", (reason, steps)
        with rt.db.session() as s:
            device = store.get_job(s, job_id).target
        held[device] = _assigned(rt, key=f"job-{job_id}")
        assert (
            len(held[device]) == 2 and f"{', '.join(held[device])} assigned to acme" in steps["net-precheck"]
        )
        for address in held[device]:
            assert ROUTE[device].format(address=address) in _config(lab, device)
    every = [a for addresses in held.values() for a in addresses]
    # Distinct, and the plan's first free ones: .128 is the network, .129 the gateway, .130-.135 reserved.
    assert sorted(every, key=ipaddress.ip_address) == [f"203.0.113.{n}" for n in range(136, 144)]
    releases = [
        _ticket(rt, device, "net.release_ip", {"customer": "acme", "addresses": held[device]})
        for device in FIREWALLS
    ]
    ids = []
    for t in releases:
        ids += store.create_jobs_for_ticket(rt.db, rt.tickets.get(t), "bob", "test")
    settle(rt, ids, timeout=180)
    assert [_job(rt, j)[0] for j in ids] == ["succeeded"] * 4, [_job(rt, j)[1] for j in ids]
    assert _assigned(rt) == []
    for device in FIREWALLS:
        assert _config(lab, device) == before[device], device


def test_ipam_add_ip_bad_addresses_fail_before_the_device(rt: Runtime, lab: LabInfo) -> None:
    device = "fw-ios-01"
    before = _config(lab, device)
    outside = _ticket(
        rt, device, "net.add_ip", {"customer": "acme", "addresses": ["198.18.0.5"], "next_hop": NEXT_HOP}
    )
    [job_id] = run_ticket(rt, outside, timeout=60)
    state, reason, _ = _job(rt, job_id)
    assert state == "failed" and "198.18.0.5 is not in the IP plan of site lab1" in reason
    BuiltinPlan(rt.db, rt.inventory()).assign(
        "lab1", ipaddress.ip_address("203.0.113.200"), customer="globex", ticket_id="RH-OTHER", key="cli-1"
    )
    taken = _ticket(
        rt, device, "net.add_ip", {"customer": "acme", "addresses": ["203.0.113.200"], "next_hop": NEXT_HOP}
    )
    [job_id] = run_ticket(rt, taken, timeout=60)
    state, reason, _ = _job(rt, job_id)
    assert state == "failed" and "203.0.113.200" in reason and "globex" in reason
    assert _assigned(rt, "acme") == []
    not_ours = _ticket(rt, device, "net.release_ip", {"customer": "acme", "addresses": ["203.0.113.200"]})
    [job_id] = run_ticket(rt, not_ours, timeout=60)
    state, reason, _ = _job(rt, job_id)
    assert state == "failed" and "not assigned to acme" in reason
    assert _assigned(rt, "globex") == ["203.0.113.200"]
    assert _config(lab, device) == before


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"customer": "acme", "count": 2}, "request.params.next_hop"),
        ({"customer": "acme", "next_hop": "198.51.100.300"}, "request.params.next_hop"),
        ({"customer": "acme", "count": 99, "next_hop": NEXT_HOP}, "request.params.count"),
        ({"customer": "acme", "next_hop": NEXT_HOP, "zone": "dmz"}, "request.params.zone"),
        ({"next_hop": NEXT_HOP}, "request.params.customer"),
    ],
)
def test_ipam_add_ip_malformed_request_is_refused_at_intake(
    rt: Runtime, lab: LabInfo, params: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidRequest) as err:
        _ticket(rt, "fw-asa-01", "net.add_ip", params)
    assert field in str(err.value)


def test_ipam_network_ip_plan_prints_commands_and_takes_nothing(rt: Runtime, cli: Any, lab: LabInfo) -> None:
    before = _config(lab, "fw-srx-01")
    code, out, err = cli(
        "net",
        "ip",
        "add",
        "fw-srx-01",
        "--customer",
        "acme",
        "--count",
        "2",
        "--next-hop",
        NEXT_HOP,
        "--plan",
    )
    assert code == 0, err
    assert "configure exclusive" in out and "commit confirmed 2" in out
    assert "set routing-options static route <address 2>/32 next-hop 198.51.100.10" in out
    assert "+ routing-options static route <address 1>/32" not in out  # the diff shows set lines as sent
    assert "+ set routing-options static route <address 1>/32 next-hop 198.51.100.10" in out
    assert _assigned(rt) == []
    assert _config(lab, "fw-srx-01") == before


def test_ipam_network_asa_static_nat_for_a_customer_host_then_release(rt: Runtime, lab: LabInfo) -> None:
    before = _config(lab, "fw-asa-01")
    params = {"customer": "globex", "next_hop": "10.10.0.20", "mode": "nat"}
    [job_id] = run_ticket(rt, _ticket(rt, "fw-asa-01", "net.add_ip", params), timeout=120)
    state, reason, steps = _job(rt, job_id)
    assert state == "succeeded", (reason, steps)
    [address] = _assigned(rt, "globex")
    config = _config(lab, "fw-asa-01")
    name = "rh-ip-" + address.replace(".", "-")
    assert f"object network {name}\n host 10.10.0.20" in config
    assert f"object network {name}\n nat (inside,outside) static {address}" in config
    release = {"customer": "globex", "addresses": [address], "mode": "nat"}
    [job_id] = run_ticket(rt, _ticket(rt, "fw-asa-01", "net.release_ip", release), timeout=120)
    assert _job(rt, job_id)[0] == "succeeded", _job(rt, job_id)[1]
    assert _assigned(rt) == []
    assert _config(lab, "fw-asa-01") == before
    with pytest.raises(InvalidRequest) as err:
        _ticket(rt, "fw-ios-01", "net.add_ip", params)
    assert "request.params.mode 'nat' is not supported on cisco_ios" in str(err.value)


def test_ipam_network_add_ip_from_netbox_when_the_settings_name_it(
    settings: Settings, lab: LabInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``[ipam] source = "netbox"``: the job takes its addresses from NetBox (a prefix the inventory's plan
    does not have), routes them, and the release gives them back in NetBox; the device ends as it began."""
    device = "fw-srx-01"
    token = "0123456789abcdef0123456789abcdef01234567"
    sim = NetBoxSim(token=token)
    sim.add_site("lab1")
    sim.add_tenant("acme")
    sim.add_prefix("198.51.100.64/29", site="lab1")
    server = ServerThread(sim.app).start()
    monkeypatch.setenv("RH_TEST_NETBOX_TOKEN", token)
    ipam = IpamSettings(source="netbox", netbox_url=server.url, netbox_token="env:RH_TEST_NETBOX_TOKEN")
    rt = Runtime(settings.model_copy(update={"ipam": ipam}))
    try:
        before = _config(lab, device)
        ticket = _ticket(rt, device, "net.add_ip", {"customer": "acme", "count": 2, "next_hop": NEXT_HOP})
        [job_id] = run_ticket(rt, ticket, timeout=120)
        state, reason, steps = _job(rt, job_id)
        assert state == "succeeded", (reason, steps)
        held = sorted(sim.addresses(), key=ipaddress.ip_address)
        assert held == ["198.51.100.65", "198.51.100.66"], held
        assert all(sim.addresses()[a]["custom_fields"] == {"remotehands_key": f"job-{job_id}"} for a in held)
        for address in held:
            assert ROUTE[device].format(address=address) in _config(lab, device)
        assert BuiltinPlan(rt.db, rt.inventory()).assignments("lab1") == []  # nothing taken from the DB
        release = _ticket(rt, device, "net.release_ip", {"customer": "acme", "addresses": held})
        [job_id] = run_ticket(rt, release, timeout=120)
        assert _job(rt, job_id)[0] == "succeeded", _job(rt, job_id)
        assert sim.addresses() == {}
        assert _config(lab, device) == before
    finally:
        server.stop()
        rt.db.dispose()
