"""The inventory the lab writes for itself (``DIR/inventory/``, the format ``remotehands.inventory`` reads),
from the description of what it runs (``lab.json``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from remotehands.lab.process import ADDRESS, RACK, SITE, SUBSCRIPTIONS, USERNAME
from remotehands.lab.site import PDU_NAME, PDU_STAGGER_S, _write_atomic, serial_number


def write_inventory(
    inventory_dir: Path, lab: dict[str, Any], password_file: Path, community_file: Path
) -> None:
    """Write ``hosts.yml`` and ``group_vars/all.yml`` for the lab (format read by ``remotehands.inventory``)."""
    credentials = {"username": USERNAME, "password": f"file:{password_file}"}
    ssh = {"username": USERNAME, "password": f"file:{password_file}"}
    entries: dict[str, Any] = {}
    number = 0

    def server(name: str, kind: str, power: dict[str, Any], **more: Any) -> None:
        nonlocal number
        number += 1
        entries[name] = {
            "ansible_host": ADDRESS,
            **more,
            "kind": kind,
            "serial_number": serial_number(number),
            "subscription": "acme-0001" if number % 2 else "globex-0001",
            "power": power,
        }

    def os_access(h: dict[str, Any]) -> dict[str, Any]:
        if "ssh_port" not in h:
            return {}
        return {
            "ansible_port": h["ssh_port"],
            # ESXi has no sudo: automation logs in as root there (storage rescans need it).
            "ssh": {**ssh, "username": "root"} if h.get("kind") == "esxi" else ssh,
            "ssh_host_key": h["host_key"],
            "boot_mac": h["boot_mac"],
        }

    for name, h in lab["hosts"].items():
        # The lab BMCs record every power action in their SEL (bmc_sim_sel), so jobs may cycle natively.
        ipmi = {"type": "ipmi", "address": h["address"], "port": h["port"], "credentials": credentials}
        server(name, h["kind"], {**ipmi, "event_log": True}, **os_access(h))
    for name, h in lab["redfish"].items():
        server(
            name,
            h["kind"],
            {
                "type": "redfish",
                "address": h["address"],
                "port": h["port"],
                "credentials": credentials,
                "system_id": name,
                "tls_ca": lab["redfish_ca"],
            },
            **os_access(h),
        )
    for name, m in lab["macs"].items():
        server(
            name,
            "mac-mini",
            {"type": "pdu-outlet", "pdu": m["pdu"], "outlet": m["outlet"], "outlet_name": name},
            ansible_port=m["ssh_port"],
            model=m["model"],
            ssh=ssh,
            ssh_host_key=m["host_key"],
            mdm_udid=m["mdm_udid"],
            **({"dfu_controller": m["dfu_controller"]} if "dfu_controller" in m else {}),
        )
    for name, m in lab.get("controllers", {}).items():
        server(
            name,
            "mac-mini",
            {"type": "pdu-outlet", "pdu": m["pdu"], "outlet": m["outlet"], "outlet_name": name},
            ansible_port=m["ssh_port"],
            model=m["model"],
            ssh=ssh,
            ssh_host_key=m["host_key"],
        )
    if lab["macs"]:
        entries[PDU_NAME] = {
            "ansible_host": ADDRESS,
            "kind": "pdu",
            "platform": "apc_rpdu2",
            "port": next(iter(lab["macs"].values()))["port"],
            "serial_number": "LABPDU01",
            "snmp": {"version": "v2c", "community": f"file:{community_file}"},
            "stagger_seconds": PDU_STAGGER_S,
        }
    from remotehands.lab.netdevs import inventory_entries

    entries.update(inventory_entries(lab.get("firewalls", {}), credentials))
    from remotehands.lab.arrays import inventory_entries as array_entries

    entries.update(array_entries(lab.get("arrays", {}), credentials))
    site = {
        "vars": {"site": SITE},
        "children": {f"{SITE}_{RACK}": {"vars": {"rack": RACK}, "hosts": entries}},
    }
    group_vars = {
        "sites": {
            SITE: {
                "description": "Loopback lab site",
                # Customers' additional addresses (net.add_ip) come from here; nothing is sent to them.
                "ip_plan": {
                    "prefixes": [
                        {
                            "prefix": "203.0.113.128/25",
                            "gateway": "203.0.113.129",
                            "reserved": ["203.0.113.129-203.0.113.135"],
                            "description": "lab customer public",
                        }
                    ]
                },
            }
        },
        "subscriptions": {sub: {"customer": customer} for sub, customer in SUBSCRIPTIONS.items()},
    }
    header = "# Written by remotehands.lab at every lab start; edits are lost.\n"
    _write_atomic(inventory_dir / "hosts.yml", header + _yaml({"all": {"children": {SITE: site}}}))
    _write_atomic(inventory_dir / "group_vars" / "all.yml", header + _yaml(group_vars))


def _yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
