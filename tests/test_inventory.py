"""The inventory loader: the shipped example, Ansible's variable precedence, provenance of problems, and
agreement with ``ansible-inventory`` itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from remotehands.errors import InventoryError
from remotehands.inventory import (
    PROVIDER,
    Host,
    Inventory,
    NetworkDevice,
    StorageArray,
    check_inventory,
    load_inventory,
)
from remotehands.inventory.checks import problems_from_validation_error
from remotehands.secrets import is_reference

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "inventory"

ALL_YML = """\
sites:
  lab1: {description: Lab one}
  lab2: {description: Lab two}
subscriptions:
  acme-0001: {customer: acme}
  globex-0001: {customer: globex}
"""

# One inventory exercising every precedence rule we rely on; each host's comment says what it proves.
PRECEDENCE_HOSTS_YML = """\
all:
  vars:
    subscription: globex-0001            # lowest: inline vars of all
  children:
    lab1:
      vars:
        site: lab1
        rack: from-site-group            # a child group's inline vars beat it
      children:
        lab1_r1:
          vars:
            rack: r1
          hosts:
            mac-01:                      # host_vars beat the host's inline vars; later host_vars files win
              ansible_host: 10.1.2.1
              kind: mac-mini
              serial_number: SER01
            mac-02:                      # a host var beats group vars; its power dict replaces the group's
              ansible_host: 10.1.2.2
              kind: mac-mini
              serial_number: SER02
              rack: r9
              power: {type: manual}
            mac-04:                      # zz_globex beats acme: same depth, later name
              ansible_host: 10.1.2.4
              kind: mac-mini
              serial_number: SER04
            mac-05:                      # aa_deep (depth 2) beats zz_globex (depth 1) despite its name
              ansible_host: 10.1.2.5
              kind: mac-mini
              serial_number: SER05
            mac-06:                      # ansible_group_priority beats the name order
              ansible_host: 10.1.2.6
              kind: mac-mini
              serial_number: SER06
        lab1_r2:
          vars:
            rack: r2-inline              # group_vars/lab1_r2.yml beats the group's own inline vars
          hosts:
            mac-03:
              ansible_host: 10.1.2.3
              kind: esxi
              serial_number: SER03
    lab2:
      vars:
        site: lab2
      children:
        lab2_r1:
          vars:
            rack: r1-inline              # group_vars/lab2.yml (the parent's file) beats this, as in Ansible
          hosts:
            mac-21:
              ansible_host: 10.2.2.1
              kind: mac-pro
              serial_number: SER21
              power: {type: pdu-outlet, pdu: pdu-lab2-a, outlet: 3}
            pdu-lab2-a:
              ansible_host: 10.2.2.250
              kind: pdu
              platform: apc_rpdu2
              snmp: {version: v2c, community: env:PDU_COMMUNITY}
    acme:
      vars:
        subscription: acme-0001
      hosts:
        mac-01:
        mac-03:
        mac-04:
        mac-21:
    zz_globex:
      vars:
        subscription: globex-0001
      hosts:
        mac-04:
        mac-05:
        mac-06:
    zz_parent:
      children:
        aa_deep:
          vars:
            subscription: acme-0001
          hosts:
            mac-05:
    aaa_priority:
      vars:
        ansible_group_priority: 10
        subscription: acme-0001
      hosts:
        mac-06:
"""

PRECEDENCE_FILES = {
    "hosts.yml": PRECEDENCE_HOSTS_YML,
    "group_vars/all.yml": ALL_YML,
    "group_vars/lab1_r1.yml": """\
        power:
          type: ipmi
          address: 10.1.101.1
          credentials: {username: admin, password: env:LAB1_R1_BMC}
        """,
    "group_vars/lab1_r2/rack.yml": "rack: r2\n",
    "group_vars/lab1_r2/power.yaml": "power: {type: redfish, address: bmc-03.lab, credentials: {username: a, password: file:/x}}\n",
    "group_vars/lab2.yml": "rack: r-from-lab2-file\n",
    "host_vars/mac-01/10-power.yml": "power: {type: ipmi, address: 10.1.101.9, credentials: {username: a, password: env:X}}\n",
    "host_vars/mac-01/20-power.yml": "power: {type: manual}\nkind: mac-studio\n",
}

EXPECTED = {
    "mac-01": {"site": "lab1", "rack": "r1", "kind": "mac-studio", "subscription": "acme-0001"},
    "mac-02": {"site": "lab1", "rack": "r9", "kind": "mac-mini", "subscription": "globex-0001"},
    "mac-03": {"site": "lab1", "rack": "r2", "kind": "esxi", "subscription": "acme-0001"},
    "mac-04": {"site": "lab1", "rack": "r1", "kind": "mac-mini", "subscription": "globex-0001"},
    "mac-05": {"site": "lab1", "rack": "r1", "kind": "mac-mini", "subscription": "acme-0001"},
    "mac-06": {"site": "lab1", "rack": "r1", "kind": "mac-mini", "subscription": "acme-0001"},
    "mac-21": {"site": "lab2", "rack": "r-from-lab2-file", "kind": "mac-pro", "subscription": "acme-0001"},
}


def write_inventory(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


@pytest.fixture
def precedence(tmp_path: Path) -> Path:
    return write_inventory(tmp_path / "inv", PRECEDENCE_FILES)


def ansible_hostvars(inventory: Path, tmp_path: Path) -> dict[str, dict[str, object]]:
    """What ``ansible-inventory --list`` resolves for each host, run from the venv in a scratch home."""
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "ansible-inventory").exists():
        bin_dir = REPO / ".venv" / "bin"
    scratch = tmp_path / "ansible"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "ANSIBLE_HOME": str(scratch / "home"),
        "ANSIBLE_LOCAL_TEMP": str(scratch / "tmp"),
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "1",
        "ANSIBLE_NOCOLOR": "1",
    }
    scratch.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [str(bin_dir / "ansible-inventory"), "-i", str(inventory), "--list"],
        capture_output=True,
        text=True,
        env=env,
        cwd=scratch,  # no stray ansible.cfg from the working directory
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    hostvars: dict[str, dict[str, object]] = json.loads(result.stdout)["_meta"]["hostvars"]
    return hostvars


def assert_agrees_with_ansible(inventory: Inventory, hostvars: dict[str, dict[str, object]]) -> None:
    ours: dict[str, dict[str, object]] = {}
    for host in inventory.hosts.values():
        ours[host.name] = {
            "site": host.site,
            "rack": host.rack,
            "kind": host.kind,
            "subscription": host.subscription,
        }
    for device in inventory.network_devices.values():
        ours[device.name] = {"site": device.site, "rack": device.rack, "kind": device.kind}
        ours[device.name]["subscription"] = device.subscription
    for array in inventory.arrays.values():
        ours[array.name] = {
            "site": array.site,
            "rack": array.rack,
            "kind": "array",
            "subscription": array.subscription,
        }
    for pdu in inventory.pdus.values():
        ours[pdu.name] = {"site": pdu.site, "rack": pdu.rack, "kind": "pdu", "subscription": pdu.subscription}
    assert set(ours) == set(hostvars)
    for name, fields in ours.items():
        theirs = hostvars[name]
        resolved = {key: theirs.get(key, PROVIDER if key == "subscription" else None) for key in fields}
        assert resolved == fields, name


# --- the shipped example ---------------------------------------------------------------------------------


def test_shipped_inventory_loads():
    inventory = load_inventory(SHIPPED)

    assert list(inventory.sites) == ["ams1"]
    assert inventory.sites["ams1"].racks == ("r1", "r2")
    assert set(inventory.subscriptions) == {"acme-0001", "globex-0001"}
    kinds = {h.kind for h in inventory.hosts.values()}
    assert {"mac-mini", "mac-studio", "mac-pro", "esxi", "linux"} <= kinds
    for host in inventory.hosts.values():
        if host.kind.startswith("mac-"):
            assert host.power.type == "pdu-outlet"
            assert host.power.pdu and host.power.outlet
    esxi = sorted(h.name for h in inventory.hosts.values() if h.kind == "esxi" and h.power.type == "ipmi")
    assert esxi == ["esx-0101", "esx-0201"]
    assert [h.power.type for h in inventory.hosts.values() if h.kind == "linux"] == ["redfish"]
    assert [d.kind for d in inventory.network_devices.values()] == ["firewall"]
    assert len(inventory.arrays) == 1
    shared: list[NetworkDevice | StorageArray] = [
        *inventory.network_devices.values(),
        *inventory.arrays.values(),
    ]
    assert all(d.subscription == PROVIDER for d in shared)
    passwords = [h.power.credentials.password for h in inventory.hosts.values() if h.power.credentials]
    passwords += [d.credentials.password for d in shared]
    assert {p.split(":")[0] for p in passwords} == {"env", "file", "vault"}
    assert all(is_reference(p) for p in passwords)


def test_shipped_inventory_agrees_with_ansible(tmp_path: Path):
    assert_agrees_with_ansible(load_inventory(SHIPPED), ansible_hostvars(SHIPPED, tmp_path))


# --- precedence -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", sorted(EXPECTED))
def test_precedence(precedence: Path, host: str):
    loaded = load_inventory(precedence).hosts[host]
    assert {f: getattr(loaded, f) for f in ("site", "rack", "kind", "subscription")} == EXPECTED[host]


def test_precedence_agrees_with_ansible(precedence: Path, tmp_path: Path):
    assert_agrees_with_ansible(load_inventory(precedence), ansible_hostvars(precedence, tmp_path))


def test_dicts_are_replaced_not_merged(precedence: Path):
    hosts = load_inventory(precedence).hosts
    assert hosts["mac-02"].power.type == "manual"
    assert hosts["mac-02"].power.address is None  # not merged with the rack group's ipmi profile
    assert hosts["mac-04"].power.address == "10.1.101.1"  # inherited whole from group_vars/lab1_r1.yml
    assert hosts["mac-01"].power.type == "manual"  # host_vars/mac-01/20-power.yml beats 10-power.yml
    assert hosts["mac-03"].power.type == "redfish"  # group_vars/lab1_r2/ directory
    assert load_inventory(precedence).sites["lab1"].racks == ("r1", "r2", "r9")


def test_hosts_yaml_is_accepted(tmp_path: Path):
    files = {**PRECEDENCE_FILES, "hosts.yaml": PRECEDENCE_HOSTS_YML}
    del files["hosts.yml"]
    assert isinstance(load_inventory(write_inventory(tmp_path, files)).hosts["mac-01"], Host)


# --- provenance: each problem names the file its value was written in -------------------------------------


def test_problem_names_the_group_vars_file_the_value_came_from(tmp_path: Path):
    files = dict(PRECEDENCE_FILES)
    files["group_vars/lab1_r1.yml"] = (
        "power: {type: ipmi, address: 10.1.101.1, credentials: {username: a, password: Calvin99}}\n"
    )
    problems = check_inventory(write_inventory(tmp_path, files))

    # mac-01 and mac-02 override power themselves, so only the hosts inheriting it are affected.
    assert sorted((p.host, p.field) for p in problems) == [
        ("mac-04", "power.credentials.password"),
        ("mac-05", "power.credentials.password"),
        ("mac-06", "power.credentials.password"),
    ]
    assert all(p.file == str(tmp_path / "group_vars" / "lab1_r1.yml") for p in problems)
    assert all("Calvin99" not in str(p) for p in problems)


def test_problem_names_hosts_file_or_host_vars_file(tmp_path: Path):
    files = dict(PRECEDENCE_FILES)
    files["hosts.yml"] = PRECEDENCE_HOSTS_YML.replace("subscription: acme-0001", "subscription: acme-9999", 1)
    files["host_vars/mac-03.yml"] = "subscription: acme-0001\n"  # fixes mac-03 by overriding the group
    files["host_vars/mac-21/site.yml"] = "site: lab3\n"  # zz_globex overrides the typo for mac-04
    problems = check_inventory(write_inventory(tmp_path, files))

    where = sorted((p.host, p.field, Path(p.file).relative_to(tmp_path).as_posix()) for p in problems)
    assert where == [
        ("mac-01", "subscription", "hosts.yml"),
        ("mac-21", "site", "host_vars/mac-21/site.yml"),
        ("mac-21", "subscription", "hosts.yml"),
    ]


# --- whole-directory problems and the error itself --------------------------------------------------------


def test_missing_directory(tmp_path: Path):
    problems = check_inventory(tmp_path / "nowhere")
    assert [(p.file, p.host, p.field) for p in problems] == [(str(tmp_path / "nowhere"), None, None)]
    assert "does not exist" in problems[0].message


def test_both_hosts_files_and_both_vars_files_are_problems(tmp_path: Path):
    files = {**PRECEDENCE_FILES, "hosts.yaml": "all: {}\n", "group_vars/all.yaml": "sites: {}\n"}
    problems = check_inventory(write_inventory(tmp_path, files))
    assert sorted(Path(p.file).name for p in problems) == ["all.yaml", "hosts.yaml"]
    assert any("Ansible reads only all.yml" in p.message for p in problems)


def test_template_values_are_refused(tmp_path: Path):
    files = {**PRECEDENCE_FILES, "host_vars/mac-02.yml": "rack: '{{ rack_prefix }}9'\n"}
    [problem] = check_inventory(write_inventory(tmp_path, files))
    assert (problem.host, problem.field) == ("mac-02", "rack")
    assert "Jinja template" in problem.message


def test_load_raises_with_every_problem(tmp_path: Path):
    files = dict(PRECEDENCE_FILES)
    files["host_vars/mac-02.yml"] = "kind: toaster\nserial_number: SER01\n"
    root = write_inventory(tmp_path, files)
    with pytest.raises(InventoryError) as caught:
        load_inventory(root)
    assert [str(p) for p in caught.value.problems] == [str(p) for p in check_inventory(root)]
    assert len(caught.value.problems) == 3  # unknown kind, and the duplicate serial on both hosts
    assert caught.value.exit_code == 2


def test_pydantic_errors_become_problems_without_the_input():
    with pytest.raises(ValidationError) as caught:
        Host.model_validate(
            {"name": "h", "mgmt_address": 5, "power": {"type": "ipmi", "outlet": "Hunter2-x"}}
        )
    problems = problems_from_validation_error(caught.value, "h", lambda field: f"file-of-{field}")

    fields = {p.field: p for p in problems}
    assert fields["ansible_host"].file == "file-of-ansible_host"
    assert fields["power.outlet"].file == "file-of-power"
    assert all(p.host == "h" for p in problems)
    assert all("Hunter2-x" not in str(p) and "pydantic" not in str(p) for p in problems)


def test_array_luns_name_hosts_that_can_be_rescanned(tmp_path: Path):
    """An array's LUN lists hosts that exist, are ESXi or Linux with SSH, and say what they keep on it; each
    problem names the array and the field path; the shipped array's LUN loads with its host."""
    shipped = load_inventory(SHIPPED).arrays["array-ams1-01"]
    assert shipped.luns["/vol/vol_db/lun0"].hosts == ("lnx-0201",)
    hosts = """\
        all:
          children:
            lab1:
              vars: {site: lab1, rack: r1}
              hosts:
                esx-1: {ansible_host: 10.0.0.1, kind: esxi, serial_number: S1, subscription: provider,
                        power: {type: manual}, ssh: {username: root, password: env:X}}
                lnx-1: {ansible_host: 10.0.0.2, kind: linux, serial_number: S2, subscription: provider,
                        power: {type: manual}}
                san-1:
                  ansible_host: 10.0.0.3
                  kind: array
                  platform: pure
                  credentials: {username: u, password: env:TOKEN}
                  tls_ca: CA
                  luns:
                    LUNS
        """
    luns = "{vol-a: {hosts: [esx-1, ghost]}, vol-b: {hosts: [lnx-1], mount: /srv}}"
    files = {"group_vars/all.yml": "sites: {lab1: {}}\n"}
    for ca, lun, field, says in (
        ("relative/ca.pem", luns, "tls_ca", "absolute path"),
        ("/ca.pem", "{vol-c: {hosts: [], mount: srv}}", "luns.vol-c.hosts", "at least 1"),
    ):
        files["hosts.yml"] = hosts.replace("CA", ca).replace("LUNS", lun)
        with pytest.raises(InventoryError) as raised:
            load_inventory(write_inventory(tmp_path, files))
        found = [
            str(p) for p in raised.value.problems if p.host == "san-1" and (p.field or "").startswith(field)
        ]
        assert found and says in found[0], [str(p) for p in raised.value.problems]
    files["hosts.yml"] = hosts.replace("CA", "/ca.pem").replace("LUNS", luns)
    with pytest.raises(InventoryError) as raised:
        load_inventory(write_inventory(tmp_path, files))
    messages = " | ".join(str(p) for p in raised.value.problems)
    assert "host esx-1 is ESXi: give the VMFS datastore" in messages
    assert "host 'ghost' is not in the inventory" in messages
    assert "host lnx-1 has no ssh access" in messages
    assert all(p.host == "san-1" and (p.field or "").startswith("luns.vol-") for p in raised.value.problems)
    mixed = "{vol-a: {hosts: [esx-1, lnx-1], mount: /srv, datastore: ds}, vol-b: {hosts: [esx-1, esx-1]}}"
    files["hosts.yml"] = hosts.replace("CA", "/ca.pem").replace("LUNS", mixed)
    with pytest.raises(InventoryError) as raised:
        load_inventory(write_inventory(tmp_path, files))
    messages = " | ".join(str(p) for p in raised.value.problems)
    assert "luns.vol-a.hosts: mixes ESXi and Linux hosts" in messages
    assert "luns.vol-b.hosts: lists esx-1 twice" in messages
