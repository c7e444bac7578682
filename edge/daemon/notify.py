"""systemd's sd_notify protocol over a plain AF_UNIX datagram socket (no libsystemd binding needed).

systemd passes $NOTIFY_SOCKET to Type=notify services: a filesystem path, or an abstract socket written with a
leading '@'. A missing variable (run by hand, in tests, outside systemd) makes every call a no-op. $WATCHDOG_USEC
says how often systemd expects WATCHDOG=1; the daemon pings from its processing loop, never from a timer thread,
so a stalled pipeline stops pinging and systemd restarts it.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, address: str | None = None, watchdog_usec: str | None = None, watchdog_pid: str | None = None):
        self.address = os.environ.get("NOTIFY_SOCKET") if address is None else address
        usec = os.environ.get("WATCHDOG_USEC") if watchdog_usec is None else watchdog_usec
        pid = os.environ.get("WATCHDOG_PID") if watchdog_pid is None else watchdog_pid
        self.watchdog_s = (int(usec) / 1e6) if usec and usec.isdigit() and int(usec) > 0 else None
        if pid and pid.isdigit() and int(pid) != os.getpid():
            self.watchdog_s = None  # the watchdog is meant for another process
        self._sock: socket.socket | None = None
        self._last_ping = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def _target(self) -> str | bytes:
        a = self.address or ""
        return "\0" + a[1:] if a.startswith("@") else a

    def send(self, *fields: str) -> bool:
        """Send 'KEY=value' lines as one datagram; False (logged once) when it cannot be delivered."""
        if not self.address:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(fields).encode("utf-8"), self._target())
            return True
        except OSError as exc:
            log.warning("sd_notify to %s failed: %s", self.address, exc)
            return False

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def stopping(self, status: str = "") -> bool:
        return self.send("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self, force: bool = False) -> bool:
        """WATCHDOG=1, at most every quarter of WatchdogSec (cheap to call from every loop turn)."""
        if not self.address or (self.watchdog_s is None and not force):
            return False
        now = time.monotonic()
        interval = (self.watchdog_s or 0) / 4
        if not force and now - self._last_ping < interval:
            return False
        self._last_ping = now
        return self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class Heartbeats:
    """WATCHDOG=1 only while every processing loop is alive.

    Each loop (folder scanning, microphone) calls `beat(name)` every turn and from inside long work (per decoded
    block). A beat pings systemd if no registered loop has been silent longer than half of WatchdogSec; one
    stalled loop therefore silences the pings and systemd restarts the service.
    """

    def __init__(self, notifier: Notifier, names: tuple[str, ...] = (), enabled: bool = True) -> None:
        self.notifier, self.enabled = notifier, enabled
        now = time.monotonic()
        self._last = {n: now for n in names}
        self.stale_s = (notifier.watchdog_s or 60.0) / 2

    def fail(self) -> None:
        """A processing thread died: never ping again, so systemd's watchdog restarts the service."""
        self.enabled = False

    def register(self, name: str) -> None:
        self._last[name] = time.monotonic()

    def unregister(self, name: str) -> None:
        self._last.pop(name, None)

    def stalled(self, now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        return [n for n, t in list(self._last.items()) if now - t > self.stale_s]

    def beat(self, name: str) -> bool:
        now = time.monotonic()
        self._last[name] = now
        if not self.enabled or self.stalled(now):
            return False
        return self.notifier.watchdog()
