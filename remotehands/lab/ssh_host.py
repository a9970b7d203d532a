"""Simulated lab hosts that answer SSH like real Macs, ESXi and Linux hosts, many in one process: the
control API the lab and tests use (``SshHosts``), and the hosts' life (power, boot, installs).

A host listens on its own TCP port on 127.0.0.1, fixed for the lab's life, only while it is up: powered
(``powered()``, e.g. its PDU outlet; always, for a host without one), ``boot_delay`` real seconds after its
power came on, and neither installing an OS nor in DFU mode. The network side (ports, paramiko, ``exec``) is
``remotehands.lab.ssh_server``; the commands are ``remotehands.lab.ssh_commands``; what a host is (its
record, the OS releases and Mac models) is ``remotehands.lab.ssh_host_model``.

An install (``startosinstall``, a DFU restore through a paired controller Mac, or ``begin_install`` when the
lab sees a host boot from the network) takes the host dark for ``install_seconds`` simulated seconds, that is
``install_seconds * time_scale`` real ones, and brings it back with the new build and, after an erase, a new
host key, autorestart off and ``erase_count`` one higher. The ``known_hosts`` file (OpenSSH format,
``[127.0.0.1]:PORT TYPE KEY``) always holds every host's current key.

Every command a host runs is a line of the lab's command log: ``{"ts", "bmc": host, "host": host, "via":
"ssh", "command": "startosinstall", "args": [...], "user": ..., "exit": 0}`` with the lab password masked
wherever it appears (stdin is never logged); so are the events ``erase``, ``upgrade``, ``install_done``,
``dfu``, ``netboot`` and ``auth_failed``.

Faults (``set_fault``): ``wrong_serial`` (the host reports another serial), ``install_never_finishes`` (an
install keeps the host dark while the fault is set), ``installer_missing`` (no installer app is seen, and
softwareupdate cannot fetch one), ``os_broken`` (powered, but its OS never comes up to listen on SSH,
until an erasing install replaces it), ``san_rescan_fails`` (a SAN rescan on the host fails, as the tool
reports it: ``remotehands.lab.ssh_storage``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import paramiko

from remotehands.lab.san import San
from remotehands.lab.ssh_commands import HostDown
from remotehands.lab.ssh_host_model import (
    DEFAULT_RELEASE,
    FAULTS,
    KINDS,
    MAC_KINDS,
    MODELS,
    HostState,
    Install,
    Release,
    SimHost,
    find_release,
    hardware,
    new_host_key,
)
from remotehands.lab.ssh_server import SshServer

log = logging.getLogger(__name__)

DEFAULT_TIME_SCALE = 2.0 / 2400  # a 40-minute install takes 2 real seconds
INSTALL_SECONDS = 40 * 60.0  # simulated
BOOT_DELAY_S = 0.3  # real
MASK = "********"


class CommandLogLike(Protocol):
    """``remotehands.lab.bmc_sim.CommandLog``, or anything that writes its lines."""

    def write(self, bmc: str, command: str, **extra: object) -> None: ...


class SshHosts:
    """Many simulated SSH hosts in one process, each on its own port of ``address``.

    ``password`` is the lab password (the BMCs' one) for ``username`` (and for ``root`` on ESXi and Linux);
    ``authorize_key`` adds public keys that log in as those users too. Call ``start`` once, ``stop`` at the
    end; hosts may be added before or after ``start``.
    """

    def __init__(
        self,
        password: str,
        *,
        username: str = "admin",
        command_log: CommandLogLike | None = None,
        known_hosts: Path | None = None,
        time_scale: float = DEFAULT_TIME_SCALE,
        install_seconds: float = INSTALL_SECONDS,
        boot_delay: float = BOOT_DELAY_S,
        address: str = "127.0.0.1",
    ) -> None:
        self.username = username
        self.known_hosts = known_hosts
        self.install_seconds = install_seconds
        self.boot_delay = boot_delay
        self.time_scale = DEFAULT_TIME_SCALE
        self.set_time_scale(time_scale)
        self.lock = threading.RLock()
        self._due_callbacks: list[tuple[SimHost, Callable[[], None]]] = []
        # Called as on_netboot(name, bsdp_server) when a Mac blessed for NetBoot powers on (from the lab's
        # loop thread: it may call begin_install). Without one the Mac boots its installed OS.
        self.on_netboot: Callable[[str, str], None] | None = None
        # The LUNs the hosts see (``remotehands.lab.ssh_storage``); settable after construction.
        self.san: San | None = None
        self._password = password
        self._command_log = command_log
        self._hosts: dict[str, SimHost] = {}
        self._authorized: set[bytes] = set()
        self._server = SshServer(self, address)

    # -- setting up ------------------------------------------------------------------------------------------

    def add_host(
        self,
        name: str,
        kind: str,
        *,
        serial: str,
        model: str | None = None,
        version: str | None = None,
        build: str | None = None,
        powered: Callable[[], bool] | None = None,
        controller_of: str | None = None,
        key_type: str = "ed25519",
        mdm_enrolled: bool = True,
        dep_enrolled: bool = True,
        autorestart: bool = False,
    ) -> int:
        """Add a host; returns its SSH port (fixed for the lab's life).

        ``kind``: mac-mini, mac-studio, mac-pro, esxi or linux. Macs have a ``model`` (apple-silicon, the
        default, t2 or intel-legacy). ``version`` and/or ``build`` name its OS (one is looked up in
        ``ssh_host_model.RELEASES``; both are taken as given); the default depends on the model or kind.
        ``powered``: its power (e.g. a PDU outlet), always on when None. ``controller_of``: the target Mac
        this controller Mac is paired with for ``macvdmtool dfu`` and ``cfgutil``.
        """
        if kind not in KINDS:
            raise ValueError(f"no host kind {kind!r}: one of {', '.join(KINDS)}")
        if kind in MAC_KINDS:
            model = model or MODELS[0]
            hardware(kind, model)  # refuses combinations Apple never made
        elif model is not None:
            raise ValueError(f"{kind} hosts have no model (got {model!r})")
        family = "macos" if kind in MAC_KINDS else kind
        release = _release(family, version, build) or find_release(family, DEFAULT_RELEASE[model or kind])
        host = SimHost(
            name, kind, model, serial, release.version, release.build, powered or (lambda: True), key_type,
            new_host_key(key_type), controller_of=controller_of, autorestart=autorestart,
            mdm_enrolled=mdm_enrolled, dep_enrolled=dep_enrolled,
            ecid=int.from_bytes(hashlib.sha256(name.encode()).digest()[:7]) >> 4,
        )  # fmt: skip
        host.down.set()
        with self.lock:
            if name in self._hosts:
                raise ValueError(f"there is already a host {name}")
            host.port = self._server.reserve(host)
            self._hosts[name] = host
            self._write_known_hosts()
        return host.port

    def authorize_key(self, key: paramiko.PKey) -> None:
        """Let ``key`` log in to every host (as the lab user, and root on ESXi/Linux)."""
        with self.lock:
            self._authorized.add(key.asbytes())

    def start(self) -> None:
        """Start serving (one thread for every host's port; paramiko adds one per connection)."""
        self._server.start()

    def stop(self) -> None:
        """Close every port and connection."""
        self._server.stop()

    # -- reading ---------------------------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Every host's name, in the order they were added."""
        with self.lock:
            return list(self._hosts)

    def port(self, name: str) -> int:
        """The SSH port of host ``name``."""
        return self._get(name).port

    def host_key(self, name: str) -> paramiko.PKey:
        """The public half of the host key ``name`` presents now."""
        with self.lock:
            key = self._get(name).key
        return paramiko.PKey.from_type_string(key.get_name(), key.asbytes())

    def state(self, name: str) -> HostState:
        """A snapshot of host ``name``."""
        with self.lock:
            h = self._get(name)
            return HostState(
                h.name, h.kind, h.model, h.serial, h.reported_serial, h.version, h.build, h.port, h.up,
                h.phase, h.autorestart, h.erase_count, h.mdm_enrolled, tuple(sorted(h.installers)),
                h.next_boot, frozenset(h.faults), h.key.fingerprint,
            )  # fmt: skip

    def wait_until(self, name: str, *, up: bool = True, timeout: float = 10.0) -> bool:
        """Wait until host ``name`` listens (``up``) or stops listening; False if it did not in time."""
        host, deadline = self._get(name), time.monotonic() + timeout
        while host.up != up:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    # -- changing --------------------------------------------------------------------------------------------

    def set_time_scale(self, scale: float) -> None:
        """From now on a simulated second lasts ``scale`` real seconds (installs already running keep theirs)."""
        if not scale > 0:
            raise ValueError(f"the time scale must be positive, not {scale}")
        self.time_scale = scale

    def set_fault(self, name: str, fault: str, enabled: bool = True) -> None:
        """Turn ``fault`` (one of ``FAULTS``) on or off for host ``name``."""
        if fault not in FAULTS:
            raise ValueError(f"no fault {fault!r}: one of {', '.join(sorted(FAULTS))}")
        with self.lock:
            faults = self._get(name).faults
            if enabled:
                faults.add(fault)
            else:
                faults.discard(fault)

    def set_mdm_enrolled(self, name: str, enrolled: bool) -> None:
        """What ``profiles status -type enrollment`` says about MDM enrollment (the MDM side sets it)."""
        with self.lock:
            self._get(name).mdm_enrolled = enrolled

    def begin_install(
        self,
        name: str,
        build: str,
        callback: Callable[[], None] | None = None,
        *,
        version: str | None = None,
        erase: bool = True,
        method: str = "network-boot",
        seconds: float | None = None,
    ) -> None:
        """Install ``build`` (a build or version of the catalogue; any pair with ``version``) on ``name``.

        The host goes dark now (it stops listening before this returns) for ``seconds`` (default
        ``install_seconds``) simulated seconds, then comes back with the new build and, when ``erase``, a
        new host key; ``callback()`` is called then, from the lab's loop thread. The hook for a host that
        boots from the network (PXE, NetBoot); startosinstall and cfgutil use it too. A second install
        before the first ends replaces it (and its erase counts too).
        """
        host = self._get(name)
        release = _release(host.family, version, build)
        if release is None:
            raise ValueError("begin_install needs a build or a version")
        new_key = new_host_key(host.key_type) if erase else None
        duration = (self.install_seconds if seconds is None else seconds) * self.time_scale
        with self.lock:
            callbacks = host.install.callbacks if host.install is not None else []
            host.install = Install(release, erase, method, time.monotonic() + duration, new_key, callbacks)
            if callback is not None:
                callbacks.append(callback)
            host.phase = "installing"
            host.erase_count += int(erase)
        self.log(host, "erase" if erase else "upgrade", method=method, build=release.build)
        self._server.sync()

    def enter_dfu(self, name: str) -> None:
        """Host ``name`` restarts into DFU mode (dark until restored or power-cycled)."""
        host = self._get(name)
        with self.lock:
            host.phase = "dfu"
        self.log(host, "dfu")
        self._server.sync()

    # -- for the server and the commands ---------------------------------------------------------------------

    def users(self, host: SimHost) -> set[str]:
        """Who may log in to ``host``."""
        return {self.username} if host.family == "macos" else {self.username, "root"}

    def check_password(self, host: SimHost, user: str, password: str) -> bool:
        """Whether ``user`` may log in to ``host`` with ``password`` (also: a Mac's volume owner)."""
        return user in self.users(host) and hmac.compare_digest(password.encode(), self._password.encode())

    def check_key(self, host: SimHost, user: str, key: paramiko.PKey) -> bool:
        """Whether ``user`` may log in to ``host`` with ``key``."""
        with self.lock:
            return user in self.users(host) and key.asbytes() in self._authorized

    def paired_target(self, controller: SimHost) -> SimHost | None:
        """The Mac a controller Mac is paired with, if any."""
        with self.lock:
            return self._hosts.get(controller.controller_of or "")

    def sim_sleep(self, host: SimHost, seconds: float) -> None:
        """Let ``seconds`` simulated seconds pass on ``host``; raises HostDown if it goes down meanwhile."""
        if host.down.wait(seconds * self.time_scale):
            raise HostDown(host.name)

    def mask(self, args: list[str]) -> list[str]:
        """``args`` with the lab password masked wherever it appears."""
        return [arg.replace(self._password, MASK) if self._password else arg for arg in args]

    def log(self, host: SimHost, command: str, **extra: object) -> None:
        """Append one line about ``host`` to the lab's command log."""
        if self._command_log is not None:
            self._command_log.write(host.name, command, host=host.name, via="ssh", **extra)

    def advance(self, now: float) -> list[tuple[SimHost, bool]]:
        """One step of every host's life (power, boot delay, installs, NetBoot) at ``now``
        (time.monotonic); returns each host with whether it should listen. Run by the server's thread."""
        wanted, finished, netboots = [], [], []
        with self.lock:
            hosts = list(self._hosts.values())
        for host in hosts:
            try:
                powered = bool(host.powered())
            except Exception:
                log.exception("lab host %s: reading its power failed", host.name)
                powered = False
            with self.lock:
                if not powered:
                    host.on_since = None
                    host.phase = "running" if host.phase == "dfu" else host.phase
                elif host.on_since is None:
                    host.on_since = now
                    if host.next_boot == "netboot" and host.phase == "running":
                        host.next_boot = None
                        netboots.append((host, host.netboot_server or ""))
                install = host.install
                if (
                    install is not None
                    and now >= install.until
                    and "install_never_finishes" not in host.faults
                ):
                    self._finish_install(host, install)
                    finished.append((host, install))
                booted = host.on_since is not None and now - host.on_since >= self.boot_delay
                broken = "os_broken" in host.faults
                wanted.append((host, powered and booted and host.phase == "running" and not broken))
        for host, server in netboots:
            self.log(host, "netboot", server=server)
            _call(self.on_netboot, host.name, server)
        for host, install in finished:
            self.log(host, "install_done", method=install.method, build=install.release.build)
            # Called back once the host listens again (``after_sync``), as an installer phones home only
            # once the host is on the network: a caller that connects at once must find it up.
            with self.lock:
                self._due_callbacks.extend((host, callback) for callback in install.callbacks)
        return wanted

    def after_sync(self) -> None:
        """Run the install callbacks of hosts that listen again (the server's thread, after ``advance``)."""
        with self.lock:
            due, self._due_callbacks = self._due_callbacks, []
            ready = [(h, c) for h, c in due if h.up]
            self._due_callbacks = [(h, c) for h, c in due if not h.up]
        for _, callback in ready:
            _call(callback)

    # -- inside ----------------------------------------------------------------------------------------------

    def _get(self, name: str) -> SimHost:
        try:
            return self._hosts[name]
        except KeyError:
            raise KeyError(f"no simulated host {name!r}") from None

    def _finish_install(self, host: SimHost, install: Install) -> None:
        host.version, host.build = install.release.version, install.release.build
        if install.erase:
            host.key = install.new_key or new_host_key(host.key_type)
            host.autorestart = False
            host.installers.clear()
            host.mdm_enrolled = host.dep_enrolled  # a DEP Mac enrolls again in Setup Assistant
            host.faults.discard("os_broken")  # a fresh OS
        host.next_boot = None
        host.phase, host.install = "running", None
        self._write_known_hosts()

    def _write_known_hosts(self) -> None:
        if self.known_hosts is None:
            return
        lines = ["# remotehands lab: the SSH host keys of its simulated hosts, rewritten when one changes"]
        for h in self._hosts.values():
            lines += [
                f"# {h.name}",
                f"[{self._server.address}]:{h.port} {h.key.get_name()} {h.key.get_base64()}",
            ]
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.known_hosts.with_name(f".{self.known_hosts.name}.{os.getpid()}.tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(self.known_hosts)


def _release(family: str, version: str | None, build: str | None) -> Release | None:
    if version and build:
        return Release(family, version, build)
    if version or build:
        return find_release(family, version or build or "")
    return None


def _call(function: Callable[..., None] | None, *args: object) -> None:
    if function is None:
        return
    try:
        function(*args)
    except Exception:
        log.exception("lab hosts: a callback failed")
