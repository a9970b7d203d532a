"""The NetBox IP plan against the NetBox simulator on 127.0.0.1: allocation through ``available-ips``,
idempotent keys, exhaustion, named assignments, release, listing and usage, concurrency, and what errors and
logs say (NetBox's detail, never the token)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from ipaddress import ip_address, ip_network

import pytest

from remotehands.errors import (
    AddressInUse,
    DeviceRefused,
    DeviceUnreachable,
    InvalidRequest,
    PrefixExhausted,
    SecretError,
)
from remotehands.lab.netbox_sim import NetBoxSim
from remotehands.lab.ticket_sims.harness import ServerThread, free_port
from remotehands.network.netbox import NetBoxPlan

TOKEN = "0123456789abcdef0123456789abcdef01234567"
SITE = "ams1"


@pytest.fixture
def sim() -> Iterator[NetBoxSim]:
    sim = NetBoxSim(token=TOKEN, page_size=3)  # small pages: every listing below crosses a page boundary
    sim.add_site(SITE)
    sim.add_site("fra1")
    sim.add_tenant("acme")
    sim.add_tenant("globex")
    yield sim


@pytest.fixture
def server(sim: NetBoxSim) -> Iterator[ServerThread]:
    thread = ServerThread(sim.app).start()
    yield thread
    thread.stop()


@pytest.fixture
def plan(server: ServerThread, monkeypatch: pytest.MonkeyPatch) -> NetBoxPlan:
    monkeypatch.setenv("RH_TEST_NETBOX_TOKEN", TOKEN)
    return NetBoxPlan(server.url, "env:RH_TEST_NETBOX_TOKEN", timeout=5)


def allocate(plan: NetBoxPlan, count: int, key: str, **kwargs: object) -> list:
    args = {"customer": "acme", "ticket_id": "RH-7", "device": "mac-01"} | kwargs
    return plan.allocate(SITE, count, key=key, **args)  # type: ignore[arg-type]


def test_netbox_allocates_distinct_addresses_of_one_prefix(sim: NetBoxSim, plan: NetBoxPlan) -> None:
    sim.add_prefix("192.0.2.0/28", site=SITE)
    sim.add_ip("192.0.2.1/28", description="core router")
    got = allocate(plan, 3, "job-42")
    addresses = [a.address for a in got]
    assert len(set(addresses)) == 3
    assert all(a in ip_network("192.0.2.0/28") for a in addresses)
    assert not {ip_address("192.0.2.0"), ip_address("192.0.2.1"), ip_address("192.0.2.15")} & set(addresses)
    first = got[0]
    assert (first.site, first.customer, first.ticket_id, first.key, first.device) == (
        SITE,
        "acme",
        "RH-7",
        "job-42",
        "mac-01",
    )
    assert first.prefix == ip_network("192.0.2.0/28") and first.assigned_at is not None
    stored = sim.addresses()[str(first.address)]
    assert stored == {
        "tenant": "acme",
        "description": "ticket RH-7 on mac-01",
        "custom_fields": {"remotehands_key": "job-42"},
    }


def test_netbox_allocation_picks_the_first_active_prefix_of_the_role_with_room(sim: NetBoxSim) -> None:
    sim.add_prefix("10.0.0.0/30", site=SITE, role="customer")  # 2 usable, both taken below
    sim.add_prefix("10.0.1.0/29", site=SITE, role="infra")
    sim.add_prefix("10.0.2.0/29", site=SITE, role="customer", status="reserved")
    sim.add_prefix("10.0.3.0/29", site=SITE, role="customer")
    sim.add_prefix("10.9.0.0/24", site="fra1", role="customer")
    sim.add_ip("10.0.0.1/30")
    sim.add_ip("10.0.0.2/30")
    server = ServerThread(sim.app).start()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("RH_TEST_NETBOX_TOKEN", TOKEN)
            plan = NetBoxPlan(server.url, "env:RH_TEST_NETBOX_TOKEN", prefix_role="customer")
            got = allocate(plan, 2, "job-1")
    finally:
        server.stop()
    assert {a.prefix for a in got} == {ip_network("10.0.3.0/29")}
    assert sim.posts_to_available_ips == 2  # the full /30 answered 409, then the /29 allocated


def test_netbox_same_key_returns_what_it_holds(sim: NetBoxSim, plan: NetBoxPlan) -> None:
    sim.add_prefix("192.0.2.0/28", site=SITE)
    first = allocate(plan, 2, "job-42")
    posts = sim.posts_to_available_ips
    again = allocate(plan, 2, "job-42")
    assert [a.address for a in again] == [a.address for a in first]
    assert sim.posts_to_available_ips == posts  # nothing new was asked of NetBox
    # NetBox's custom-field filter matches substrings: job-4 must not be taken for job-42's retry.
    other = allocate(plan, 1, "job-4")
    assert other[0].address not in {a.address for a in first}
    assert len(sim.addresses()) == 3


def test_netbox_exhausted_prefix_raises_and_assigns_nothing(sim: NetBoxSim, plan: NetBoxPlan) -> None:
    sim.add_prefix("192.0.2.0/29", site=SITE)  # 6 usable
    with pytest.raises(PrefixExhausted) as caught:
        allocate(plan, 7, "job-9")
    assert "7 requested, 6 available" in str(caught.value)
    assert isinstance(caught.value, InvalidRequest)
    assert sim.addresses() == {}
    with pytest.raises(PrefixExhausted):
        allocate(plan, 7, "job-9", prefix=ip_network("192.0.2.0/29"))
    assert sim.addresses() == {}


def test_netbox_ipv6_allocation(sim: NetBoxSim, plan: NetBoxPlan) -> None:
    sim.add_prefix("192.0.2.0/29", site=SITE)
    sim.add_prefix("2001:db8:0:1::/64", site=SITE)
    got = allocate(plan, 2, "job-6", version=6)
    assert [str(a.address) for a in got] == ["2001:db8:0:1::", "2001:db8:0:1::1"]  # IPv6 is fully usable
    with pytest.raises(InvalidRequest, match="no active IPv6 prefix"):
        plan.allocate("fra1", 1, customer="acme", ticket_id="RH-7", key="job-7", version=6)


def test_netbox_assign_named_addresses(sim: NetBoxSim, plan: NetBoxPlan) -> None:
    sim.add_prefix("192.0.2.0/28", site=SITE)
    sim.add_ip("192.0.2.1/28", description="core router")
    router = ip_address("192.0.2.1")
    with pytest.raises(AddressInUse, match=r"192\.0\.2\.1"):
        plan.assign(SITE, router, customer="acme", ticket_id="RH-8", key="job-8")
    made = plan.assign(SITE, ip_address("192.0.2.9"), customer="globex", ticket_id="RH-8", key="job-8")
    assert (made.customer, made.key, made.prefix) == ("globex", "job-8", ip_network("192.0.2.0/28"))
    assert "192.0.2.9" in sim.addresses()
    again = plan.assign(SITE, made.address, customer="globex", ticket_id="RH-8", key="job-8")
    assert again.address == made.address and len(sim.addresses()) == 2
    with pytest.raises(AddressInUse, match="job-8"):
        plan.assign(SITE, made.address, customer="acme", ticket_id="RH-9", key="job-9")
    for outside in ("192.0.2.0", "192.0.2.15", "198.51.100.1"):
        with pytest.raises(InvalidRequest):
            plan.assign(SITE, ip_address(outside), customer="acme", ticket_id="RH-9", key="job-9")
    assert len(sim.addresses()) == 2


def test_netbox_release_is_all_or_none(sim: NetBoxSim, plan: NetBoxPlan) -> None:
    sim.add_prefix("192.0.2.0/28", site=SITE)
    sim.add_ip("192.0.2.1/28", description="core router")
    a, b = (x.address for x in allocate(plan, 2, "job-3"))
    with pytest.raises(InvalidRequest, match=r"192\.0\.2\.14"):
        plan.release(SITE, [a, ip_address("192.0.2.14")], ticket_id="RH-10")
    with pytest.raises(InvalidRequest, match=r"192\.0\.2\.1\b"):
        plan.release(SITE, [a, ip_address("192.0.2.1")], ticket_id="RH-10")  # not ours: never deleted
    assert {str(a), str(b), "192.0.2.1"} == set(sim.addresses())
    released = plan.release(SITE, [a, b], ticket_id="RH-10")
    assert {r.address for r in released} == {a, b}
    assert all(r.released_at is not None and r.key == "job-3" for r in released)
    assert set(sim.addresses()) == {"192.0.2.1"}
    assert plan.assignments(SITE) == []


def test_netbox_assignments_and_usage(sim: NetBoxSim, plan: NetBoxPlan) -> None:
    sim.add_prefix("192.0.2.0/28", site=SITE, description="customers")
    sim.add_prefix("198.51.100.0/30", site=SITE)
    sim.add_prefix("203.0.113.0/24", site="fra1")
    sim.add_ip("192.0.2.1/28", description="core router")
    acme = allocate(plan, 4, "job-1")
    globex = allocate(plan, 2, "job-2", customer="globex")
    plan.allocate("fra1", 1, customer="acme", ticket_id="RH-1", key="job-3")
    everything = plan.assignments(SITE)
    assert [a.address for a in everything] == sorted(a.address for a in acme + globex)  # router is not ours
    assert {a.address for a in plan.assignments(SITE, customer="globex")} == {a.address for a in globex}
    assert {a.address for a in plan.assignments(SITE, key="job-1")} == {a.address for a in acme}
    with pytest.raises(InvalidRequest, match="tenant"):
        plan.assignments(SITE, customer="initech")
    usage = {u.prefix: u for u in plan.usage(SITE)}
    assert set(usage) == {ip_network("192.0.2.0/28"), ip_network("198.51.100.0/30")}
    main = usage[ip_network("192.0.2.0/28")]
    assert (main.size, main.assigned, main.free, main.description) == (14, 7, 7, "customers")
    assert (usage[ip_network("198.51.100.0/30")].size, usage[ip_network("198.51.100.0/30")].assigned) == (
        2,
        0,
    )


def test_netbox_concurrent_allocations_get_distinct_addresses(sim: NetBoxSim, plan: NetBoxPlan) -> None:
    sim.add_prefix("192.0.2.0/27", site=SITE)  # 30 usable, 24 asked for
    start = threading.Barrier(8)
    results: dict[int, list] = {}
    failures: list[BaseException] = []

    def worker(n: int) -> None:
        start.wait()
        try:
            results[n] = allocate(plan, 3, f"job-{100 + n}")
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert failures == []
    addresses = [a.address for got in results.values() for a in got]
    assert len(addresses) == 24 and len(set(addresses)) == 24
    assert len(sim.addresses()) == 24


def test_netbox_unknown_site_customer_and_prefix(sim: NetBoxSim, plan: NetBoxPlan) -> None:
    sim.add_prefix("192.0.2.0/28", site=SITE)
    with pytest.raises(InvalidRequest, match="no site with slug 'lon9'"):
        plan.allocate("lon9", 1, customer="acme", ticket_id="RH-1", key="job-1")
    with pytest.raises(InvalidRequest, match="no tenant with slug 'initech'"):
        plan.allocate(SITE, 1, customer="initech", ticket_id="RH-1", key="job-1")
    with pytest.raises(InvalidRequest, match="not a prefix of site"):
        allocate(plan, 1, "job-1", prefix=ip_network("203.0.113.0/24"))
    assert sim.addresses() == {}


def test_netbox_without_the_key_field_is_refused_with_the_fix(
    server: ServerThread, sim: NetBoxSim, plan: NetBoxPlan
) -> None:
    sim.ip_custom_fields = ()
    sim.add_prefix("192.0.2.0/28", site=SITE)
    with pytest.raises(DeviceRefused) as caught:
        allocate(plan, 1, "job-1")
    assert "Unknown field name 'remotehands_key'" in str(caught.value)
    assert "custom field" in (caught.value.fix or "")
    assert sim.addresses() == {}


def test_netbox_invalid_token_is_a_clear_error_without_the_token(
    server: ServerThread, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "ffffffffffffffffffffffffffffffffffffffff"
    monkeypatch.setenv("RH_TEST_NETBOX_TOKEN", wrong)
    plan = NetBoxPlan(server.url, "env:RH_TEST_NETBOX_TOKEN")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(DeviceRefused) as caught:
        plan.check()
    text = str(caught.value)
    assert "403" in text and "Invalid token" in text and "env:RH_TEST_NETBOX_TOKEN" in text
    # The redactor would mask it as ***: no mask shows the token never reached the message at all.
    assert wrong not in text and "***" not in text
    assert wrong not in caplog.text and "***" not in caplog.text
    with pytest.raises(DeviceRefused):
        plan.allocate(SITE, 1, customer="acme", ticket_id="RH-1", key="job-1")


def test_netbox_unreachable_and_outage_are_retryable(
    sim: NetBoxSim, plan: NetBoxPlan, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.add_prefix("192.0.2.0/28", site=SITE)
    sim.faults.fail(1)
    with pytest.raises(DeviceUnreachable, match="503") as caught:
        allocate(plan, 1, "job-1")
    assert caught.value.retryable
    assert len(allocate(plan, 1, "job-1")) == 1  # the next call goes through
    monkeypatch.setenv("RH_TEST_NETBOX_TOKEN", TOKEN)
    gone = NetBoxPlan(f"http://127.0.0.1:{free_port()}", "env:RH_TEST_NETBOX_TOKEN", timeout=2)
    with pytest.raises(DeviceUnreachable, match="no answer") as caught:
        gone.check()
    assert caught.value.retryable


def test_netbox_token_never_in_logs_or_errors(
    sim: NetBoxSim, plan: NetBoxPlan, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sim.add_prefix("192.0.2.0/29", site=SITE)
    messages = []
    got = allocate(plan, 2, "job-1")
    plan.release(SITE, [got[0].address], ticket_id="RH-2")
    for call in (
        lambda: allocate(plan, 9, "job-2"),
        lambda: plan.assign(SITE, got[1].address, customer="acme", ticket_id="RH-3", key="job-3"),
        lambda: plan.usage("nowhere"),
    ):
        with pytest.raises(InvalidRequest) as caught:
            call()
        messages.append(str(caught.value))
    assert len(caplog.records) >= 2  # allocation and release were logged
    for text in [*messages, caplog.text]:
        assert TOKEN not in text and "***" not in text


def test_netbox_plan_construction_does_no_io_and_wants_a_reference() -> None:
    with pytest.raises(SecretError):
        NetBoxPlan("https://netbox.example", TOKEN)
    # No server listens there and the variable is unset: constructing must not notice either.
    plan = NetBoxPlan(f"http://127.0.0.1:{free_port()}", "env:RH_TEST_NETBOX_UNSET")
    with pytest.raises(SecretError, match="RH_TEST_NETBOX_UNSET"):
        plan.check()
