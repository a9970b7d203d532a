"""Lab Macs on the network: each answers on its SSH port with an SSH banner only while its PDU outlet is
on, and only after a short boot delay, as a Mac that was power-cycled comes back to the network."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

BANNER = b"SSH-2.0-OpenSSH_9.7 remotehands-lab-mac\r\n"


@dataclass
class _Mac:
    name: str
    powered: Callable[[], bool]
    port: int
    listener: socket.socket | None = None
    on_since: float | None = None
    history: list[tuple[float, bool]] = field(default_factory=list)


class MacAgents:
    """Runs one thread that opens and closes each lab Mac's SSH port as its outlet goes on and off."""

    def __init__(self, boot_delay: float = 0.3, address: str = "127.0.0.1") -> None:
        self.boot_delay = boot_delay
        self.address = address
        self._macs: list[_Mac] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mac-agents", daemon=True)

    def add(self, name: str, powered: Callable[[], bool]) -> int:
        """Add a Mac whose power is ``powered()``; returns its SSH port (fixed for the lab's life)."""
        with socket.socket() as probe:
            probe.bind((self.address, 0))
            port = int(probe.getsockname()[1])
        self._macs.append(_Mac(name, powered, port))
        return port

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        for mac in self._macs:
            self._close(mac)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            now = time.monotonic()
            for mac in self._macs:
                try:
                    self._step(mac, now)
                except OSError as exc:
                    log.warning("lab mac %s: %s", mac.name, exc)

    def _step(self, mac: _Mac, now: float) -> None:
        if not mac.powered():
            mac.on_since = None
            self._close(mac)
            return
        if mac.on_since is None:
            mac.on_since = now
        if mac.listener is None and now - mac.on_since >= self.boot_delay:
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.address, mac.port))
            listener.listen(16)
            listener.setblocking(False)
            mac.listener = listener
            log.info("lab mac %s is up on %s:%d", mac.name, self.address, mac.port)
        if mac.listener is not None:
            while True:
                try:
                    conn, _ = mac.listener.accept()
                except BlockingIOError:
                    return
                with conn:
                    conn.sendall(BANNER)

    def _close(self, mac: _Mac) -> None:
        if mac.listener is not None:
            with contextlib.suppress(OSError):
                mac.listener.close()
            mac.listener = None
            log.info("lab mac %s is down", mac.name)
