"""One Netmiko CLI session to a network device, with its host key checked and its failures translated.

The device's pinned key (``ssh_host_key`` in the inventory) is written to a private known_hosts file for the
session and Netmiko is told to reject any other (``ssh_strict``; no AutoAddPolicy, no system known_hosts).
Netmiko's and paramiko's exceptions are mapped where they enter:

- no TCP answer, SSH negotiation timeout → ``DeviceUnreachable`` (retryable);
- authentication refused, host key mismatch or unknown → ``DeviceRefused``;
- prompt not found, failed to enter config mode → ``DeviceRefused`` naming the platform;
- read timeout → ``DeviceUnreachable`` with the command and the timeout;
- the connection dropped mid-session → ``SessionDropped`` (a ``DeviceUnreachable``) naming the last command.

Every session keeps its log (Netmiko's session_log, passwords masked by Netmiko, then our redactor and the
platform's secret patterns) for the ticket.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paramiko

from remotehands import redaction
from remotehands.errors import BadInput, DeviceRefused, DeviceUnreachable
from remotehands.inventory.models import NetworkDevice
from remotehands.network.platforms import Platform, platform
from remotehands.secrets import resolve

CONNECT_TIMEOUT_S = 10.0


class SessionDropped(DeviceUnreachable):
    """The device closed the session (or stopped answering) in the middle of it."""


class NetSession:
    """An open CLI session; use ``open_session``."""

    def __init__(self, device: NetworkDevice, conn: Any, log: io.BytesIO, spec: Platform) -> None:
        self.device = device
        self.platform = spec
        self._conn = conn
        self._log = log
        self.last = ""  # the last command sent, for error messages

    def show(self, command: str) -> str:
        """The output of an operational command (no prompt, no echo)."""
        with self._translated(command, self.platform.read_timeout):
            return str(
                self._conn.send_command(command, read_timeout=self.platform.read_timeout, strip_prompt=True)
            )

    def send(self, command: str, *, timeout: float | None = None) -> str:
        """Send one line in whatever mode the session is in and return everything up to the next prompt
        (or the platform's y/n question for that command)."""
        question = self.platform.confirm_prompts.get(command)
        with self._translated(command, timeout or self.platform.read_timeout):
            output = self._conn.send_command(
                command,
                expect_string=question or self._prompt_pattern(),
                read_timeout=timeout or self.platform.read_timeout,
                strip_prompt=False,
                strip_command=True,
                cmd_verify=True,
            )
        return str(output)

    def enter_config(self, **values: object) -> str:
        """Enter configuration mode with the platform's command (e.g. with a revert timer)."""
        if not self.platform.config_enter:
            return ""
        return self.send(self.platform.config_enter.format(**values))

    def exit_config(self) -> str:
        if not self.platform.config_exit:
            return ""
        return self.send(self.platform.config_exit)

    def running_config(self) -> str:
        """The full running configuration, as ``show_running`` prints it."""
        return self.show(self.platform.show_running)

    def log(self) -> bytes:
        """The session so far, with registered secrets and the platform's secret fields masked."""
        text = self._log.getvalue().decode("utf-8", "replace")
        return redaction.redact(self.platform.masked(text)).encode()

    def _prompt_pattern(self) -> str:
        # Every mode's prompt starts with the device's base prompt (hostname, or user@hostname on Junos)
        # and ends in one of the platform's terminators.
        base = re.escape(str(self._conn.base_prompt))
        return rf"{base}[^\r\n]*[#>$]\s*$"

    @contextmanager
    def _translated(self, command: str, timeout: float) -> Iterator[None]:
        from netmiko.exceptions import NetmikoBaseException, ReadTimeout

        self.last = command
        try:
            yield
        except ReadTimeout as exc:
            raise DeviceUnreachable(
                f"{self.device.name} did not answer {command!r} within its read timeout "
                f"({timeout:g}s): {_first_line(exc)}",
                fix="check the device's CPU and the management path; raise the platform's read_timeout if it "
                "is just slow",
            ) from exc
        except (OSError, EOFError, paramiko.SSHException, NetmikoBaseException) as exc:
            raise SessionDropped(
                f"the session to {self.device.name} dropped after {command!r}: {_first_line(exc)}",
                fix="the change pipeline checks the device's config before doing anything else",
            ) from exc

    def close(self) -> None:
        # The session may already be gone (a dropped connection): nothing left to close then.
        with contextlib.suppress(Exception):
            self._conn.disconnect()


@contextmanager
def open_session(device: NetworkDevice) -> Iterator[NetSession]:
    """A session to ``device`` (closed on exit). Raises ``DeviceUnreachable`` or ``DeviceRefused`` as the
    module docstring says, ``BadInput`` when the inventory has no pinned host key for it."""
    # Netmiko is imported here, not with the module: every worker process imports the task modules, and
    # Netmiko's import (all its platforms, TextFSM) is the heaviest of them.
    from netmiko import ConnectHandler
    from netmiko.exceptions import (
        NetmikoAuthenticationException,
        NetmikoBaseException,
        NetmikoTimeoutException,
        ReadTimeout,
    )

    spec = platform(device.platform)
    if not device.ssh_host_key:
        raise BadInput(
            f"inventory: {device.name} has no ssh_host_key",
            fix="pin the device's SSH host key (its known_hosts line without the host name) as ssh_host_key",
        )
    password = resolve(device.credentials.password, field=f"{device.name}.credentials.password")
    port = device.port or 22
    host_entry = device.mgmt_address if port == 22 else f"[{device.mgmt_address}]:{port}"
    log = io.BytesIO()
    with tempfile.TemporaryDirectory(prefix="rh-known-hosts-") as tmp:
        known_hosts = Path(tmp) / "known_hosts"
        fd = os.open(known_hosts, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{host_entry} {device.ssh_host_key.strip()}\n")
        try:
            conn = ConnectHandler(
                device_type=device.platform,
                host=device.mgmt_address,
                port=port,
                username=device.credentials.username,
                password=password,
                secret=password,
                ssh_strict=True,
                system_host_keys=False,
                alt_host_keys=True,
                alt_key_file=str(known_hosts),
                allow_agent=False,
                use_keys=False,
                conn_timeout=CONNECT_TIMEOUT_S,
                auth_timeout=CONNECT_TIMEOUT_S,
                banner_timeout=CONNECT_TIMEOUT_S,
                read_timeout_override=None,
                fast_cli=True,
                session_log=log,
            )
        except NetmikoAuthenticationException as exc:
            raise DeviceRefused(
                f"{device.name} refused the login of {device.credentials.username}",
                fix="check the device's credentials in the inventory and the account on the device",
            ) from exc
        except paramiko.BadHostKeyException as exc:
            raise DeviceRefused(
                f"{device.name} presented a host key that differs from the inventory's ssh_host_key; not "
                "logging in (it may be replaced hardware, or someone in the path)",
                fix="verify the device's key at its console, then update ssh_host_key in the inventory",
            ) from exc
        except NetmikoTimeoutException as exc:
            # Netmiko wraps paramiko's host key refusals in its timeout exception.
            text = str(exc)
            if "known_hosts" in text or "does not match" in text or "host key" in text.lower():
                raise DeviceRefused(
                    f"{device.name} did not present the host key the inventory pins (ssh_host_key); not "
                    "logging in (it may be replaced hardware, or someone in the path)",
                    fix="verify the device's key at its console, then update ssh_host_key in the inventory",
                ) from exc
            raise DeviceUnreachable(
                f"{device.name} at {device.mgmt_address}:{port} did not answer SSH: {_first_line(exc)}",
                fix="check that the device is up and its management address and port",
            ) from exc
        except paramiko.SSHException as exc:
            if "known_hosts" in str(exc) or "host key" in str(exc).lower():
                raise DeviceRefused(
                    f"{device.name}'s host key was not accepted: {_first_line(exc)}",
                    fix="verify the device's key at its console, then update ssh_host_key in the inventory",
                ) from exc
            raise DeviceUnreachable(
                f"the SSH session to {device.name} failed: {_first_line(exc)}", fix="try again"
            ) from exc
        except (TimeoutError, OSError, EOFError) as exc:
            raise DeviceUnreachable(
                f"{device.name} at {device.mgmt_address}:{port} did not answer SSH: {_first_line(exc)}",
                fix="check that the device is up and its management address and port",
            ) from exc
        except ReadTimeout as exc:
            raise DeviceUnreachable(
                f"{device.name} logged us in but its prompt did not come: {_first_line(exc)}",
                fix="check the device's CPU and the management path",
            ) from exc
        except (ValueError, NetmikoBaseException) as exc:
            # Netmiko raises ValueError for "Failed to enter configuration mode", "Pattern not detected",
            # "Router prompt not found": the device answered in a way the platform does not.
            raise DeviceRefused(
                f"{device.name} did not behave as a {device.platform} device: {_first_line(exc)}",
                fix="check the platform in the inventory and the account's privilege level",
            ) from exc
        _fail_fast_on_close(conn)
        session = NetSession(device, conn, log, spec)
        try:
            yield session
        finally:
            session.close()


def _fail_fast_on_close(conn: Any) -> None:
    """Make a read on a channel the device closed fail at once. Netmiko only notices a close when data is
    ready, so a dropped session otherwise looks like a silent device until the read timeout (30 s and more)."""
    from netmiko.exceptions import ReadException

    channel = conn.channel
    read = channel.read_channel

    def read_channel() -> str:
        data = str(read())
        remote = channel.remote_conn
        if not data and remote is not None and (remote.closed or remote.eof_received):
            raise ReadException("the device closed the session")
        return data

    channel.read_channel = read_channel


def _first_line(exc: BaseException) -> str:
    text = redaction.redact(str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__
