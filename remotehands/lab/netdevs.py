"""The lab's firewalls: one per platform the change pipeline supports, served over SSH by ``netdev_sim``.

Each keeps its running config in ``DIR/netdev/<name>.cfg`` (tests compare it byte for byte) and answers the
lab's user and password. Their revert timers run at ``TIME_SCALE`` real seconds per simulated minute, so a
commit-confirmed of ``CONFIRM_MINUTES`` expires in about a minute of real time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from remotehands.lab.netdev_model import NetDevice, Zone

TIME_SCALE = 30.0  # real seconds per simulated minute
CONFIRM_MINUTES = 2
# name -> (platform, {inventory zone: (interface or Junos zone, ACL)})
FIREWALLS: dict[str, tuple[str, dict[str, tuple[str, str | None]]]] = {
    "fw-asa-01": (
        "cisco_asa",
        {"outside": ("outside", "outside_access_in"), "inside": ("inside", "inside_access_in")},
    ),
    "fw-ios-01": (
        "cisco_ios",
        {"outside": ("GigabitEthernet0/0", "OUTSIDE_IN"), "inside": ("GigabitEthernet0/1", "INSIDE_IN")},
    ),
    "fw-srx-01": ("juniper_junos", {"outside": ("untrust", None), "inside": ("trust", None)}),
    "fw-fgt-01": ("fortinet", {"outside": ("port1", None), "inside": ("port2", None)}),
}


def _device(name: str, platform: str, zones: dict[str, Zone], state_file: Path) -> NetDevice:
    if platform == "cisco_asa":
        from remotehands.lab.netdev_asa import AsaDevice

        return AsaDevice(name, zones, state_file, time_scale=TIME_SCALE)
    if platform == "cisco_ios":
        from remotehands.lab.netdev_ios import IosDevice

        return IosDevice(name, zones, state_file, time_scale=TIME_SCALE)
    if platform == "juniper_junos":
        from remotehands.lab.netdev_junos import JunosDevice

        return JunosDevice(name, zones, state_file, time_scale=TIME_SCALE)
    from remotehands.lab.netdev_fortios import FortiosDevice

    return FortiosDevice(name, zones, state_file, time_scale=TIME_SCALE)


def serve_firewalls(
    state_dir: Path, username: str, password: str, address: str
) -> tuple[Any, dict[str, Any]]:
    """Start the lab's firewalls; returns the server and their description for ``lab.json``."""
    from remotehands.lab.netdev_sim import NetDevServer

    server = NetDevServer(username, password, address)
    described: dict[str, Any] = {}
    for name, (platform, zones) in FIREWALLS.items():
        lab_zones = {zone: Zone(interface, acl) for zone, (interface, acl) in zones.items()}
        port = server.add(_device(name, platform, lab_zones, state_dir / "netdev" / f"{name}.cfg"))
        key = server.host_key(name)
        described[name] = {
            "platform": platform,
            "address": address,
            "port": port,
            "host_key": f"{key.get_name()} {key.get_base64()}",
            "zones": {z: {"interface": i} | ({"acl": a} if a else {}) for z, (i, a) in zones.items()},
            "config": str(state_dir / "netdev" / f"{name}.cfg"),
        }
    server.start()
    return server, described


def inventory_entries(firewalls: dict[str, Any], credentials: dict[str, str]) -> dict[str, Any]:
    """hosts.yml entries for the firewalls of ``lab.json``."""
    return {
        name: {
            "ansible_host": f["address"],
            "kind": "firewall",
            "platform": f["platform"],
            "port": f["port"],
            "serial_number": f"LABFW{n:03d}",
            "credentials": credentials,
            "ssh_host_key": f["host_key"],
            "zones": f["zones"],
            "confirm_minutes": CONFIRM_MINUTES,
        }
        for n, (name, f) in enumerate(firewalls.items(), start=1)
    }
