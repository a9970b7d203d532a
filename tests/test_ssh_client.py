"""HostSsh against servers that misbehave at the wire (127.0.0.1): a host that closes the connection in the
middle of the SSH handshake, as one going down does, is unreachable (retried), never an internal error."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from remotehands.errors import DeviceUnreachable
from remotehands.ssh.client import HostSsh
from remotehands.ssh.keys import PinnedKey

KEY = PinnedKey(
    "ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAIHhN5Qd3b0u5K1gS3pVqgYx1f0kVtHq2n3e6m9y8vXwZ", "inventory"
)


@pytest.fixture
def closes_after_banner() -> Iterator[int]:
    """A TCP server that sends an OpenSSH banner, reads the client's, then closes: paramiko sees EOFError."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
                conn.recv(256)
                # Half-close, then read whatever else the client sends (its KEXINIT) until it hangs up:
                # closing with unread data would send a reset, and paramiko would see ConnectionResetError
                # instead (it did once, under CI load).
                conn.shutdown(socket.SHUT_WR)
                conn.settimeout(5)
                try:
                    while conn.recv(4096):
                        pass
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    server.close()


def test_a_host_closing_mid_handshake_is_unreachable(closes_after_banner: int) -> None:
    with pytest.raises(
        DeviceUnreachable, match=r"mac-01 \(127\.0\.0\.1:\d+\) did not answer on SSH: EOFError"
    ):
        HostSsh("mac-01", "127.0.0.1", closes_after_banner, "admin", password="x", expected=KEY, timeout=3)
