"""Sender-receiver clock offset from round-trip pings on the control channel, as NTP does it.

The receiver sends ``{"type": "ping", "t0": ...}`` (its clock); the sender answers at once with
``{"type": "pong", "t0", "t1", "t2"}`` (its clock when the ping came in and when the pong left);
the receiver notes t3 on arrival. Then

    offset = ((t1 - t0) + (t2 - t3)) / 2      (sender clock minus receiver clock)
    rtt    = (t3 - t0) - (t2 - t1)

The estimate is exact when both directions take equally long; queueing makes it err by up to
rtt/2, so the sample with the smallest round trip over the recent window is the one kept.
All times are milliseconds.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass


@dataclass(frozen=True)
class OffsetSample:
    offset_ms: float
    rtt_ms: float
    at_ms: float  # receiver clock when it was taken


class ClockSync:
    """Keeps the ping samples of the last `window_ms` and offers the minimum-RTT one."""

    def __init__(self, window_ms: float = 30_000.0, max_samples: int = 256) -> None:
        self.window_ms = window_ms
        self._samples: collections.deque[OffsetSample] = collections.deque(maxlen=max_samples)
        self.pings = 0
        self.pongs = 0

    def ping(self, now_ms: float) -> dict:
        self.pings += 1
        return {"type": "ping", "t0": now_ms}

    def on_pong(self, msg: dict, t3: float) -> OffsetSample | None:
        """Use one pong; None (ignored) when its fields are missing, non-numeric or inconsistent."""
        try:
            t0, t1, t2 = (float(msg[k]) for k in ("t0", "t1", "t2"))
        except (KeyError, TypeError, ValueError):
            return None
        rtt = (t3 - t0) - (t2 - t1)
        if not (0 <= t3 - t0 < 60_000 and rtt >= 0 and t2 >= t1):
            return None
        s = OffsetSample(((t1 - t0) + (t2 - t3)) / 2, rtt, t3)
        self.pongs += 1
        self._samples.append(s)
        return s

    def best(self, now_ms: float | None = None) -> OffsetSample | None:
        """The smallest-RTT sample of the window (None before the first pong)."""
        if not self._samples:
            return None
        now = self._samples[-1].at_ms if now_ms is None else now_ms
        recent = [s for s in self._samples if now - s.at_ms <= self.window_ms] or [self._samples[-1]]
        return min(recent, key=lambda s: s.rtt_ms)


def pong(msg: dict, t1: float, t2: float) -> dict | None:
    """The sender's answer to a ping (None when the ping carries no usable t0)."""
    t0 = msg.get("t0")
    if not isinstance(t0, (int, float)):
        return None
    return {"type": "pong", "t0": t0, "t1": t1, "t2": t2}


class Percentiles:
    """p50/p95 of the last `n` values (capture-to-display latency, ms)."""

    def __init__(self, n: int = 300) -> None:
        self._v: collections.deque[float] = collections.deque(maxlen=n)

    def add(self, value: float) -> None:
        self._v.append(value)

    def __len__(self) -> int:
        return len(self._v)

    def get(self, q: float) -> float | None:
        if not self._v:
            return None
        s = sorted(self._v)
        return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]
