"""The network side of the simulated SSH hosts (``remotehands.lab.ssh_host``): one TCP port per host, opened
and closed as the host goes up and down, and paramiko serving password and public-key logins and ``exec``
commands (no shell).

A host's port stays bound for the lab's life but listens only while the host is up, so a host that is down
refuses connections (and its open connections are cut, as when a real one loses power or reboots). One
thread watches every port (``selectors``, not ``select()``: no 1,024-socket limit) and steps the hosts'
state every ``TICK_S``; paramiko runs one thread per connection and each command gets one more.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time
from typing import TYPE_CHECKING

import paramiko
from paramiko.common import (
    AUTH_FAILED,
    AUTH_SUCCESSFUL,
    MSG_CHANNEL_REQUEST,
    OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED,
    OPEN_SUCCEEDED,
)

from remotehands.lab.ssh_commands import Exec, HostDown, run_command

if TYPE_CHECKING:
    from remotehands.lab.ssh_host import SshHosts
    from remotehands.lab.ssh_host_model import SimHost

log = logging.getLogger(__name__)

TICK_S = 0.02
# paramiko's own log: a client that only reads the banner (remotehands.bmc.reachable) is an ERROR there.
WIRE_LOG = "remotehands.lab.ssh_server.wire"
BANNERS = {
    "macos": "SSH-2.0-OpenSSH_9.7",
    "esxi": "SSH-2.0-OpenSSH_9.3",
    "linux": "SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13.5",
}


class SshServer:
    """Serves the hosts of one ``SshHosts`` on ``address``."""

    def __init__(self, lab: SshHosts, address: str) -> None:
        self.address = address
        self._lab = lab
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._socks: dict[str, socket.socket] = {}
        self._transports: dict[str, list[paramiko.Transport]] = {}
        self._stop = threading.Event()
        self._ticks = 0
        self._ticked = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="ssh-hosts", daemon=True)
        logging.getLogger(WIRE_LOG).setLevel(logging.CRITICAL)

    def reserve(self, host: SimHost) -> int:
        """Bind a port for ``host`` (not listening yet); returns it."""
        sock = _bound(self.address, 0)
        self._socks[host.name] = sock
        return int(sock.getsockname()[1])

    def start(self) -> None:
        """Start the thread that opens, closes and accepts on every host's port."""
        self._thread.start()

    def stop(self) -> None:
        """Stop that thread; close every port and connection."""
        self._stop.set()
        self._wake()
        if self._thread.is_alive():
            self._thread.join(5.0)
        for name, transports in self._transports.items():
            for transport in transports:
                transport.close()
            self._socks[name].close()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def sync(self) -> None:
        """Return once the thread has stepped every host at least once from now (so a host that was just
        made to go dark has stopped listening). No wait when called from that thread or before ``start``."""
        if threading.current_thread() is self._thread or not self._thread.is_alive():
            return
        with self._ticked:
            target = self._ticks + 2
            self._wake()
            self._ticked.wait_for(lambda: self._ticks >= target or self._stop.is_set(), timeout=5.0)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(TICK_S):
                if key.data is None:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                else:
                    self._accept(key.data)
            try:
                for host, wanted in self._lab.advance(time.monotonic()):
                    if wanted and not host.up:
                        self._listen(host)
                    elif not wanted and host.up:
                        self._unlisten(host)
                self._lab.after_sync()
            except Exception:
                log.exception("lab SSH hosts: a step failed")
            with self._ticked:
                self._ticks += 1
                self._ticked.notify_all()

    def _listen(self, host: SimHost) -> None:
        sock = self._socks[host.name]
        sock.listen(64)
        sock.setblocking(False)
        self._selector.register(sock, selectors.EVENT_READ, host)
        with self._lab.lock:
            host.up = True
            host.down.clear()
        log.info("lab host %s is up on %s:%d", host.name, self.address, host.port)

    def _unlisten(self, host: SimHost) -> None:
        # Stop listening before saying so: a client that sees ``up`` False must find the port refusing (it
        # did not, once, under CI load: the flag was set, the socket not yet closed).
        old = self._socks[host.name]
        self._selector.unregister(old)
        old.close()
        with self._lab.lock:
            host.up = False
            host.down.set()
        self._socks[host.name] = _bound(self.address, host.port)
        for transport in self._transports.pop(host.name, []):
            transport.close()
        log.info("lab host %s is down", host.name)

    def _accept(self, host: SimHost) -> None:
        live = [t for t in self._transports.get(host.name, []) if t.is_active()]
        self._transports[host.name] = live
        while True:
            try:
                conn, _ = self._socks[host.name].accept()
            except (BlockingIOError, InterruptedError):
                return
            conn.setblocking(True)
            transport = _HostTransport(conn)
            transport.set_log_channel(WIRE_LOG)
            transport.local_version = BANNERS[host.family]
            with self._lab.lock:
                transport.add_server_key(host.key)
            try:
                transport.start_server(threading.Event(), _Server(self._lab, host))
            except (paramiko.SSHException, OSError) as exc:
                log.info("lab host %s: connection failed: %s", host.name, exc)
                transport.close()
                continue
            live.append(transport)


def _bound(address: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    return sock


class _Server(paramiko.ServerInterface):
    """One connection to one host: who logged in, and the commands it asked for."""

    def __init__(self, lab: SshHosts, host: SimHost) -> None:
        self.lab, self.host = lab, host
        self.user: str | None = None
        self._pending: dict[int, threading.Thread] = {}

    def get_allowed_auths(self, username: str) -> str:
        """Password and public key, as an OpenSSH server usually offers."""
        return "publickey,password"

    def check_auth_password(self, username: str, password: str) -> int:
        """The lab password for a lab user; a failure is logged (user only)."""
        if self.lab.check_password(self.host, username, password):
            self.user = username
            return AUTH_SUCCESSFUL
        self.lab.log(self.host, "auth_failed", user=username, method="password")
        return AUTH_FAILED

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        """A key given to ``SshHosts.authorize_key``, for a lab user."""
        if self.lab.check_key(self.host, username, key):
            self.user = username
            return AUTH_SUCCESSFUL
        return AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        """Sessions only (no forwarding)."""
        if kind == "session":
            return OPEN_SUCCEEDED
        return OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_pty_request(
        self,
        channel: paramiko.Channel,
        term: bytes,
        width: int,
        height: int,
        pixelwidth: int,
        pixelheight: int,
        modes: bytes,
    ) -> bool:
        """Granted (clients ask for one for sudo); commands run the same with or without."""
        return True

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        """Accept ``command``; it starts once paramiko has answered (``start_pending``)."""
        if self.user is None:
            return False
        self._pending[channel.get_id()] = threading.Thread(
            target=_execute,
            args=(self.lab, self.host, self.user, channel, bytes(command)),
            name=f"ssh-exec-{self.host.name}",
            daemon=True,
        )
        return True

    def start_pending(self, channel: paramiko.Channel) -> None:
        """Start the command of ``channel``, once paramiko has answered its exec request."""
        thread = self._pending.pop(channel.get_id(), None)
        if thread is not None:
            thread.start()


_CHANNEL_HANDLERS = vars(paramiko.Transport)["_channel_handler_table"]


def _handle_request(channel: paramiko.Channel, message: paramiko.Message) -> None:
    _CHANNEL_HANDLERS[MSG_CHANNEL_REQUEST](channel, message)
    server = channel.transport.server_object if channel.transport is not None else None
    if isinstance(server, _Server):
        server.start_pending(channel)


class _HostTransport(paramiko.Transport):
    """paramiko's transport, starting a command only once the answer to its exec request is on the wire: a
    command that ends at once would otherwise close its channel first ("Channel closed" on the client)."""

    _channel_handler_table = {**_CHANNEL_HANDLERS, MSG_CHANNEL_REQUEST: _handle_request}


class _ChannelIO:
    """A channel's stdout and stderr, and its stdin line by line."""

    def __init__(self, channel: paramiko.Channel) -> None:
        self.channel = channel
        self.buffer = b""
        self.eof = False

    def write(self, text: str) -> None:
        self.channel.sendall(text.encode())

    def write_err(self, text: str) -> None:
        self.channel.sendall_stderr(text.encode())

    def read_line(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer and not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.channel.settimeout(left)
            try:
                data = self.channel.recv(4096)
            except TimeoutError:
                return None
            self.eof = not data
            self.buffer += data
        if b"\n" not in self.buffer and not self.buffer:
            return None  # end of input, nothing sent
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode("utf-8", "replace").rstrip("\r")


def _execute(lab: SshHosts, host: SimHost, user: str, channel: paramiko.Channel, command: bytes) -> None:
    """Run one ``exec`` command, send its exit status, log it, then run what it left for afterwards."""
    stream = _ChannelIO(channel)
    ctx = Exec(lab, host, user, stream.write, stream.write_err, stream.read_line)
    code: int | None = None
    try:
        code = run_command(ctx, command.decode("utf-8", "replace"))
    except (HostDown, OSError, EOFError):
        pass  # the host went down under it: nobody is left to answer
    except Exception:
        log.exception("lab host %s: command %s failed", host.name, ctx.command)
        code = 1
    lab.log(host, ctx.command or "sh", args=lab.mask(ctx.args), user=user, exit=code)
    if code is not None:
        with contextlib.suppress(Exception):
            channel.send_exit_status(code)
            channel.close()
    if ctx.after:
        time.sleep(0.05)  # as a Mac restarting after startosinstall: let the client read the exit status
    for action in ctx.after:
        try:
            action()
        except Exception:
            log.exception("lab host %s: after %s", host.name, ctx.command)
