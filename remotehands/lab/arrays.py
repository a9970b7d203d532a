"""The lab's storage arrays: one per platform ``storage.expand_lun`` supports, each an HTTPS simulator of the
vendor's REST API on 127.0.0.1 (certificates from a lab CA under ``DIR/array-ca``), each with one LUN mapped
to two of the lab's SSH hosts through the lab's SAN (``san``):

- ``san-ontap-01`` (ONTAP): ``/vol/vol_esx01/lun0``, a VMFS datastore shared by two ESXi hosts;
- ``san-pure-01`` (Pure FlashArray): ``lnx-data-01``, LVM + ext4 on an active/passive pair of Linux hosts;
- ``san-pstore-01`` (PowerStore): ``lnx-xfs-01``, xfs straight on the multipath device, active/passive Linux.

Hosts that the lab does not run (a lab with fewer servers) are left out of the mapping.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from remotehands.lab.lab_ca import issue_lab_tls
from remotehands.lab.redfish_sim_http import TlsJsonServer
from remotehands.lab.san import San

# name -> (platform, LUN, hosts (lab server numbers), what the hosts keep on it)
ARRAYS: dict[str, tuple[str, str, tuple[str, ...], dict[str, str]]] = {
    "san-ontap-01": ("ontap", "/vol/vol_esx01/lun0", ("esx-01", "esx-03"), {"datastore": "ds-ontap-01"}),
    "san-pure-01": (
        "pure",
        "lnx-data-01",
        ("esx-02", "esx-04"),
        {"mount": "/srv/data", "lv": "vg_data/lv_data", "fstype": "ext4"},
    ),
    "san-pstore-01": (
        "powerstore",
        "lnx-xfs-01",
        ("esx-06", "esx-08"),
        {"mount": "/srv/xfs", "fstype": "xfs"},
    ),
}


class LabArrays:
    """The running array simulators, their HTTPS servers, and the SAN they share with the lab's hosts."""

    def __init__(self, san: San) -> None:
        self.san = san
        self.sims: dict[str, Any] = {}
        self.servers: list[TlsJsonServer] = []

    def set_fault(self, name: str, fault: str, enabled: bool) -> None:
        self.sims[name].set_fault(fault, enabled)

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.close_connections()
            server.server_close()


def serve_arrays(
    state_dir: Path,
    san: San,
    username: str,
    password: str,
    address: str,
    ssh_hosts: Sequence[str],
    command_log: Any,
) -> tuple[LabArrays, dict[str, Any]]:
    """Start the lab's arrays; ``ssh_hosts`` are the lab servers reachable over SSH. Returns the running
    arrays and their description for ``lab.json`` (address, port, CA, LUN and the hosts mapped to it)."""
    from remotehands.lab.array_ontap import lab_ontap
    from remotehands.lab.array_powerstore import lab_powerstore
    from remotehands.lab.array_pure import lab_pure

    tls = issue_lab_tls(state_dir / "array-ca", common_name="remotehands lab array CA")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.cert_file, tls.key_file)
    arrays = LabArrays(san)
    described: dict[str, Any] = {}
    for name, (platform, lun, wanted, use) in ARRAYS.items():
        hosts = tuple(h for h in wanted if h in ssh_hosts)
        known = set(san.luns)
        sim: Any
        if platform == "ontap":
            sim = lab_ontap(san, username, password, hosts, command_log)
        elif platform == "pure":
            sim = lab_pure(san, password, hosts, command_log)
        else:
            sim = lab_powerstore(san, username, password, hosts, command_log)
        [naa] = set(san.luns) - known
        if hosts:
            _lay_out(san, naa, hosts, use)
        server = TlsJsonServer((address, 0), sim, context)
        threading.Thread(target=server.serve_forever, name=f"array-{name}", daemon=True).start()
        arrays.sims[name], arrays.servers = sim, [*arrays.servers, server]
        described[name] = {
            "platform": platform,
            "address": address,
            "port": server.server_address[1],
            "tls_ca": str(tls.ca_file),
            "luns": {lun: {"hosts": list(hosts)} | {k: v for k, v in use.items() if k != "fstype"}}
            if hosts
            else {},
        }
    return arrays, described


def _lay_out(san: San, naa: str, hosts: tuple[str, ...], use: dict[str, str]) -> None:
    """Put on the LUN what its hosts keep there: the shared datastore, or the filesystem mounted on the
    first host (the active one of the pair)."""
    if "datastore" in use:
        san.format_vmfs(naa, use["datastore"], used=20 * 1024**3)
    else:
        san.format_linux(
            naa, use["fstype"], use["mount"], lv=use.get("lv"), active_host=hosts[0], used=20 * 1024**3
        )


def inventory_entries(arrays: dict[str, Any], credentials: dict[str, str]) -> dict[str, Any]:
    """hosts.yml entries for the arrays of ``lab.json``."""
    return {
        name: {
            "ansible_host": a["address"],
            "kind": "array",
            "platform": a["platform"],
            "port": a["port"],
            "serial_number": f"LABSAN{n:03d}",
            "credentials": credentials,
            "tls_ca": a["tls_ca"],
            "luns": a["luns"],
        }
        for n, (name, a) in enumerate(arrays.items(), start=1)
    }
