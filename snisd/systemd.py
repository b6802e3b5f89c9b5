"""systemd integration without extra dependencies: sd_notify and the watchdog.

``Notifier`` sends datagrams to ``$NOTIFY_SOCKET`` (an AF_UNIX datagram socket; a leading ``@``
means the Linux abstract namespace). When the variable is unset (not started by systemd) every call
is a no-op, so the daemon runs the same from a shell.

The watchdog is pinged only while the pipeline makes progress: :class:`Watchdog` is told the frame
counter at each tick and sends ``WATCHDOG=1`` only if it moved since the last ping. A pipeline that
hangs stops the pings and systemd restarts the service after ``WatchdogSec``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

log = logging.getLogger("snisd.systemd")


class Notifier:
    """Send sd_notify messages (``READY=1``, ``STATUS=...``, ``WATCHDOG=1``, ``STOPPING=1``)."""

    def __init__(self, address: str | None = None) -> None:
        address = os.environ.get("NOTIFY_SOCKET") if address is None else address
        self.address: str | bytes | None = None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        if address:
            if address.startswith("@"):
                self.address = "\0" + address[1:]  # abstract namespace
            elif address.startswith("/"):
                self.address = address
            else:
                log.warning("ignoring NOTIFY_SOCKET %r: not a path or an abstract socket name", address)
                return
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *fields: str) -> bool:
        """Send one datagram with the given ``KEY=value`` lines; False if not sent."""
        if self._sock is None or self.address is None:
            return False
        msg = "\n".join(f.replace("\n", " ") for f in fields).encode("utf-8")
        with self._lock:
            try:
                self._sock.sendto(msg, self.address)
            except OSError as exc:
                log.debug("sd_notify %r failed: %s", msg, exc)
                return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []), f"MAINPID={os.getpid()}")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def reloading(self) -> bool:
        # RELOADING=1 wants a MONOTONIC_USEC since systemd 253 (Type=notify-reload); harmless before.
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between pings: half of ``$WATCHDOG_USEC``, or None when no watchdog is asked for.

    ``$WATCHDOG_PID``, when set, must be this process (otherwise the watchdog is for someone else).
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    usec = environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = environ.get("WATCHDOG_PID")
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2e6 if value > 0 else None


class Watchdog:
    """Pings the systemd watchdog from its own thread while ``progress()`` keeps changing."""

    def __init__(self, notifier: Notifier, progress: Callable[[], object], interval: float) -> None:
        self.notifier = notifier
        self.progress = progress
        self.interval = interval
        self.pings = 0
        self.missed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="snisd-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def _run(self) -> None:
        last = self.progress()
        while not self._stop.wait(self.interval):
            now = self.progress()
            if now != last:
                self.notifier.watchdog()
                self.pings += 1
            else:
                self.missed += 1
                log.warning("pipeline made no progress for %.1f s; not pinging the watchdog", self.interval)
            last = now
