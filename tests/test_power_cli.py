"""Bulk power from the CLI: selection by host/rack/site/ticket, per-host results, tickets for changes."""

from __future__ import annotations

import json
import shutil
import socket

import pytest
import yaml

from tests.conftest import mark


@pytest.fixture
def cli(cli, monkeypatch):
    monkeypatch.setenv("RH_BMC_TIMEOUT", "1")
    return cli


def _ticket(cli, action: str, *hosts: str) -> str:
    args = ["tickets", "create", "--title", "t", "--action", action, "--json"]
    for h in hosts:
        args += ["-t", h]
    code, out, err = cli(*args)
    assert code == 0, err
    ticket_id = json.loads(out)["id"]
    assert cli("tickets", "approve", ticket_id, user="bob")[0] == 0
    return ticket_id


def test_status_of_a_rack_lists_every_host(cli, lab):
    code, out, _ = cli("power", "status", "--rack", "r1", "--json")
    assert code == 0
    rows = json.loads(out)
    assert {r["host"] for r in rows} == set(lab.hosts) | set(lab.redfish_hosts) | set(lab.macs) | set(
        lab.controllers
    )
    vias = {r["host"]: r["via"] for r in rows if not r["error"]}
    assert len(vias) == len(rows), [r["error"] for r in rows if r["error"]]
    assert all(vias[h].startswith("ipmi 127.0.0.1:") for h in lab.hosts)
    assert all(vias[h].startswith("redfish 127.0.0.1:") for h in lab.redfish_hosts)
    assert all(vias[h].startswith("pdu-outlet pdu-r1-a#") for h in lab.macs)


def test_one_dead_bmc_does_not_hide_the_others(cli, lab, tmp_path, monkeypatch):
    inv = tmp_path / "inventory"
    shutil.copytree(lab.inventory_dir, inv)
    data = yaml.safe_load((inv / "hosts.yml").read_text())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    data["all"]["children"]["lab1"]["children"]["lab1_r1"]["hosts"]["esx-02"]["power"]["port"] = dead
    (inv / "hosts.yml").write_text(yaml.safe_dump(data))
    monkeypatch.setenv("RH_INVENTORY", str(inv))
    # The whole rack: its 8 IPMI hosts are read in bulk, the Redfish servers and Macs one by one.
    code, out, _ = cli("power", "status", "--rack", "r1", "--json")
    assert code == 1
    rows = {r["host"]: r for r in json.loads(out)}
    assert rows["esx-02"]["power"] == "unknown" and f"127.0.0.1:{dead}" in rows["esx-02"]["error"]
    assert all(r["power"] in ("on", "off") and not r["error"] for h, r in rows.items() if h != "esx-02")
    assert len(rows) == len(lab.hosts) + len(lab.redfish_hosts) + len(lab.macs) + len(lab.controllers)


def test_cycle_under_a_ticket_reports_each_host(cli, lab):
    marks = {h: mark(lab, h) for h in ("esx-01", "esx-03")}
    ticket_id = _ticket(cli, "power.cycle", "esx-01", "esx-03")
    code, out, err = cli("power", "cycle", "--ticket", ticket_id, "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert {r["host"]: r["state"] for r in rows} == {"esx-01": "succeeded", "esx-03": "succeeded"}
    assert all(len(m.commands("cycle")) == 1 for m in marks.values())


def test_changes_need_a_ticket_that_covers_the_hosts_and_the_action(cli, lab):
    ticket_id = _ticket(cli, "power.cycle", "esx-05")
    m = mark(lab, "esx-07")
    code, _, err = cli("power", "cycle", "esx-07", "--ticket", ticket_id)
    assert code == 3 and "does not cover esx-07" in err
    code, _, err = cli("power", "off", "--ticket", ticket_id)
    assert code == 3 and "power.cycle, not power.off" in err
    code, _, err = cli("power", "cycle", "esx-05")
    assert code == 2 and "--ticket" in err
    assert m.commands() == []


def test_rack_and_hosts_together_are_refused(cli):
    code, _, err = cli("power", "status", "esx-01", "--rack", "r1")
    assert code == 2 and "not both" in err


def test_identify_lights_the_chassis_led_without_a_ticket(cli, lab):
    m = mark(lab, "esx-03")
    code, out, err = cli("power", "identify", "esx-03", "mac-01", "--seconds", "30", "--json")
    assert code == 1, err  # mac-01 has no BMC to blink
    rows = {r["host"]: r for r in json.loads(out)}
    assert rows["esx-03"] == {"host": "esx-03", "identify": "30s", "error": ""}
    assert "no IPMI power path" in rows["mac-01"]["error"]
    assert [e["command"] for e in m.commands() if e["command"] == "identify"] == ["identify"]
    assert not [e for e in m.commands() if e["command"] in ("cycle", "power_on", "power_off")]
