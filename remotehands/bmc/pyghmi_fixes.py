"""Process-wide fixes for races in pyghmi's IO loop and login table (measured; see install_pyghmi_io_fix)."""

from __future__ import annotations

import socket
import threading
from typing import Any

CROSS_THREAD_POLL = 0.02


def install_pyghmi_io_fix() -> None:
    """Fix three races in pyghmi's process-wide IO loop (idempotent; patches pyghmi for the whole process).

    1. ``_io_sendto`` makes a socket blocking while the IO thread reads it after ``setblocking(0)``, so the
       IO thread can hang in ``recvfrom`` (measured: 1-40 s). It now reads with ``MSG_DONTWAIT``.
    2. A caller registers its wait with the IO thread after sending. When the answer was routed to its
       session before that, or another thread's wait processed it, nothing wakes the caller before its
       retransmit timer (stalls of 0.5-2 s with a few threads, or while a dead BMC's login is retried).
       The wait now returns at once when the answer is already queued, and sleeps at most 20 ms at a time.
    3. ``send_payload`` takes the keepalive lock, then the waiting lock; ``wait_for_rsp`` holds the waiting
       lock while it retransmits for timed-out sessions, which takes the keepalive lock: a deadlock of
       every pyghmi thread in the process (seen with a dead BMC's login retrying beside live traffic).
       Both names now refer to one lock.
    """
    from pyghmi.ipmi.private import session as ipmisession

    with _FIX_LOCK:
        if getattr(ipmisession, "remotehands_fixed", False):
            return
        original_awaitresponse = ipmisession.Session.awaitresponse

        def _io_recvfrom(mysocket: Any, size: int) -> Any:
            try:
                return getattr(mysocket, "fd", mysocket).recvfrom(size, socket.MSG_DONTWAIT)
            except OSError:
                return None

        def _io_wait(timeout: float, myaddr: Any = None, evq: Any = None) -> None:
            event = threading.Event()
            if evq is not None:
                evq.append(event)
            deadline = timeout + ipmisession._monotonic_time()
            ipmisession.ioqueue.append((deadline, event, myaddr))
            waiting = getattr(_WAITING, "session", None)
            if ipmisession.sessionqueue if myaddr is None else (waiting is not None and waiting.pktqueue):
                return  # the answer is already queued: process it instead of sleeping
            if deadline < ipmisession.selectdeadline:
                wake = ipmisession.iosockets[0]
                getattr(wake, "fd", wake).sendto(b"\x01", (ipmisession.myself, wake.getsockname()[1]))
            # pyghmi lets any waiting thread process any session's packets without waking that session's
            # own thread: wake up often enough to notice (pyghmi's loops re-wait when nothing changed).
            event.wait(min(max(timeout, 0.0), CROSS_THREAD_POLL))

        def awaitresponse(self: Any, retry: Any, netfn: int, command: int) -> Any:
            previous = getattr(_WAITING, "session", None)
            _WAITING.session = self
            try:
                return original_awaitresponse(self, retry, netfn, command)
            finally:
                _WAITING.session = previous

        one_lock = threading.RLock()
        ipmisession.KEEPALIVE_SESSIONS = one_lock
        ipmisession.WAITING_SESSIONS = one_lock
        ipmisession._io_recvfrom = _io_recvfrom
        ipmisession._io_wait = _io_wait
        ipmisession.Session.awaitresponse = awaitresponse
        ipmisession.remotehands_fixed = True


_FIX_LOCK = threading.Lock()
_WAITING = threading.local()  # the pyghmi session this thread is waiting on
_LOGIN_LOCKS: dict[tuple[str, int], threading.Lock] = {}


def login_lock(address: str, port: int) -> threading.Lock:
    with _FIX_LOCK:
        return _LOGIN_LOCKS.setdefault((address, port), threading.Lock())
