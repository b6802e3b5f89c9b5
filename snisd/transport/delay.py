"""Queueing estimate of the path from the one-way delay of the base tier's messages.

The receiver feeds it the sender-clock stamp of every tier-0 message (channels.Header.sent_ms)
and the arrival time; the two clocks' offset cancels out, so no clock sync is needed for the
trend. Its figures go into the receiver's reports, which drive the sender's capacity estimate.
"""

from __future__ import annotations

import collections


class DelayTrend:
    """Slope of the one-way delay (arrival minus sender clock) over a sliding window, in ms per s.

    The clocks' offset is unknown and cancels out; a positive slope means a queue is building.
    """

    def __init__(self, window_s: float = 2.0, base_window_s: float = 10.0) -> None:
        self.window_ms = window_s * 1000
        self.base_window_ms = base_window_s * 1000
        self._pts: collections.deque[tuple[float, float]] = collections.deque()
        self._long: collections.deque[tuple[float, float]] = collections.deque()  # for the minimum
        self._base_sent: int | None = None
        self._unwrapped = 0

    def add(self, sent_ms: int, arrival_ms: float) -> None:
        if self._base_sent is None:
            self._base_sent = sent_ms
        d = (sent_ms - self._base_sent) & 0xFFFFFFFF  # sender clock relative to the first sample
        if d > 0x80000000:
            d -= 1 << 32
        self._pts.append((arrival_ms, arrival_ms - d))
        while self._pts and arrival_ms - self._pts[0][0] > self.window_ms:
            self._pts.popleft()
        self._long.append((arrival_ms, arrival_ms - d))
        while self._long and arrival_ms - self._long[0][0] > self.base_window_ms:
            self._long.popleft()

    def queueing(self) -> float:
        """Latest one-way delay above the smallest of the last 10 s, ms: an estimate of the
        queueing delay on the path (the smallest delay approximates an empty queue)."""
        if not self._long:
            return 0.0
        return self._long[-1][1] - min(p[1] for p in self._long)

    def slope(self) -> float:
        n = len(self._pts)
        if n < 3:
            return 0.0
        mx = sum(p[0] for p in self._pts) / n
        my = sum(p[1] for p in self._pts) / n
        sxx = sum((p[0] - mx) ** 2 for p in self._pts)
        if sxx <= 0:
            return 0.0
        sxy = sum((p[0] - mx) * (p[1] - my) for p in self._pts)
        return 1000.0 * sxy / sxx  # ms of delay per s of arrivals

    def spread(self) -> float:
        """Max minus min delay in the window, ms (jitter plus queueing)."""
        if not self._pts:
            return 0.0
        ys = [p[1] for p in self._pts]
        return max(ys) - min(ys)
