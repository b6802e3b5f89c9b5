"""Which tiers to send: a small controller driven by the receiver's reports and the send queue.

It implements the rule of DESIGN.md section 5 in its simplest form: step down one tier quickly
when a queue builds up (on the path, seen by the receiver as rising one-way delay; or in the
sender's own channel buffers), step up one tier slowly once the path has been calm for a while,
and wait longer before probing again each time a step up had to be undone. The base tier is
never switched off. The sender applies the result as `WhipSender.max_tiers`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class TierPolicy:
    down_queue_ms: float = 200.0  # step down when the path queue exceeds this ...
    down_trend_ms_per_s: float = 60.0  # ... or the delay grows faster than this
    down_send_queue_s: float = 0.15  # ... or the sender's own oldest queued frame is older
    down_interval_s: float = 0.8  # at most one step down per interval (let the queue react)
    up_calm_s: float = 3.0  # a calm path for this long allows one step up
    up_queue_ms: float = 60.0  # calm: queue below this ...
    up_trend_ms_per_s: float = 15.0  # ... and delay growth below this
    hold_s: float = 4.0  # no step up this soon after a step down (doubles after a failed probe)
    max_hold_s: float = 60.0


class TierController:
    """Keeps the number of tiers to send between 1 and `tiers`."""

    def __init__(self, tiers: int, policy: TierPolicy | None = None) -> None:
        self.tiers = tiers
        self.policy = policy or TierPolicy()
        self.current = tiers
        self.steps_down = 0
        self.steps_up = 0
        self._last_down = -1e9
        self._last_up = -1e9
        self._calm_since: float | None = None
        self._hold = self.policy.hold_s

    def reset(self) -> None:
        """A new session: start from every tier again."""
        self.current = self.tiers
        self._calm_since = None
        self._hold = self.policy.hold_s

    def update(self, report: dict | None, send_queue_s: float, now: float | None = None) -> int:
        """Feed a receiver report (or None) and the sender's queue age; returns the tiers to send."""
        p = self.policy
        now = time.monotonic() if now is None else now
        queue_ms = float(report.get("queue_delay_ms", 0.0)) if report else 0.0
        trend = float(report.get("delay_trend_ms_per_s", 0.0)) if report else 0.0
        congested = (queue_ms > p.down_queue_ms or trend > p.down_trend_ms_per_s
                     or send_queue_s > p.down_send_queue_s)
        if congested:
            self._calm_since = None
            if self.current > 1 and now - self._last_down >= p.down_interval_s:
                if now - self._last_up < p.hold_s:  # the last probe failed: wait longer next time
                    self._hold = min(p.max_hold_s, self._hold * 2)
                self.current -= 1
                self.steps_down += 1
                self._last_down = now
            return self.current
        if report is None:  # only the send queue was looked at: no evidence of a calm path
            return self.current
        calm = queue_ms < p.up_queue_ms and trend < p.up_trend_ms_per_s
        if not calm:
            self._calm_since = None
            return self.current
        if self._calm_since is None:
            self._calm_since = now
        if (self.current < self.tiers and now - self._calm_since >= p.up_calm_s
                and now - self._last_down >= self._hold):
            self.current += 1
            self.steps_up += 1
            self._last_up = now
            self._calm_since = now
        return self.current
