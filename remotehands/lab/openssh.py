"""A real OpenSSH server on 127.0.0.1: the stand-in Mac or ESXi host of the playbook tests.

Ansible reaches real hosts through OpenSSH, so the playbook tests do too. ``start_sshd(directory)`` runs
Debian's ``/usr/sbin/sshd`` (package ``openssh-server``) in the foreground (``-D -e``) on a free port of
127.0.0.1. Its config, host key, ``authorized_keys``, the client's key, a ``known_hosts`` file, its log and
the stand-ins' state file are all written under ``directory``: no system file is read for a login or
written (as root, sshd insists on its privilege-separation directory ``/run/sshd``, made if missing).

Only the current user may log in, and only with the generated client key. Every session's PATH starts
with the stand-in commands of ``remotehands.lab.standins`` (``sw_vers``, ``softwareupdate``, ``pmset``,
``esxcli``), which keep what they change in the state file that ``RH_STANDIN_STATE`` names, so a second
playbook run finds the work of the first. One sshd is one host: give each its own directory.

Host keys are checked, never skipped: point ``UserKnownHostsFile`` at ``known_hosts`` and set
``StrictHostKeyChecking=yes`` (``StandInHost.ansible_vars`` does both).

    with start_sshd(tmp_path / "mac") as host:
        inventory = {"all": {"hosts": {"mac-01": host.ansible_vars()}}}
        ...
        assert host.state()["mac"]["version"] == "14.4.1"
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from remotehands.errors import ActionFailed, BadInput
from remotehands.lab.standins import BIN_DIR, PYTHON_ENV, STATE_ENV, default_state, read_state, write_state

log = logging.getLogger(__name__)

ADDRESS = "127.0.0.1"
SSHD = Path("/usr/sbin/sshd")
SFTP_SERVER = Path("/usr/lib/openssh/sftp-server")  # Ansible copies modules over SFTP unless pipelining
PRIVSEP_DIR = Path("/run/sshd")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
START_ATTEMPTS = 3  # another process may take the free port between our probe and sshd's bind


class StandInHost:
    """A running stand-in sshd: where it listens, who logs in with which key, and its stand-ins' state."""

    def __init__(
        self,
        *,
        directory: Path,
        port: int,
        user: str,
        client_key: Path,
        known_hosts: Path,
        host_key_line: str,
        state_file: Path,
        python: str,
        process: subprocess.Popen[bytes],
    ) -> None:
        self.host = ADDRESS
        self.directory = directory
        self.port = port
        self.user = user
        self.client_key = client_key
        self.known_hosts = known_hosts
        self.host_key_line = host_key_line  # "ssh-ed25519 AAAA...", the host's public key
        self.state_file = state_file
        self.python = python
        self.log_path = directory / "sshd.log"
        self._process = process

    def state(self) -> dict[str, Any]:
        """What the stand-in commands have left in the state file. Raises OSError/ValueError if unreadable."""
        return read_state(self.state_file)

    def set_state(self, state: dict[str, Any]) -> None:
        """Replace the stand-ins' state (e.g. another macOS version). Raises OSError if it cannot be written."""
        write_state(self.state_file, state)

    def ansible_vars(self) -> dict[str, Any]:
        """Inventory variables that make Ansible log in here: address, port, user, key, host key checking
        against ``known_hosts`` (strict), and this interpreter for modules."""
        ssh_args = [
            f"-o UserKnownHostsFile={shlex.quote(str(self.known_hosts))}",
            "-o StrictHostKeyChecking=yes",
            "-o GlobalKnownHostsFile=/dev/null",
            "-o IdentitiesOnly=yes",
        ]
        return {
            "ansible_host": self.host,
            "ansible_port": self.port,
            "ansible_user": self.user,
            "ansible_ssh_private_key_file": str(self.client_key),
            "ansible_ssh_common_args": " ".join(ssh_args),
            "ansible_python_interpreter": self.python,
        }

    @property
    def running(self) -> bool:
        """True while the sshd listener is alive."""
        return self._process.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the sessions and then the listener. Idempotent; never raises for a process already gone.

        Each connection runs in its own session (sshd calls setsid), so signalling the listener alone would
        leave them; they go first, so that the listener still reaps them.
        """
        # Only a live listener's children: once it is reaped its pid may belong to someone else.
        sessions = _children(self._process.pid) if self._process.poll() is None else []
        for pid in sessions:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while sessions and time.monotonic() < deadline and set(sessions) & set(_children(self._process.pid)):
            time.sleep(0.02)
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout)

    def __enter__(self) -> StandInHost:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_sshd(
    directory: Path,
    *,
    state: dict[str, Any] | None = None,
    python: str | None = None,
    timeout: float = 10.0,
) -> StandInHost:
    """Start a stand-in host's sshd with everything under ``directory`` (created if missing) and return
    once its port answers with an SSH banner.

    ``state`` is the stand-ins' initial state (default: ``standins.default_state()``); ``python`` runs the
    stand-ins and Ansible's modules (default: this interpreter). Raises BadInput when sshd is not
    installed, ActionFailed when it does not come up within ``timeout`` seconds (its log says why).
    """
    if not SSHD.exists():
        raise BadInput(
            f"{SSHD} is missing: the playbook tests need a real OpenSSH server",
            fix="apt-get install openssh-server (make test installs it when run as root)",
        )
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    user = pwd.getpwuid(os.getuid()).pw_name
    host_pub = _write_key(directory / "ssh_host_ed25519_key")
    client_pub = _write_key(directory / "client_key")
    (directory / "authorized_keys").write_text(client_pub + "\n")
    state_file = directory / "standin-state.json"
    write_state(state_file, state if state is not None else default_state())
    python = python or sys.executable
    for attempt in range(1, START_ATTEMPTS + 1):
        port = _free_port()
        config = directory / "sshd_config"
        config.write_text(_config(directory, port, user, state_file, python))
        process = _spawn(config, directory / "sshd.log")
        if _wait_for_banner(process, port, timeout):
            known_hosts = directory / "known_hosts"
            known_hosts.write_text(f"[{ADDRESS}]:{port} {host_pub}\n")
            log.info("stand-in sshd %s listening on %s:%d (pid %d)", directory, ADDRESS, port, process.pid)
            return StandInHost(
                directory=directory,
                port=port,
                user=user,
                client_key=directory / "client_key",
                known_hosts=known_hosts,
                host_key_line=host_pub,
                state_file=state_file,
                python=python,
                process=process,
            )
        text = (directory / "sshd.log").read_text(errors="replace")
        if "Address already in use" not in text or attempt == START_ATTEMPTS:
            raise ActionFailed(
                f"sshd for the stand-in host in {directory} did not answer on {ADDRESS}:{port}: "
                f"{text.strip().splitlines()[-1] if text.strip() else 'no output'}",
                fix=f"read {directory / 'sshd.log'} and {config}",
            )
    raise AssertionError("unreachable")  # the loop returns or raises


def _write_key(path: Path) -> str:
    """Write a new Ed25519 private key (OpenSSH format, mode 0600) to ``path``; return its public line."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    path.unlink(missing_ok=True)
    # ssh and sshd refuse a private key that others can read: create it 0600, never chmod afterwards.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    line = public.decode()
    path.with_name(path.name + ".pub").write_text(line + "\n")
    return line


def _config(directory: Path, port: int, user: str, state_file: Path, python: str) -> str:
    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    env = {"PATH": f"{BIN_DIR}:{SYSTEM_PATH}", STATE_ENV: str(state_file), PYTHON_ENV: python}
    # sshd expands %-tokens in AuthorizedKeysFile: a literal % in the directory must be doubled.
    authorized = str(directory / "authorized_keys").replace("%", "%%")
    lines = [
        "# A remotehands lab stand-in host (remotehands.lab.openssh); no system sshd reads this file.",
        f"ListenAddress {ADDRESS}:{port}",
        f"HostKey {quoted(str(directory / 'ssh_host_ed25519_key'))}",
        "PidFile none",
        f"AuthorizedKeysFile {quoted(authorized)}",
        "AuthenticationMethods publickey",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        # PAM would bring in the system's session modules (lastlog, motd, limits): not ours to touch.
        "UsePAM no",
        "PermitRootLogin prohibit-password",
        f"AllowUsers {user}",
        f"StrictModes {'yes' if _strict_modes_hold(directory) else 'no'}",
        "PrintMotd no",
        "PrintLastLog no",
        "LogLevel VERBOSE",
        f"Subsystem sftp {SFTP_SERVER}",
        # SetEnv overrides sshd's default PATH (sshd_config(5)); OpenSSH has it since 7.8.
        "SetEnv " + " ".join(quoted(f"{name}={value}") for name, value in env.items()),
    ]
    return "\n".join(lines) + "\n"


def _strict_modes_hold(directory: Path) -> bool:
    """Whether sshd's StrictModes would accept ``directory``/authorized_keys: every directory from it up
    to / owned by root or us and not writable by group or others (a pytest tmp dir under /tmp is not)."""
    uid = os.getuid()
    for path in (directory, *directory.parents):
        info = path.stat()
        if info.st_uid not in (0, uid) or info.st_mode & 0o022:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((ADDRESS, 0))
        return int(sock.getsockname()[1])


def _spawn(config: Path, log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as out:
        # sshd re-executes itself by absolute path for every connection; -e sends its log to stderr.
        return subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C meant for pytest should not reach it first
        )


def _wait_for_banner(process: subprocess.Popen[bytes], port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection((ADDRESS, port), timeout=1.0) as sock:
            if sock.recv(64).startswith(b"SSH-2.0-"):
                return True
        time.sleep(0.05)
    process.terminate()
    process.wait(5)
    return False


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux /proc; empty elsewhere)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # The command name may hold spaces and parentheses: the fields start after its last ')'.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found
