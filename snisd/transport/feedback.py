"""Which tiers to send: a small controller driven by the receiver's reports and the send queue.

The rule (docs/TRANSPORT.md, "Tier controller"; measured in docs/ADAPTATION.md): step down one tier quickly
when a queue builds up (on the path, seen by the receiver as rising one-way delay; or in the
sender's own channel buffers), step up one tier slowly once the path has been calm for a while,
and wait longer before probing again each time a step up had to be undone (from the second
failed probe in a row on; a probe that holds resets the wait). The base tier is
never switched off. The sender applies the result as `WhipSender.max_tiers`.

When the sender also passes the recent rate of every tier set (`rates`), a step down goes straight
to the largest tier set that fits the rate the receiver reports it got (its byte counters over the
last half second: on a congested path that is the path's capacity), so a large drop in capacity is
followed in one step instead of one tier per `down_interval_s`.
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
    up_calm_s: float = 2.5  # a calm path for this long allows one step up
    up_queue_ms: float = 60.0  # calm: queue below this ...
    up_trend_ms_per_s: float = 15.0  # ... and delay growth below this
    hold_s: float = 3.0  # no step up this soon after a step down (doubles after a failed probe)
    max_hold_s: float = 4.5  # bounded, so that capacity coming back is found within ~5 s (probe every ~5 s at most)
    probe_queue_ms: float = 80.0  # while a step up is on probation (hold_s), step down already at
    probe_trend_ms_per_s: float = 30.0  # ... these (so a failed probe costs little delay)
    probe_send_queue_s: float = 0.08
    drain_s: float = 3.0  # after a step down, no further one while less is sent than delivered (queue drains)
    drain_queue_ms: float = 20.0  # the path queue fell by this much since the last report: draining
    fit_share: float = 0.85  # a tier set fits when its rate is below this share of the delivered rate
    rate_window_s: float = 0.5  # delivered rate: receiver byte counters over this window


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
        self._fails = 0  # failed probes in a row
        self._delivered: list[tuple[float, int]] = []  # (receiver ms, total bytes received)
        self.delivered_bps: float | None = None
        self._queue_ms: float | None = None  # path queue in the last report
        self._recent_bps: float | None = None  # delivered rate since the report >= 0.1 s before the last

    def reset(self) -> None:
        """A new session: start from every tier again."""
        self.current = self.tiers
        self._calm_since = None
        self._hold = self.policy.hold_s
        self._fails = 0
        self._delivered = []
        self.delivered_bps = None
        self._queue_ms = None
        self._recent_bps = None

    def _note_delivered(self, report: dict) -> None:
        try:
            t_ms = float(report["t_ms"])
            # bytes as they crossed the link if the receiver counts them (a large keyframe still in
            # flight, or enhancement data that expired on the way, are throughput too), else the
            # bytes of the complete pieces
            total = int(report["wire_bytes"]) if "wire_bytes" in report else int(sum(report["bytes"]))
        except (KeyError, TypeError, ValueError):
            return
        d = self._delivered
        if d and (t_ms <= d[-1][0] or total < d[-1][1]):  # receiver clock wrapped or counters restarted
            d.clear()
        d.append((t_ms, total))
        while len(d) > 2 and t_ms - d[1][0] >= self.policy.rate_window_s * 1000:
            d.pop(0)
        if len(d) >= 2 and t_ms - d[0][0] >= 200:
            self.delivered_bps = 8000.0 * (total - d[0][1]) / (t_ms - d[0][0])
        # the most recent stretch of at least 0.1 s alone: right after a capacity drop the window
        # above still holds the old rate, this already shows the new one
        back = next((p for p in reversed(d[:-1]) if t_ms - p[0] >= 100), None)
        self._recent_bps = None if back is None else 8000.0 * (total - back[1]) / (t_ms - back[0])

    def _target_down(self, rates: list[float] | None) -> int:
        """One tier less, or fewer still when the delivered rate says the tier set below does not fit."""
        target = self.current - 1
        cap = min((c for c in (self.delivered_bps, self._recent_bps) if c), default=None)
        if rates and cap:
            while target > 1 and target <= len(rates) and rates[target - 1] > self.policy.fit_share * cap:
                target -= 1
        return max(1, target)

    def _sent_fits(self, rates: list[float] | None) -> bool:
        """The tier set sent now is about what the receiver reports getting, or less (the margin
        covers what the count misses: framing, and enhancement data given up in flight)."""
        cap = self.delivered_bps
        return bool(
            rates and cap and len(rates) >= self.current and self.policy.fit_share * rates[self.current - 1] < cap
        )

    def update(
        self, report: dict | None, send_queue_s: float, now: float | None = None, rates: list[float] | None = None
    ) -> int:
        """Feed a receiver report (or None) and the sender's queue age; returns the tiers to send.

        `rates` (optional): bits per second of the first 1, 2, ... tiers, as the sender sees them."""
        p = self.policy
        now = time.monotonic() if now is None else now
        if report is not None:
            self._note_delivered(report)
        queue_ms = float(report.get("queue_delay_ms", 0.0)) if report else 0.0
        trend = float(report.get("delay_trend_ms_per_s", 0.0)) if report else 0.0
        # a queue that shrinks is no reason to step down: clearly over the trend window, or since
        # the last report while what is sent now fits the delivered rate (the window still remembers
        # the growth that the last step down already answered)
        prev_queue, self._queue_ms = self._queue_ms, (queue_ms if report else self._queue_ms)
        draining = trend < -p.up_trend_ms_per_s or (
            report is not None
            and prev_queue is not None
            and queue_ms < prev_queue - p.drain_queue_ms
            and self._sent_fits(rates)
        )
        congested = (
            (queue_ms > p.down_queue_ms or trend > p.down_trend_ms_per_s)
            and not draining
            or send_queue_s > p.down_send_queue_s
        )
        probing = now - self._last_up < p.hold_s and self._last_up > self._last_down
        if probing:
            congested = congested or (
                (queue_ms > p.probe_queue_ms and not draining)
                or trend > p.probe_trend_ms_per_s
                or send_queue_s > p.probe_send_queue_s
            )
        if congested:
            self._calm_since = None
            if self.current > 1 and now - self._last_down < p.drain_s and self._sent_fits(rates):
                return self.current  # just stepped down, and what is sent now fits: the queue is draining
            if self.current > 1 and now - self._last_down >= p.down_interval_s:
                if now - self._last_up < p.hold_s:  # the last probe failed: wait longer next time
                    self._fails += 1  # (the first failure alone does not: capacity may be back soon)
                    if self._fails > 1:
                        self._hold = min(p.max_hold_s, self._hold * 2)
                # a failed probe goes back to where it came from; otherwise as far as the rate says
                self.current = self.current - 1 if probing else self._target_down(rates)
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
        if self._last_up > self._last_down and now - self._last_up >= p.hold_s:  # the last probe held
            self._hold, self._fails = p.hold_s, 0
        if self.current < self.tiers and now - self._calm_since >= p.up_calm_s and now - self._last_down >= self._hold:
            self.current += 1
            self.steps_up += 1
            self._last_up = now
            self._calm_since = now
        return self.current
