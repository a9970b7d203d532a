"""The simulated site the lab process runs: IPMI BMCs (esx-NN), servers behind one Redfish service (rf-NN),
and Macs (mac-NN) powered through the outlets of one switched PDU (SNMP, APC rPDU2 tables), all on 127.0.0.1.
Each Mac answers SSH (``remotehands.lab.ssh_host``) while its outlet is on, with the inventory's serial and
a model (``DEFAULT_MAC_MODELS`` in turn unless given); their host keys are in ``DIR/known_hosts``.

Every device logs the commands it executes to ``DIR/bmc-log.jsonl``; the inventory for all of them is
written to ``DIR/inventory/``; secrets (one BMC/Redfish password, one SNMP community) go to
``DIR/secrets/`` with mode 0600 and are referenced from the inventory as ``file:`` references.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import secrets
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from remotehands import redaction
from remotehands.lab.process import ADDRESS, RACK, USERNAME, LabHost

log = logging.getLogger("remotehands.lab.site")

PDU_NAME = f"pdu-{RACK}-a"
PDU_MODEL = "apc-rpdu2"
PDU_OUTLETS = 24
# Outlets come back on at least this long after a reboot: the PDU reports its off-period in whole
# seconds, and the driver needs a readable off-period to prove a reboot ran (see bmc.pdu).
PDU_MIN_CYCLE_S = 1.0
PDU_STAGGER_S = 0.5
DEFAULT_MAC_MODELS = ("apple-silicon", "t2")  # mac-01, mac-02, then again in turn
CONTROLLER_NAME = "ctl-01"  # the controller Mac for DFU restores (on the outlet after the Macs)
# Servers that also answer SSH (an OS to reimage): every Redfish one and the first IPMI ones. Each SSH host
# holds a socket, and pyghmi select()s every socket of the process: stay well under 1,024.
X86_SSH_HOSTS = 32


def names(prefix: str, count: int) -> list[str]:
    """prefix-01 .. prefix-NN (wider numbers past 99)."""
    width = max(2, len(str(count)))
    return [f"{prefix}-{n:0{width}d}" for n in range(1, count + 1)]


def host_names(count: int) -> list[str]:
    return names("esx", count)


def serial_number(number: int) -> str:
    """The serial of the lab's ``number``-th server (counting IPMI hosts, then Redfish ones, then Macs)."""
    return f"LAB{number:04d}"


def run_lab(
    state_dir: Path,
    count: int,
    cycle_delay: float,
    *,
    redfish: int = 2,
    macs: int = 2,
    mac_models: Sequence[str] = DEFAULT_MAC_MODELS,
    time_scale: float | None = None,
) -> int:
    """Run the site until SIGTERM/SIGINT; returns the exit status.

    ``mac_models``: the Macs' models in turn; ``time_scale``: real seconds per simulated second on the Macs
    (default: ``ssh_host.DEFAULT_TIME_SCALE``, a 40-minute install in 2 s)."""
    from remotehands.lab.bmc_sim import CommandLog, SimulatedBmc, probe, serve_forever
    from remotehands.lab.installer import LabInstaller
    from remotehands.lab.pdu_sim import PduSpec, serve_pdus
    from remotehands.lab.redfish_sim import serve_redfish
    from remotehands.lab.ssh_host import DEFAULT_TIME_SCALE, SshHosts

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    password_file = _write_secret(state_dir / "secrets", "bmc_password", 12)
    community_file = _write_secret(state_dir / "secrets", "pdu_community", 12)
    password, community = password_file.read_text().strip(), community_file.read_text().strip()
    redaction.register(password)
    redaction.register(community)
    log_path = state_dir / "bmc-log.jsonl"
    log_path.write_text("")  # a new lab starts a new log: tests count its lines
    command_log = CommandLog(log_path)
    bmcs = [
        SimulatedBmc(
            name,
            username=USERNAME,
            password=password,
            command_log=command_log,
            kind="esxi" if number % 2 else "linux",
            address=ADDRESS,
            cycle_delay=cycle_delay,
        )
        for number, name in enumerate(host_names(count), start=1)
    ]
    listener = threading.Thread(target=serve_forever, args=(stop,), name="ipmi-listener", daemon=True)
    listener.start()
    for bmc in bmcs:
        if not any(probe(ADDRESS, bmc.port, timeout=1.0) for _ in range(5)):
            raise RuntimeError(f"BMC {bmc.name} on {ADDRESS}:{bmc.port} does not answer")
    hosts = {bmc.name: LabHost(ADDRESS, bmc.port, bmc.kind) for bmc in bmcs}
    rf_names = names("rf", redfish)
    rf = (
        serve_redfish(
            rf_names, command_log, state_dir / "redfish-ca", cycle_delay=cycle_delay, password=password
        )
        if rf_names
        else None
    )
    mac_names = names("mac", macs)
    models = {name: mac_models[i % len(mac_models)] for i, name in enumerate(mac_names)}
    # One controller Mac, paired over USB-C with the first Apple silicon Mac, for DFU restores.
    dfu_target = next((n for n in mac_names if models[n] == "apple-silicon"), None)
    controllers = [CONTROLLER_NAME] if dfu_target else []
    outlet_hosts = [*mac_names, *controllers]
    pdus = (
        serve_pdus(
            [
                PduSpec(
                    PDU_NAME,
                    PDU_MODEL,
                    PDU_OUTLETS,
                    outlet_names={n: name for n, name in enumerate(outlet_hosts, start=1)},
                    community=community,
                )
            ],
            command_log,
            cycle_delay=max(cycle_delay, PDU_MIN_CYCLE_S),
        )
        if mac_names
        else None
    )
    ssh_hosts = SshHosts(
        password,
        username=USERNAME,
        command_log=command_log,
        known_hosts=state_dir / "known_hosts",
        time_scale=time_scale or DEFAULT_TIME_SCALE,
        address=ADDRESS,
    )
    serials = {name: serial_number(count + len(rf_names) + i) for i, name in enumerate(outlet_hosts, start=1)}
    ssh_ports: dict[str, int] = {}
    if pdus is not None:
        strip = pdus.pdu(PDU_NAME)
        for outlet, name in enumerate(outlet_hosts, start=1):
            ssh_ports[name] = ssh_hosts.add_host(
                name,
                "mac-mini",
                serial=serials[name],
                model=models.get(name, "apple-silicon"),
                powered=functools.partial(strip.is_on, outlet),
                controller_of=dfu_target if name in controllers else None,
            )
    boot_macs: dict[str, str] = {}
    for number, bmc in enumerate(bmcs[:X86_SSH_HOSTS], start=1):
        boot_macs[bmc.name] = boot_mac(number)
        ssh_ports[bmc.name] = ssh_hosts.add_host(
            bmc.name,
            bmc.kind,
            serial=serial_number(number),
            powered=functools.partial(getattr, bmc, "powered_on"),
        )
    for number, name in enumerate(rf_names, start=count + 1):
        assert rf is not None
        system = rf.systems[name]
        boot_macs[name] = boot_mac(number)
        ssh_ports[name] = ssh_hosts.add_host(
            name, "linux", serial=serial_number(number), powered=functools.partial(_system_on, system)
        )
    installer = LabInstaller(ssh_hosts, state_dir / "install", command_log, boot_macs)
    for bmc in bmcs[:X86_SSH_HOSTS]:
        bmc.on_boot = functools.partial(installer.bmc_booted, bmc.name)
    for name in rf_names:
        assert rf is not None
        rf.systems[name].on_boot = functools.partial(installer.redfish_booted, name)
    ssh_hosts.on_netboot = installer.netbooted
    ssh_hosts.start()

    def ssh_of(name: str) -> dict[str, Any]:
        if name not in ssh_ports:
            return {}
        key = ssh_hosts.host_key(name)
        return {"ssh_port": ssh_ports[name], "host_key": f"{key.get_name()} {key.get_base64()}"}

    mdm, mdm_server, mdm_key_file = start_mdm(state_dir, ssh_hosts, serials)
    from remotehands.lab.netdevs import serve_firewalls

    firewall_server, firewalls = serve_firewalls(state_dir, USERNAME, password, ADDRESS)
    from remotehands.lab.arrays import serve_arrays
    from remotehands.lab.san import San

    ssh_hosts.san = San()
    lab_arrays, arrays = serve_arrays(
        state_dir, ssh_hosts.san, USERNAME, password, ADDRESS, list(ssh_ports), command_log
    )
    lab: dict[str, Any] = {
        "pid": os.getpid(),
        "started": time.time(),
        "log": str(log_path),
        "inventory": str(state_dir / "inventory"),
        "password_file": str(password_file),
        "hosts": {
            name: {"address": h.address, "port": h.port, "kind": h.kind, **ssh_of(name)}
            | ({"boot_mac": boot_macs[name]} if name in boot_macs else {})
            for name, h in hosts.items()
        },
        "redfish": {
            n: {"address": ADDRESS, "port": rf.port, "kind": "linux", "boot_mac": boot_macs[n], **ssh_of(n)}
            for n in rf_names
        }
        if rf
        else {},
        "install_dir": str(state_dir / "install"),
        "redfish_ca": str(rf.ca_file) if rf else None,
        "known_hosts": str(state_dir / "known_hosts"),
        "mdm": {"url": mdm_server.url, "key_file": str(mdm_key_file)},
        "firewalls": firewalls,
        "arrays": arrays,
        "macs": {
            n: {
                "pdu": PDU_NAME,
                "outlet": i,
                "address": ADDRESS,
                "port": pdus.port_of(PDU_NAME),
                "ssh_port": ssh_ports[n],
                "serial": serials[n],
                "model": models[n],
                "host_key": f"{ssh_hosts.host_key(n).get_name()} {ssh_hosts.host_key(n).get_base64()}",
                "mdm_udid": mdm_udid(serials[n]),
            }
            | ({"dfu_controller": CONTROLLER_NAME} if n == dfu_target else {})
            for i, n in enumerate(mac_names, start=1)
        }
        if pdus
        else {},
        "controllers": {
            n: {
                "pdu": PDU_NAME,
                "outlet": len(mac_names) + i,
                "address": ADDRESS,
                "port": pdus.port_of(PDU_NAME),
                "serial": serials[n],
                "model": "apple-silicon",
                "controller_of": dfu_target,
                **ssh_of(n),
            }
            for i, n in enumerate(controllers, start=1)
        }
        if pdus
        else {},
    }
    from remotehands.lab.site_inventory import write_inventory

    write_inventory(state_dir / "inventory", lab, password_file, community_file)
    _write_atomic(state_dir / "lab.json", json.dumps(lab, indent=2) + "\n")
    log.info(
        "lab up: %d IPMI BMCs, %d Redfish systems, %d Macs on %s, %d firewalls, %d arrays",
        count,
        len(rf_names),
        len(mac_names),
        PDU_NAME,
        len(firewalls),
        len(arrays),
    )
    from remotehands.lab.faults import FaultFile

    faults = FaultFile(
        state_dir, ssh_hosts, rf.systems if rf is not None else {}, firewall_server, lab_arrays
    )
    while not stop.wait(0.1):
        faults.apply()
    log.info("stopping the lab")
    for bmc in bmcs:
        bmc.stop()
    if rf is not None:
        rf.stop()
    mdm_server.stop()
    mdm.close()
    firewall_server.stop()
    lab_arrays.stop()
    ssh_hosts.stop()
    if pdus is not None:
        pdus.stop()
    listener.join(2.0)
    with contextlib.suppress(OSError, ValueError, KeyError):
        if json.loads((state_dir / "lab.json").read_text())["pid"] == os.getpid():
            (state_dir / "lab.json").unlink()
    command_log.close()
    log.info("lab stopped")
    return 0


def _system_on(system: Any) -> bool:
    return bool(system.power_state() == "On")


def boot_mac(number: int) -> str:
    """The boot NIC's MAC address of the lab's ``number``-th server (a locally administered one)."""
    return "02:00:00:" + ":".join(f"{b:02x}" for b in number.to_bytes(3, "big"))


def mdm_udid(serial: str) -> str:
    """A lab Mac's device id at the MDM server (the shape of an Apple silicon UDID)."""
    return f"00008112-{serial.encode().hex().upper()[:16]:0>16}"


def start_mdm(state_dir: Path, ssh_hosts: Any, serials: dict[str, str]) -> tuple[Any, Any, Path]:
    """The lab's MDM server (NanoMDM-style), its Macs enrolled; an acknowledged EraseDevice makes the Mac go
    dark and come back erased, on the same OS build, with a new host key, and enrolled again."""
    from remotehands.lab.mdm_sim import MdmSim
    from remotehands.lab.ssh_host import INSTALL_SECONDS
    from remotehands.lab.ticket_sims.harness import ServerThread

    key_file = _write_secret(state_dir / "secrets", "mdm_key", 18)
    by_udid = {mdm_udid(serial): name for name, serial in serials.items()}

    def erase(udid: str) -> None:
        name = by_udid[udid]
        ssh_hosts.begin_install(name, ssh_hosts.state(name).build, erase=True, method="mdm-erase")

    mdm = MdmSim(
        api_key=key_file.read_text().strip(),
        time_scale=ssh_hosts.time_scale,
        checkin_delay=5.0,
        erase_seconds=INSTALL_SECONDS,
        on_erase=erase,
    )
    for udid, name in by_udid.items():
        mdm.add_device(udid, serials[name], enrolled=True)
    return mdm, ServerThread(mdm.app, host=ADDRESS).start(), key_file


def _write_secret(secrets_dir: Path, name: str, nbytes: int) -> Path:
    """A random secret in ``secrets_dir/name`` (dir 0700, file 0600).

    12 random bytes make 16 characters: IPMI 2.0 caps passwords at 20 bytes and ipmitool's -f at 16, and
    real BMCs refuse longer ones; a lab that accepted them would hide that limit from our tests."""
    secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    secrets_dir.chmod(0o700)
    path = secrets_dir / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(secrets.token_urlsafe(nbytes) + "\n")
    return path


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
