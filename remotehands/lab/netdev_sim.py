"""The lab's SSH server for simulated network devices (``netdev_model.NetDevice``): one port and one ed25519
host key per device, password logins, interactive shells only (Netmiko's ``invoke_shell``), and a terminal
line discipline like a real device's: every character echoed, ``\\r``, ``\\n`` or ``\\r\\n`` ending a line,
each line answered with the session's output and then its prompt.

Threads: one accepting per device, one per connection, and one ticker stepping every device's revert timers
every ``TICK_S``. Every call into a device holds its ``lock``.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import paramiko
from paramiko.common import (
    AUTH_FAILED,
    AUTH_SUCCESSFUL,
    OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED,
    OPEN_SUCCEEDED,
)
from paramiko.kex_group14 import KexGroup14SHA256
from paramiko.primes import ModulusPack

from remotehands.lab.netdev_model import NET_FAULTS, DeviceSession, NetDevice
from remotehands.lab.ssh_host_model import new_host_key

log = logging.getLogger(__name__)

TICK_S = 0.05
ACCEPT_POLL_S = 0.2
LOGIN_TIMEOUT_S = 10.0
# paramiko's own log: a client that drops the connection mid-handshake is an ERROR there.
WIRE_LOG = "remotehands.lab.netdev_sim.wire"


@dataclass
class _Served:
    device: NetDevice
    key: paramiko.PKey
    sock: socket.socket
    port: int
    transports: list[paramiko.Transport] = field(default_factory=list)


class NetDevServer:
    """Serves simulated network devices on ``address``, one port each, to ``username``/``password``."""

    def __init__(self, username: str, password: str, address: str = "127.0.0.1") -> None:
        self.username = username
        self.password = password
        self.address = address
        self._served: dict[str, _Served] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()  # guards the transport lists, not the devices
        self._moduli = _group_exchange_moduli()
        logging.getLogger(WIRE_LOG).setLevel(logging.CRITICAL)

    def add(self, device: NetDevice) -> int:
        """Bind a port and generate an ed25519 host key for ``device``; returns the port. Raises
        ``ValueError`` for a name already served."""
        if device.name in self._served:
            raise ValueError(f"device {device.name!r} is already served")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.address, 0))
        sock.listen(16)
        sock.settimeout(ACCEPT_POLL_S)
        port = int(sock.getsockname()[1])
        self._served[device.name] = _Served(device, new_host_key("ed25519"), sock, port)
        return port

    def host_key(self, name: str) -> paramiko.PKey:
        """The host key of device ``name`` (``KeyError`` if not served)."""
        return self._served[name].key

    def known_hosts_line(self, name: str) -> str:
        """A known_hosts line for device ``name``: ``[ADDRESS]:PORT ssh-ed25519 AAAA...``."""
        served = self._served[name]
        return f"[{self.address}]:{served.port} {served.key.get_name()} {served.key.get_base64()}"

    def port(self, name: str) -> int:
        """The port of device ``name``."""
        return self._served[name].port

    def device(self, name: str) -> NetDevice:
        """The device served as ``name``."""
        return self._served[name].device

    def set_fault(self, name: str, fault: str, enabled: bool) -> None:
        """Set or clear ``fault`` (one of ``netdev_model.NET_FAULTS``) on device ``name``; ``ValueError`` for
        an unknown fault."""
        if fault not in NET_FAULTS:
            raise ValueError(f"no network device fault {fault!r}: one of {', '.join(NET_FAULTS)}")
        device = self.device(name)
        with device.lock:
            if enabled:
                device.faults.add(fault)
            else:
                device.faults.discard(fault)

    def start(self) -> None:
        """Start accepting on every device's port, and the ticker."""
        for served in self._served.values():
            self._spawn(self._accept_loop, served, name=f"netdev-accept-{served.device.name}")
        self._spawn(self._tick_loop, name="netdev-ticker")

    def stop(self) -> None:
        """Stop every thread; close every port and connection."""
        self._stop.set()
        with self._lock:
            transports = [t for served in self._served.values() for t in served.transports]
        for transport in transports:
            transport.close()
        for thread in self._threads:
            thread.join(5.0)
        for served in self._served.values():
            served.sock.close()

    def _spawn(self, target: Callable[..., None], *args: object, name: str) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _tick_loop(self) -> None:
        while not self._stop.wait(TICK_S):
            for served in self._served.values():
                device = served.device
                try:
                    with device.lock:
                        device.tick(device.clock())
                except Exception:
                    log.exception("lab network device %s: tick failed", device.name)

    def _accept_loop(self, served: _Served) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = served.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with served.device.lock:
                accepting = served.device.accepting
            if not accepting:
                conn.close()  # as a device that does not answer
                continue
            conn.settimeout(None)
            threading.Thread(
                target=self._serve, args=(served, conn), name=f"netdev-conn-{served.device.name}", daemon=True
            ).start()

    def _serve(self, served: _Served, conn: socket.socket) -> None:
        transport = paramiko.Transport(conn)
        transport.set_log_channel(WIRE_LOG)
        transport.local_version = served.device.ssh_banner
        # Per transport, not paramiko's class-wide load_server_moduli(): offers group exchange, the one kex
        # Netmiko's fortinet driver leaves enabled under paramiko 5.
        transport._modulus_pack = self._moduli  # type: ignore[attr-defined]
        transport.add_server_key(served.key)
        server = _Server(self.username, self.password)
        with self._lock:
            served.transports = [t for t in served.transports if t.is_active()] + [transport]
        try:
            transport.start_server(server=server)
            channel = transport.accept(LOGIN_TIMEOUT_S)
            if channel is None or not server.shell.wait(LOGIN_TIMEOUT_S) or server.user is None:
                return
            _Terminal(served.device, channel, server.user).run()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            log.debug("lab network device %s: connection ended: %s", served.device.name, exc)
        except Exception:
            log.exception("lab network device %s: session failed", served.device.name)
        finally:
            transport.close()


def _group_exchange_moduli() -> ModulusPack:
    # The RFC 3526 2048-bit group: no /etc/ssh/moduli in a container, and generating primes takes minutes.
    pack = ModulusPack()
    pack.pack = {2048: [(KexGroup14SHA256.G, KexGroup14SHA256.P)]}
    return pack


class _Server(paramiko.ServerInterface):
    """One connection: the lab user's password, then one session channel with a pty and a shell."""

    def __init__(self, username: str, password: str) -> None:
        self._username = username
        self._password = password
        self.user: str | None = None
        self.shell = threading.Event()

    def get_allowed_auths(self, username: str) -> str:
        """Password only, as the lab's devices are configured."""
        return "password"

    def check_auth_password(self, username: str, password: str) -> int:
        """The lab user and password; anything else refused."""
        if hmac.compare_digest(username.encode(), self._username.encode()) and hmac.compare_digest(
            password.encode(), self._password.encode()
        ):
            self.user = username
            return AUTH_SUCCESSFUL
        return AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        """Sessions only (no forwarding)."""
        return OPEN_SUCCEEDED if kind == "session" else OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

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
        """Granted: Netmiko asks for a vt100."""
        return True

    def check_channel_shell_request(self, channel: paramiko.Channel) -> bool:
        """Granted: the CLI starts once paramiko has answered."""
        self.shell.set()
        return True

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        """Refused: these devices only have an interactive CLI."""
        return False


class _Terminal:
    """The line discipline of one login: echo, line ends, one ``handle`` per line, then output and prompt."""

    def __init__(self, device: NetDevice, channel: paramiko.Channel, user: str) -> None:
        self.device = device
        self.channel = channel
        with device.lock:
            self.session: DeviceSession = device.new_session(user)

    def run(self) -> None:
        """Serve until the client leaves or the device drops the connection."""
        try:
            with self.device.lock:
                hello = self.session.greeting() + self.session.prompt()
            self._send(hello)
            self._loop()
        finally:
            with self.device.lock:
                self.session.closed()
            with contextlib.suppress(Exception):
                self.channel.close()

    def _loop(self) -> None:
        line = bytearray()
        after_cr = False
        while True:
            data = self.channel.recv(4096)
            if not data:
                return
            for byte in data:
                if byte == 0x0A and after_cr:
                    after_cr = False
                    continue  # the \n of a \r\n: that line is already answered
                after_cr = byte == 0x0D
                if byte in (0x0A, 0x0D):
                    if not self._answer(line.decode("utf-8", "replace")):
                        return
                    line.clear()
                else:
                    self.channel.sendall(bytes([byte]))
                    line.append(byte)

    def _answer(self, line: str) -> bool:
        """Answer one line; False once the device has dropped the connection."""
        with self.device.lock:
            self.device.commands.append(line)
            reply = self.session.handle(line)
            prompt = "" if reply.close else self.session.prompt()
        text = "\n" + (reply.output + "\n" if reply.output else "") + prompt
        self._send(text)
        return not reply.close

    def _send(self, text: str) -> None:
        self.channel.sendall(text.replace("\r\n", "\n").replace("\n", "\r\n").encode())
