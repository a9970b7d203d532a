"""The built-in IP plan: the inventory's ip_plan checks, allocation rules, idempotency, release history, the
audit trail, concurrency on SQLite and PostgreSQL, and ``remotehands ipam``."""

from __future__ import annotations

import json
import re
import shlex
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from remotehands import audit
from remotehands.db import Database
from remotehands.errors import AddressInUse, InvalidRequest, PrefixExhausted
from remotehands.inventory import Inventory, check_inventory, load_inventory
from remotehands.network.ipam import BuiltinPlan
from remotehands.network.ipam_tables import IpAssignment, IpPrefix
from remotehands.network.plan import AddressPlan

HOSTS_YML = """\
all:
  children:
    s1:
      vars: {site: s1}
      hosts:
        fw-01:
          ansible_host: 10.9.0.1
          kind: firewall
          platform: cisco_asa
          credentials: {username: admin, password: env:FW_PASSWORD}
"""

SMALL = ip_network("192.0.2.0/28")  # usable .4-.14: .0/.15 edges, .1 gateway, .2-.3 reserved
RACE = ip_network("203.0.113.0/26")  # 61 usable: .0/.63 edges, .1 gateway
V6 = ip_network("2001:db8:1::/64")

PLAN = """\
      prefixes:
        - prefix: 192.0.2.0/28
          gateway: 192.0.2.1
          reserved: [192.0.2.2-192.0.2.3]
          description: small
        - prefix: 203.0.113.0/26
          gateway: 203.0.113.1
          description: race
        - prefix: 2001:db8:1::/64
          gateway: 2001:db8:1::1
          description: v6
"""


def write_inventory(root: Path, plan: str = PLAN) -> Path:
    (root / "group_vars").mkdir(parents=True, exist_ok=True)
    (root / "hosts.yml").write_text(HOSTS_YML)
    (root / "group_vars" / "all.yml").write_text(
        "sites:\n  s1:\n    description: site one\n    ip_plan:\n"
        + textwrap.indent(textwrap.dedent(plan), "      ")
        + "subscriptions:\n  acme-0001: {customer: acme}\n  globex-0001: {customer: globex}\n"
    )
    return root


@pytest.fixture
def inv(tmp_path: Path) -> Inventory:
    return load_inventory(write_inventory(tmp_path / "inv"))


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'ipam.db'}")
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def plan(db: Database, inv: Inventory) -> BuiltinPlan:
    return BuiltinPlan(db, inv, actor="carol")


def allocate(plan: BuiltinPlan, count: int, key: str, **kw: object) -> list[str]:
    kw.setdefault("customer", "acme")
    kw.setdefault("ticket_id", "RH-1")
    return [str(a.address) for a in plan.allocate("s1", count, key=key, **kw)]  # type: ignore[arg-type]


def rows(db: Database) -> list[IpAssignment]:
    with db.session() as s:
        return list(s.execute(select(IpAssignment).order_by(IpAssignment.id)).scalars())


# --- the inventory's ip_plan -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefixes", "field", "message"),
    [
        ("- {prefix: 10.0.0.0/33}", "prefixes.0.prefix", "is not a valid CIDR prefix"),
        ("- {prefix: 10.0.0.1/24}", "prefixes.0.prefix", "has host bits set; the prefix is 10.0.0.0/24"),
        ("- {prefix: 10.0.0.0/24, gateway: 10.0.1.1}", "prefixes.0.gateway", "gateway 10.0.1.1 is outside"),
        (
            "- {prefix: 10.0.0.0/24}\n- {prefix: 10.0.0.128/25}",
            "prefixes",
            "prefix 1 (10.0.0.128/25) overlaps prefix 0 (10.0.0.0/24)",
        ),
        ("- {prefix: 10.0.0.0/24, reserved: [10.0.0.9-10.0.0.2]}", "prefixes.0.reserved.0", "ends before it"),
    ],
)
def test_ipam_inventory_problems_name_the_field(tmp_path: Path, prefixes: str, field: str, message: str):
    root = write_inventory(tmp_path, "prefixes:\n" + textwrap.indent(prefixes, "  ") + "\n")
    problems = check_inventory(root)
    assert [(p.field, p.file) for p in problems] == [
        (f"sites.s1.ip_plan.{field}", str(root / "group_vars" / "all.yml"))
    ]
    assert message in problems[0].message


def test_ipam_inventory_plan_loads(inv: Inventory):
    site_plan = inv.sites["s1"].ip_plan
    assert site_plan is not None
    assert [p.prefix for p in site_plan.prefixes] == [SMALL, RACE, V6]
    assert site_plan.prefixes[0].free() == 11


# --- allocation rules --------------------------------------------------------------------------------------


def test_ipam_builtin_plan_is_an_address_plan(plan: BuiltinPlan):
    typed: AddressPlan = plan  # mypy checks the Protocol; this checks it at run time too
    assert callable(typed.allocate) and callable(typed.usage)


def test_ipam_allocation_skips_network_gateway_and_reserved(plan: BuiltinPlan, db: Database):
    assert allocate(plan, 3, "job-1") == ["192.0.2.4", "192.0.2.5", "192.0.2.6"]
    assert allocate(plan, 2, "job-2", prefix=RACE) == ["203.0.113.2", "203.0.113.3"]
    for address, why in [
        ("192.0.2.0", "the network address"),
        ("192.0.2.1", "the gateway"),
        ("192.0.2.3", "reserved"),
        ("192.0.2.15", "the broadcast address"),
    ]:
        with pytest.raises(InvalidRequest, match=why):
            plan.assign("s1", ip_address(address), customer="acme", ticket_id="RH-2", key="x")
    assert len(rows(db)) == 5
    small = plan.usage("s1")[0]
    assert (small.prefix, small.gateway, small.size, small.assigned, small.free) == (
        SMALL,
        ip_address("192.0.2.1"),
        11,
        3,
        8,
    )


def test_ipam_same_key_returns_the_same_addresses(plan: BuiltinPlan, db: Database):
    first = allocate(plan, 2, "job-7")
    assert allocate(plan, 2, "job-7") == first
    assert allocate(plan, 5, "job-7") == first  # the key's allocation, not a new one
    assert len(rows(db)) == 2
    with pytest.raises(InvalidRequest, match="key job-7 already holds addresses of customer acme"):
        allocate(plan, 2, "job-7", customer="globex")
    assert [a.key for a in plan.assignments("s1", key="job-7")] == ["job-7", "job-7"]


def test_ipam_exhaustion_assigns_nothing(plan: BuiltinPlan, db: Database):
    with pytest.raises(PrefixExhausted) as err:
        allocate(plan, 12, "big", prefix=SMALL)
    assert "asked 12 addresses" in str(err.value) and "free 11 in 192.0.2.0/28" in str(err.value)
    assert rows(db) == []
    assert len(allocate(plan, 11, "all", prefix=SMALL)) == 11
    with pytest.raises(PrefixExhausted, match=re.escape("free 0 in 192.0.2.0/28")):
        allocate(plan, 1, "one-more", prefix=SMALL)
    # Without --prefix the first prefix with room is used.
    assert allocate(plan, 1, "elsewhere") == ["203.0.113.2"]


def test_ipam_address_in_use_names_holder(plan: BuiltinPlan):
    held = plan.assign("s1", ip_address("192.0.2.9"), customer="globex", ticket_id="RH-40", key="k1")
    again = plan.assign("s1", ip_address("192.0.2.9"), customer="globex", ticket_id="RH-40", key="k1")
    assert held.address == again.address == ip_address("192.0.2.9")
    with pytest.raises(AddressInUse) as err:
        plan.assign("s1", ip_address("192.0.2.9"), customer="acme", ticket_id="RH-41", key="k2")
    assert "customer globex on ticket RH-40" in str(err.value)
    # An allocation walks around it.
    assert allocate(plan, 6, "k3") == [f"192.0.2.{n}" for n in (4, 5, 6, 7, 8, 10)]


def test_ipam_outside_plan_and_bad_fields(plan: BuiltinPlan, db: Database):
    with pytest.raises(InvalidRequest) as err:
        plan.assign("s1", ip_address("198.18.0.5"), customer="acme", ticket_id="RH-1", key="k")
    assert str(err.value).startswith(
        "198.18.0.5 is not in the IP plan of site s1; its prefixes are 192.0.2.0/28, 203.0.113.0/26"
    )
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: plan.allocate("s9", 1, customer="acme", ticket_id="T", key="k"), "site 's9'"),
        (lambda: plan.allocate("s1", 1, customer="initech", ticket_id="T", key="k"), "customer 'initech'"),
        (lambda: plan.allocate("s1", 0, customer="acme", ticket_id="T", key="k"), "count 0"),
        (lambda: plan.allocate("s1", 257, customer="acme", ticket_id="T", key="k"), "count 257"),
        (lambda: plan.allocate("s1", 1, customer="acme", ticket_id=" ", key="k"), "ticket_id is empty"),
        (
            lambda: plan.allocate(
                "s1", 1, customer="acme", ticket_id="T", key="k", prefix=ip_network("10.0.0.0/8")
            ),
            "prefix 10.0.0.0/8 is not in the IP plan of site s1",
        ),
        (
            lambda: plan.allocate("s1", 1, customer="acme", ticket_id="T", key="k", prefix=V6),
            "prefix 2001:db8:1::/64 is IPv6 but IPv4 was asked",
        ),
    ]
    for call, message in cases:
        with pytest.raises(InvalidRequest) as caught:
            call()
        assert message in str(caught.value) and "Fix:" in str(caught.value)
    assert rows(db) == []


def test_ipam_release_keeps_history_and_frees_the_address(plan: BuiltinPlan, db: Database):
    allocate(plan, 3, "job-1")
    with pytest.raises(InvalidRequest, match=re.escape("not assigned at site s1: 192.0.2.12")):
        plan.release("s1", [ip_address("192.0.2.5"), ip_address("192.0.2.12")], ticket_id="RH-9")
    assert [str(a.address) for a in plan.assignments("s1")] == ["192.0.2.4", "192.0.2.5", "192.0.2.6"]
    [released] = plan.release("s1", [ip_address("192.0.2.5")], ticket_id="RH-9")
    assert released.released_at is not None and released.released_at.tzinfo is UTC
    assert allocate(plan, 1, "job-2", ticket_id="RH-10") == ["192.0.2.5"]
    history = [(r.address, r.active_address, r.released_ticket) for r in rows(db) if r.address == "192.0.2.5"]
    assert history == [("192.0.2.5", None, "RH-9"), ("192.0.2.5", "192.0.2.5", None)]
    with db.session() as s:
        actions = list(s.execute(select(audit.AuditEntry.action).order_by(audit.AuditEntry.id)).scalars())
        assert actions == ["ipam.allocate", "ipam.release", "ipam.allocate"]  # the refused release left none
        assert audit.verify(s).ok


def test_ipam_v6_slash64_allocation_is_fast(plan: BuiltinPlan):
    started = time.perf_counter()
    addresses = allocate(plan, 256, "v6", version=6)
    assert time.perf_counter() - started < 3
    # ::0 is the subnet-router anycast address and ::1 the gateway.
    assert addresses[0] == "2001:db8:1::2" and addresses[-1] == "2001:db8:1::101"
    usage = plan.usage("s1")[2]
    assert (usage.size, usage.assigned) == (2**64 - 2, 256)


def test_ipam_removed_prefix_is_kept_while_assigned(tmp_path: Path, db: Database, plan: BuiltinPlan):
    allocate(plan, 2, "job-1", prefix=RACE)
    without_race = PLAN.replace(
        "        - prefix: 203.0.113.0/26\n          gateway: 203.0.113.1\n          description: race\n", ""
    )
    shrunk = BuiltinPlan(db, load_inventory(write_inventory(tmp_path / "inv2", without_race)))
    usage = {u.prefix: u for u in shrunk.usage("s1")}
    assert usage[RACE].assigned == 2 and "removed from the inventory" in usage[RACE].description
    with pytest.raises(InvalidRequest, match=re.escape("prefix 203.0.113.0/26 is not in the IP plan")):
        allocate(shrunk, 1, "job-2", prefix=RACE)
    shrunk.release("s1", [ip_address("203.0.113.2"), ip_address("203.0.113.3")], ticket_id="RH-5")
    assert RACE not in {u.prefix for u in shrunk.usage("s1")}
    with db.session() as s:  # the row stays: released assignments point at it
        assert s.execute(select(IpPrefix.in_plan).where(IpPrefix.prefix == str(RACE))).scalar_one() is False


# --- concurrency -------------------------------------------------------------------------------------------


def race(url: str, inv: Inventory, threads: int = 8, each: int = 5) -> list[str]:
    """``threads`` allocators, each with its own engine and plan (as separate processes would be), start
    together on a fresh database (so they also seed it concurrently) and allocate one address ``each``
    times from RACE."""
    barrier = threading.Barrier(threads)

    def worker(n: int) -> list[str]:
        database = Database(url)
        try:
            mine = BuiltinPlan(database, inv, actor=f"worker-{n}")
            barrier.wait()
            return [a for i in range(each) for a in allocate(mine, 1, f"w{n}-{i}", prefix=RACE)]
        finally:
            database.dispose()

    with ThreadPoolExecutor(threads) as pool:
        return [a for got in pool.map(worker, range(threads)) for a in got]


def assert_race_result(db: Database, got: list[str]) -> None:
    assert len(got) == 40 and len(set(got)) == 40
    assert all(ip_address(a) in RACE for a in got)
    with db.session() as s:
        active = s.execute(
            select(func.count())
            .select_from(IpAssignment)
            .where(IpAssignment.active_address.like("203.0.113.%"))
        ).scalar_one()
    assert active == 40
    # Lowest first: the 40 are exactly .2 to .41.
    assert sorted(got, key=lambda a: int(ip_address(a))) == [f"203.0.113.{n}" for n in range(2, 42)]


def test_ipam_concurrent_allocations_sqlite(db: Database, inv: Inventory):
    assert_race_result(db, race(db.url, inv))


def test_ipam_concurrent_allocations_postgresql(pg_db: Database, inv: Inventory):
    pg_db.migrate()
    assert_race_result(pg_db, race(pg_db.url, inv))


def test_ipam_postgresql_conflict_takes_the_next_address(pg_db: Database, inv: Inventory):
    """An insert that loses to a concurrent transaction's commit retries with the next candidate."""
    pg_db.migrate()
    plan = BuiltinPlan(pg_db, inv)
    plan.usage("s1")  # seeds the prefix rows
    with pg_db.session() as s:
        race_id = s.execute(select(IpPrefix.id).where(IpPrefix.prefix == str(RACE))).scalar_one()
    blocker = pg_db.engine.connect()
    blocker.begin()  # left uncommitted: the allocator below cannot see the row and picks .2 too
    blocker.execute(
        text(
            "INSERT INTO ip_assignments (site, address, active_address, prefix_id, customer, ticket_id, "
            "allocation_key, assigned_by, assigned_at) VALUES ('s1', '203.0.113.2', '203.0.113.2', :prefix, "
            "'globex', 'RH-99', 'other', 'x', now())"
        ),
        {"prefix": race_id},
    )
    with ThreadPoolExecutor(1) as pool:
        result = pool.submit(allocate, plan, 1, "racer", prefix=RACE)
        try:
            # Give the allocator time to reach its insert of .2, where the uncommitted row blocks it (seen
            # in pg_stat_activity as a Lock wait; under load it may take longer, so stop at 10 s either way).
            deadline = time.monotonic() + 10
            with pg_db.engine.connect() as conn:
                while time.monotonic() < deadline and not result.done():
                    waiting = conn.execute(
                        text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
                    ).scalar()
                    if waiting:
                        break
                    time.sleep(0.02)
            # Still not answered while .2 is held uncommitted: it did not hand out .2 past the other row.
            assert not result.done(), f"the allocator did not wait on the uncommitted row: {result.result()}"
        finally:
            blocker.commit()  # always: a blocked allocator thread would otherwise hold the test forever
            blocker.close()
        assert result.result(timeout=30) == ["203.0.113.3"]


# --- CLI ---------------------------------------------------------------------------------------------------


@pytest.fixture
def ipam_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """``remotehands`` in-process on a fresh SQLite file and the small inventory (no lab needed)."""
    from remotehands.cli.main import main

    monkeypatch.setenv("RH_DB_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("RH_INVENTORY", str(write_inventory(tmp_path / "cli-inv")))
    monkeypatch.setenv("RH_LOG_FILE", str(tmp_path / "rh.log"))
    monkeypatch.setenv("RH_USER", "carol")

    def run(command: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exit_:
            main(shlex.split(command))
        out, err = capsys.readouterr()
        return int(exit_.value.code or 0), out, err

    return run


def test_ipam_cli_allocate_show_release(ipam_cli):
    code, out, _ = ipam_cli("ipam allocate s1 --count 2 --customer acme --ticket RH-1 --key job-1")
    assert code == 0 and "192.0.2.4" in out and "192.0.2.5" in out
    code, out, _ = ipam_cli("ipam allocate s1 --count 1 --customer acme --ticket RH-2 --ipv6 --json")
    assert code == 0 and [a["address"] for a in json.loads(out)] == ["2001:db8:1::2"]
    code, out, _ = ipam_cli("ipam show s1 --json")
    [site] = json.loads(out)
    assert code == 0 and site["site"] == "s1"
    small = site["prefixes"][0]
    assert [small[k] for k in ("prefix", "size", "assigned", "free", "gateway")] == [
        "192.0.2.0/28",
        11,
        2,
        9,
        "192.0.2.1",
    ]
    assert [(a["address"], a["customer"], a["ticket"]) for a in site["assignments"]] == [
        ("192.0.2.4", "acme", "RH-1"),
        ("192.0.2.5", "acme", "RH-1"),
        ("2001:db8:1::2", "acme", "RH-2"),
    ]
    code, out, _ = ipam_cli("ipam show")
    assert code == 0 and "IP plan of s1" in out and "192.0.2.0/28" in out and "RH-1" in out
    code, out, _ = ipam_cli("ipam release s1 192.0.2.4 192.0.2.5 --ticket RH-3")
    assert code == 0 and "released 192.0.2.4 (was acme, ticket RH-1) under RH-3" in out
    code, out, _ = ipam_cli("ipam show s1 --json")
    assert [a["address"] for a in json.loads(out)[0]["assignments"]] == ["2001:db8:1::2"]


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("allocate s1 --count 0 --customer acme --ticket T", "count 0 is out of range"),
        ("allocate s1 --count 2 --customer acme --ticket T --prefix 192.0.2.1/28", "host bits set"),
        ("allocate s9 --count 2 --customer acme --ticket T", "site 's9' is not in inventory"),
        ("allocate s1 --count 100 --customer acme --ticket T", "asked 100 addresses"),
        ("release s1 192.0.2.4 --ticket T", "not assigned at site s1: 192.0.2.4"),
        ("release s1 not-an-ip --ticket T", "'not-an-ip' is not an IP address"),
        ("assign s1 198.18.0.5 --customer acme --ticket T", "not in the IP plan of site s1"),
    ],
)
def test_ipam_cli_bad_input_exits_2(ipam_cli, command: str, message: str):
    code, out, err = ipam_cli(f"ipam {command}")
    assert code == 2 and message in err and "Traceback" not in err + out
    code, out, _ = ipam_cli(f"ipam {command} --json")
    assert code == 2 and message in json.loads(out)["error"]


def test_ipam_cli_address_in_use(ipam_cli):
    assert ipam_cli("ipam assign s1 192.0.2.9 --customer globex --ticket RH-40")[0] == 0
    code, _, err = ipam_cli("ipam assign s1 192.0.2.9 --customer acme --ticket RH-41")
    assert code == 2 and "assigned to customer globex on ticket RH-40" in err
