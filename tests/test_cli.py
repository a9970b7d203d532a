"""The CLI as a technician uses it: exit codes, --json, one-line errors with no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml


def test_ticket_lifecycle_and_run_from_the_cli(cli, lab):
    code, out, _ = cli(
        "tickets",
        "create",
        "--title",
        "hung",
        "--action",
        "power.cycle",
        "-t",
        "esx-03",
        "--customer",
        "acme",
        "--subscription",
        "acme-0001",
        "--json",
    )
    assert code == 0
    ticket_id = json.loads(out)["id"]

    code, _, err = cli("run", "--ticket", ticket_id)
    assert code == 3
    assert "not approved" in err and "Traceback" not in err

    code, _, err = cli("tickets", "approve", ticket_id)  # alice asked for it
    assert code == 3 and "cannot approve" in err

    assert cli("tickets", "approve", ticket_id, user="bob")[0] == 0
    code, out, _ = cli("run", "--ticket", ticket_id, "--json")
    assert code == 0
    result = json.loads(out)
    assert result["jobs"][0]["state"] == "succeeded"
    assert [s["name"] for s in result["jobs"][0]["steps"]][-1] == "wait-reachable"

    code, out, _ = cli("tickets", "show", ticket_id, "--json")
    shown = json.loads(out)
    assert shown["status"] == "resolved"
    assert shown["comments"][0]["body"].startswith("remotehands accepted job")

    code, out, _ = cli("jobs", "show", str(result["jobs"][0]["id"]))
    assert code == 0 and "confirm-power [done]" in out
    code, out, _ = cli("audit", "verify", "--json")
    assert code == 0 and json.loads(out)["ok"] is True


def test_bad_input_exits_2_with_a_message_not_a_traceback(cli):
    code, _, err = cli("tickets", "create", "--title", "x", "--action", "power.cycle", "-t", "esx-99")
    assert code == 2
    assert "unknown host 'esx-99'" in err and "Traceback" not in err
    code, _, err = cli("tickets", "create", "--title", "x", "--action", "power.explode", "-t", "esx-01")
    assert code == 2 and "power.cycle" in err
    code, _, err = cli(
        "tickets", "create", "--title", "x", "--action", "power.cycle", "-t", "esx-01", "--params", "[1]"
    )
    assert code == 2 and "--params" in err
    code, _, err = cli("jobs", "show", "4242")
    assert code == 2 and "no job 4242" in err
    code, out, _ = cli("tickets", "show", "RH-999", "--json")
    assert code == 2 and json.loads(out)["exit_code"] == 2


def test_other_customers_host_exits_3(cli):
    code, _, err = cli(
        "tickets",
        "create",
        "--title",
        "x",
        "--action",
        "power.cycle",
        "-t",
        "esx-02",
        "--customer",
        "acme",
        "--subscription",
        "acme-0001",
    )
    assert code == 3 and "esx-02" in err


def test_power_status_reads_the_lab(cli, lab):
    code, out, _ = cli("power", "status", "esx-01", "esx-02", "--json")
    assert code == 0
    assert {r["host"]: r["power"] for r in json.loads(out)} == {"esx-01": "on", "esx-02": "on"}


def test_inventory_check_and_list(cli, lab):
    code, out, _ = cli("inventory", "check", "--json")
    assert code == 0 and json.loads(out)["ok"] is True
    code, out, _ = cli("inventory", "list", "--json")
    names = {h["name"] for h in json.loads(out)}
    assert {"esx-01", "esx-08"} <= names


def test_every_command_has_help(cli):
    code, out, _ = cli("--help")
    assert code == 0
    for sub in ("tickets", "jobs", "power", "inventory", "lab", "audit", "run", "worker", "demo"):
        assert sub in out
    for sub in ("tickets", "jobs", "power", "inventory", "lab", "audit"):
        code, out, _ = cli(sub, "--help")
        assert code == 0 and len(out.splitlines()) > 5


CORPUS = Path(__file__).parent / "corpus" / "inventory"


@pytest.mark.parametrize("case", sorted(p.name for p in CORPUS.iterdir() if p.is_dir()))
def test_bad_inventory_gives_named_problems_and_exit_2_not_a_traceback(cli, monkeypatch, case):
    expected = yaml.safe_load((CORPUS / case / "expected.yml").read_text())
    code, out, err = cli("inventory", "check", "--path", str(CORPUS / case), "--json")
    assert code == 2, out + err
    report = json.loads(out)
    assert len(report["problems"]) == len(expected["problems"])
    assert "Traceback" not in out + err
    # Commands that need the inventory refuse with the same problems, as one error, exit 2.
    monkeypatch.setenv("RH_INVENTORY", str(CORPUS / case))
    code, _, err = cli("tickets", "create", "--title", "x", "--action", "power.cycle", "-t", "esx-01")
    assert code == 2
    assert "inventory problem" in err and "Traceback" not in err


def test_markup_in_a_title_is_shown_as_text(cli):
    title = "fan [/] broken [bold]loud"
    code, _, err = cli("tickets", "create", "--title", title, "--action", "power.cycle", "-t", "esx-01")
    assert code == 0, err
    code, out, err = cli("tickets", "list")
    assert code == 0, err
    assert "[/]" in out and "[bold" in out  # literal, not markup (the cell is truncated at 80 columns)
