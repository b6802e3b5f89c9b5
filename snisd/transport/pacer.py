"""Pacing: messages leave the sender at a set rate instead of in per-frame bursts.

A token bucket (`rate_bps`, at most `burst_s` of tokens) in front of the data channels. Base-tier
messages go first, enhancement messages when no base message waits; an enhancement message that
waited longer than the channels' lifetime could only arrive too late and is given up here
(counted in `expired`). The queue the pacer holds is part of the sender's backlog (the age of the
oldest queued frame), so a link that cannot keep up is still seen at once.

Why: a keyframe or key picture that leaves as one burst fills the bottleneck's queue, delays every
frame behind it and looks like congestion to the receiver's delay trend; paced at a little more
than the capacity estimate, the burst waits at the sender, where enhancements can still be dropped.
Deterministic: every call gets `now` (s).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass


@dataclass
class Paced:
    """One queued message: its tier, bytes and when it was queued."""

    tier: int
    data: bytes
    queued: float


class Pacer:
    """Token bucket over the outgoing messages; `rate_bps` may change at any time."""

    def __init__(self, rate_bps: float, burst_s: float = 0.02, min_burst_bytes: int = 3000) -> None:
        self.rate_bps = float(rate_bps)
        self.burst_s = burst_s
        self.min_burst_bytes = min_burst_bytes
        self._base: collections.deque[Paced] = collections.deque()
        self._enh: collections.deque[Paced] = collections.deque()
        self._tokens = float(self._burst())
        self._last: float | None = None
        self.pending_bytes = 0
        self.expired = 0  # enhancement messages given up
        self.expired_bytes = 0

    def _burst(self) -> float:
        return max(self.min_burst_bytes, self.rate_bps / 8.0 * self.burst_s)

    def _refill(self, now: float) -> None:
        if self._last is not None and now > self._last:
            self._tokens = min(self._burst(), self._tokens + (now - self._last) * self.rate_bps / 8.0)
        self._last = now if self._last is None else max(self._last, now)

    def push(self, tier: int, data: bytes, now: float) -> None:
        (self._base if tier == 0 else self._enh).append(Paced(tier, data, now))
        self.pending_bytes += len(data)

    def expire(self, now: float, max_age_s: float) -> int:
        """Give up enhancement messages queued more than `max_age_s` ago; returns how many."""
        n = 0
        while self._enh and now - self._enh[0].queued > max_age_s:
            m = self._enh.popleft()
            self.pending_bytes -= len(m.data)
            self.expired_bytes += len(m.data)
            n += 1
        self.expired += n
        return n

    def pop(self, now: float) -> list[Paced]:
        """The messages that may leave now, in order."""
        self._refill(now)
        out: list[Paced] = []
        while self._tokens > 0 and (self._base or self._enh):
            m = (self._base or self._enh).popleft()
            self._tokens -= len(m.data)  # may go negative: a large message borrows from the next ones
            self.pending_bytes -= len(m.data)
            out.append(m)
        return out

    def wait_s(self) -> float | None:
        """Seconds until the next message may leave (None: nothing queued)."""
        if not (self._base or self._enh):
            return None
        if self._tokens > 0:
            return 0.0
        return -self._tokens * 8.0 / max(self.rate_bps, 1.0) + 1e-4

    def oldest(self) -> float | None:
        """When the oldest queued message was queued."""
        ts = [q[0].queued for q in (self._base, self._enh) if q]
        return min(ts) if ts else None

    def clear(self) -> None:
        self._base.clear()
        self._enh.clear()
        self.pending_bytes = 0
