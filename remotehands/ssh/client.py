"""One SSH session to a host, its host key checked against the pin (``ssh.keys``).

Policies: with a pinned key, the host must present exactly that key (a changed key is refused, fatal);
without one, the connection is refused, unless the caller is the reimage job of that very host, which
takes the key the freshly installed OS presents and pins it (``accept_new``). There is no auto-add.
Secrets (an installer's volume-owner password) go on stdin, never on a command line; commands and their
output pass through the redactor before they reach a log or an exception.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paramiko

from remotehands import redaction
from remotehands.errors import DeviceRefused, DeviceUnreachable
from remotehands.ssh.keys import PinnedKey, fingerprint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CommandResult:
    command: str
    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


class _TakeNewKey(paramiko.MissingHostKeyPolicy):
    """Accept the one key the host presents and hand it to the caller (reimage jobs only)."""

    def __init__(self, take: Callable[[paramiko.PKey], None]) -> None:
        self.take = take

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        self.take(key)


def _known_name(address: str, port: int) -> str:
    return address if port == 22 else f"[{address}]:{port}"


class HostSsh:
    """An open SSH session; use as a context manager. Raises ``DeviceUnreachable`` when the host does not
    answer, ``DeviceRefused`` for a refused login, a changed host key or no pinned key."""

    def __init__(
        self,
        name: str,
        address: str,
        port: int,
        user: str,
        *,
        password: str | None = None,
        pkey: paramiko.PKey | None = None,
        expected: PinnedKey | None = None,
        accept_new: Callable[[paramiko.PKey], None] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.name = name
        self._client = paramiko.SSHClient()
        if accept_new is not None:
            self._client.set_missing_host_key_policy(_TakeNewKey(accept_new))
        else:
            if expected is None:
                raise DeviceRefused(
                    f"no SSH host key is pinned for {name}",
                    fix=f"put ssh_host_key in the inventory, or check the fingerprint and run: "
                    f"remotehands ssh pin {name} --fingerprint SHA256:...",
                )
            self._client.set_missing_host_key_policy(paramiko.RejectPolicy())
            self._client.get_host_keys().add(
                _known_name(address, port), expected.key_type, expected.as_paramiko()
            )
        self._expected = expected
        try:
            self._client.connect(
                address,
                port=port,
                username=user,
                password=password,
                pkey=pkey,
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
                look_for_keys=False,
                allow_agent=False,
            )
        except paramiko.BadHostKeyException as exc:
            self._client.close()
            raise DeviceRefused(
                f"{name} presented SSH host key {fingerprint(exc.key.asbytes())}, not the pinned "
                f"{expected.fingerprint if expected else '?'}",
                fix="if the host was reinstalled outside remotehands, check it at the console and pin the new "
                f"key with: remotehands ssh pin {name} --fingerprint ...; otherwise treat it as an intruder",
            ) from None
        except paramiko.AuthenticationException:
            self._client.close()
            raise DeviceRefused(
                f"{name} refused the SSH login of {user}",
                fix="check the ssh credentials reference in the inventory",
            ) from None
        # EOFError: what paramiko raises when the server closes the socket mid-handshake (a host going down)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            self._client.close()
            raise DeviceUnreachable(
                f"{name} ({address}:{port}) did not answer on SSH: {type(exc).__name__}",
                fix="the host may be down or rebooting; the step is retried",
            ) from None
        except BaseException:  # e.g. the host-key policy refused the key: never leave the transport open
            self._client.close()
            raise

    def __enter__(self) -> HostSsh:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def run(self, command: str, *, stdin: bytes | None = None, timeout: float = 60.0) -> CommandResult:
        """Run ``command``; ``stdin`` (e.g. a password) is written and closed. Raises ``DeviceUnreachable``
        when the session breaks (the host may have gone down, e.g. into an install)."""
        shown = redaction.redact(command)
        try:
            chan_in, chan_out, chan_err = self._client.exec_command(command, timeout=timeout)
            if stdin is not None:
                chan_in.write(stdin)
                chan_in.flush()
            chan_in.channel.shutdown_write()
            out = chan_out.read().decode(errors="replace")
            err = chan_err.read().decode(errors="replace")
            status = chan_out.channel.recv_exit_status()
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise DeviceUnreachable(
                f"{self.name}: the SSH session broke during '{shown.split()[0] if shown else ''}': "
                f"{type(exc).__name__}",
                fix="the host may have gone down; the step reconciles from what it observes",
            ) from None
        log.info("%s: %s -> exit %s", self.name, shown, status)
        return CommandResult(shown, status, redaction.redact(out), redaction.redact(err))
