"""Capacity estimate of the path, from the receiver's reports and the sender's own backlog.

After Google Congestion Control (the delay-based controller of draft-ietf-rmcat-gcc, plus its loss
bound), reduced to the signals this transport has:

* **Delay gradient.** The receiver's report carries the least-squares slope of the base tier's
  one-way delay (a trendline over 2 s) and the queueing delay above the smallest delay of the last
  10 s (docs/TRANSPORT.md, "Feedback"). A queue that grows past `overuse_queue_ms`, or a slope above
  `overuse_trend_ms_per_s` with some queue behind it, is *overuse*; a shrinking queue is
  *underuse* (the path drains what was queued: hold); anything else is *normal* (increase).
* **The sender's backlog.** A send queue older than `backlog_overuse_s` is overuse at the first
  hop; the rate it drains at is that hop's capacity.
* **Rate.** On overuse the estimate becomes `backoff` x the rate the receiver got (while a queue
  exists that rate is the path's capacity), at most once per `decrease_interval_s` unless the rate
  received is far lower still; a short queue costs at most `mild_backoff` (one that leaves
  the estimate above the rate received is followed by the next report that finds the queue grown,
  without waiting). While a queue drains the estimate holds, but not below `drain_share` x the
  rate it drains at. On normal it grows:
  fast (x`fast_growth` per second) when nothing is known or the estimate is well above where the
  path last congested, slowly (`slow_growth` per second) near that point, never above 1.5 x the
  rate received (plus a floor), since a rate that was never sent says nothing about the path.
* **Probing the congestion point.** Near it the encoder's own stream is the probe: once that rate
  has been received for `probe_s` with no queue forming, the point is stale (the capacity rose)
  and growth is fast again, so a rise is found within seconds.
* **Loss bound.** The share of enhancement fragments that never arrived (the sender's counts
  against the receiver's, lagged by the fragments' lifetime): above 10 % the bound is cut by half
  that share, once per second and only without a queue (loss behind a queue is congestion the
  delay-based estimate answers); below 2 % it grows as fast as the estimate; in between it holds.

Deterministic: every call gets `now` (seconds, the sender's clock). `tests/test_estimator.py`
drives it with synthetic reports.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class EstimatorPolicy:
    """The estimator's numbers (bit/s, ms, s)."""

    start_bps: float = 150e3
    min_bps: float = 30e3
    max_bps: float = 20e6
    overuse_queue_ms: float = 40.0  # a path queue longer than this is overuse ...
    overuse_trend_ms_per_s: float = 25.0  # ... and so is a delay slope above this (with a queue of ...
    overuse_trend_queue_ms: float = 15.0  # ... at least this)
    underuse_trend_ms_per_s: float = -20.0  # a slope below this: the queue drains (hold)
    drain_step_ms: float = 15.0  # ... and so does a queue this much shorter than at the last report
    backlog_overuse_s: float = 0.12  # the sender's oldest queued frame older than this: overuse
    backoff: float = 0.95  # on overuse: this share of the rate received
    decrease_interval_s: float = 0.6  # at most one decrease per interval (the reduction takes effect first) ...
    drain_hold_s: float = 1.5  # after a decrease, overuse again only if the queue grew further
    mild_backoff: float = 0.85  # the most a short queue (below 2 x overuse_queue_ms) cuts the estimate
    drain_share: float = 0.85  # a queue that drains holds the estimate at least at this share of the rate received
    drain_s: float = 1.0  # a decrease leaves room to drain the path queue in this time ...
    min_backoff: float = 0.5  # ... but keeps at least this share of the rate received
    deep_drop: float = 0.6  # ... unless the rate received fell below this share of the estimate
    fast_growth: float = 2.0  # per second, far from the last congestion point
    slow_growth: float = 0.15  # per second (a share), near it
    calm_queue_ms: float = 10.0  # fast growth only while the path queue is below this
    near_low: float = 0.85  # ... and above this multiple (further below it, the rate is known to fit)
    near: float = 1.05  # 'near': below this multiple of the rate at the last overuse
    near_s: float = 10.0  # ... and for this long after it ...
    probe_s: float = 1.0  # ... unless it was received for this long ...
    probe_calm_ms: float = 10.0  # ... with the path queue below this: the capacity has risen
    received_headroom: float = 1.5  # the estimate stays below this multiple of the rate received ...
    received_floor_bps: float = 100e3  # ... plus this
    rate_window_s: float = 1.0  # received rate: over this window, and over its most recent 0.4 s
    loss_high: float = 0.10
    loss_low: float = 0.02
    loss_lag_s: float = 0.5  # fragments sent this long ago should have arrived or expired
    loss_cut_interval_s: float = 1.0  # at most one loss cut per this (the loss share is over 1 s)


class CapacityEstimator:
    """The sender's estimate of what the path carries, in bit/s (`estimate_bps`)."""

    def __init__(self, policy: EstimatorPolicy | None = None) -> None:
        self.policy = policy or EstimatorPolicy()
        self.reset()

    def reset(self) -> None:
        """A new session: start from `start_bps` again."""
        p = self.policy
        self.estimate_bps = p.start_bps
        self.loss_bound_bps = p.max_bps
        self.received_bps: float | None = None  # over the rate window
        self.recent_bps: float | None = None  # over its most recent >= 0.4 s
        self.loss = 0.0
        self.state = "normal"
        self.decreases = 0
        self.last_congested_bps: float | None = None
        self._last_decrease = -1e9
        self._last_update: float | None = None
        self._queue_ms: float | None = None
        self._queue_at_decrease = 0.0
        self._last_deep = -1e9
        self._cut_short = False  # the last decrease left the estimate above the rate received
        self._last_loss_cut = -1e9
        self._calm_since: float | None = None
        self.probes = 0  # congestion points found stale (the capacity rose)
        self._received: collections.deque[tuple[float, int]] = collections.deque()  # (receiver ms, wire bytes)
        self._sent_frames: collections.deque[tuple[float, int]] = collections.deque()  # (now, enhancement frags)
        self._got_frames: collections.deque[tuple[float, int]] = collections.deque()

    # -- inputs -------------------------------------------------------------------------------------

    def _note_received(self, report: dict) -> None:
        try:
            t_ms = float(report["t_ms"])
            total = int(report["wire_bytes"]) if "wire_bytes" in report else int(sum(report["bytes"]))
        except (KeyError, TypeError, ValueError):
            return
        d = self._received
        if d and (t_ms <= d[-1][0] or total < d[-1][1]):  # receiver clock wrapped or counters restarted
            d.clear()
        d.append((t_ms, total))
        while len(d) > 2 and t_ms - d[1][0] >= self.policy.rate_window_s * 1000:
            d.popleft()
        if len(d) >= 2 and t_ms - d[0][0] >= 200:
            self.received_bps = 8000.0 * (total - d[0][1]) / (t_ms - d[0][0])
        back = next((q for q in reversed(d) if t_ms - q[0] >= 400), None)
        self.recent_bps = None if back is None else 8000.0 * (total - back[1]) / (t_ms - back[0])

    def _note_loss(self, report: dict, now: float, enhancement_sent: int | None) -> None:
        """Share of enhancement fragments lost: received in the last second against sent in the
        second before `loss_lag_s` ago."""
        if enhancement_sent is None:
            return
        try:
            got = int(sum(report["frames"][1:]))
        except (KeyError, TypeError, ValueError):
            return
        p = self.policy
        self._sent_frames.append((now, enhancement_sent))
        self._got_frames.append((now, got))
        while len(self._sent_frames) > 2 and now - self._sent_frames[1][0] > 1.0 + p.loss_lag_s:
            self._sent_frames.popleft()
        while len(self._got_frames) > 2 and now - self._got_frames[1][0] > 1.0:
            self._got_frames.popleft()
        sent = [(t, n) for t, n in self._sent_frames if t <= now - p.loss_lag_s]
        if len(sent) < 2 or len(self._got_frames) < 2:
            return
        n_sent = sent[-1][1] - sent[0][1]
        n_got = self._got_frames[-1][1] - self._got_frames[0][1]
        if n_sent >= 10:
            self.loss = min(1.0, max(0.0, 1.0 - n_got / n_sent))

    # -- the estimate ---------------------------------------------------------------------------------

    def update(
        self,
        report: dict | None,
        now: float,
        backlog_s: float = 0.0,
        drain_bps: float | None = None,
        enhancement_sent: int | None = None,
    ) -> float:
        """Feed a receiver report (or None: only the sender's backlog is new) and return the estimate.

        `backlog_s`: age of the sender's oldest queued frame; `drain_bps`: the rate its queue drained
        at recently (None if unknown); `enhancement_sent`: enhancement fragments sent so far."""
        p = self.policy
        # growth is paced by reports (the evidence of a calm path), not by backlog-only calls
        dt = 0.0
        if report is not None:
            dt = 0.0 if self._last_update is None else min(0.5, max(0.0, now - self._last_update))
            self._last_update = now
        queue_ms = trend = 0.0
        shrinking = False
        if report is not None:
            self._note_received(report)
            self._note_loss(report, now, enhancement_sent)
            queue_ms = _num(report.get("queue_delay_ms"))
            trend = _num(report.get("delay_trend_ms_per_s"))
            prev, self._queue_ms = self._queue_ms, queue_ms
            # a queue that shrinks (and is still there: the slope lags the 2-s window) is drained: hold
            shrinking = queue_ms > p.overuse_trend_queue_ms and (
                trend < p.underuse_trend_ms_per_s or (prev is not None and queue_ms < prev - p.drain_step_ms)
            )
        elif self._queue_ms is not None:
            queue_ms = self._queue_ms
        # an old backlog is congestion only when it drains slower than the estimate: one that the
        # pacer holds back on purpose (a large frame) drains at the pacing rate
        backlog = backlog_s > p.backlog_overuse_s and drain_bps is not None and drain_bps < self.estimate_bps
        path_over = (
            report is not None
            and not shrinking
            and (
                queue_ms > p.overuse_queue_ms
                or (trend > p.overuse_trend_ms_per_s and queue_ms > p.overuse_trend_queue_ms)
            )
        )
        draining = False
        if path_over and now - self._last_decrease < p.drain_hold_s and queue_ms <= self._queue_at_decrease + 10.0:
            # the last decrease is still draining the queue it found: not again
            # ... unless the rate received fell far below the estimate (a sudden fall of capacity
            # behind a full queue), once per drain_hold_s: a path stalled in loss recovery receives
            # little for seconds, and that is no measure of its capacity
            got = self.recent_bps or self.received_bps
            deep_now = got is not None and got < p.deep_drop * self.estimate_bps
            if not deep_now or now - self._last_deep < p.drain_hold_s:
                path_over, draining = False, True
            else:
                self._last_deep = now
        if path_over or backlog:
            self.state = "overuse"
            # while a queue builds the most recent rate received is the path's capacity (the longer
            # window still holds the ramp that led here)
            got = self.received_bps or self.recent_bps
            if got and self.recent_bps and path_over:
                # a sudden fall shows in the recent rate first; otherwise the larger of the two (the
                # longer window still holds the ramp that led here, the recent one is noisier)
                got = self.recent_bps if self.recent_bps < 0.75 * got else max(got, self.recent_bps)
            caps = [got] if got and path_over else []
            if backlog and drain_bps:
                caps.append(drain_bps)
            if caps:
                cap = min(caps)
                deep = cap < p.deep_drop * self.estimate_bps
                # a mild cut that left the estimate above the rate received cannot drain the queue:
                # there is nothing to wait for before the next decrease
                if now - self._last_decrease >= p.decrease_interval_s or deep or self._cut_short:
                    # below the capacity by enough to drain the queue found within `drain_s`
                    share = min(p.backoff, 1.0 - queue_ms / (1000.0 * p.drain_s)) if path_over else p.backoff
                    # and at most a factor 4 per step: while the path recovers from a burst of loss
                    # the rate received says little about its capacity
                    new = max(max(p.min_backoff, share) * cap, self.estimate_bps / 4.0)
                    if path_over and not backlog and queue_ms < 2 * p.overuse_queue_ms:
                        # a short queue (a burst, or a sender that offered less than the estimate
                        # for a while: the rate received is then no measure of the path) costs a
                        # mild cut, not the whole way down to the rate received
                        new = max(new, p.mild_backoff * self.estimate_bps)
                    if new < self.estimate_bps:
                        self._cut_short = new > cap
                        self.estimate_bps = new
                        self.decreases += 1
                        self._last_decrease = now
                        self._queue_at_decrease = queue_ms
                        # after a deep drop the rate received (a path recovering from loss) is no
                        # measure of where it congests: grow fast again once it is calm
                        self.last_congested_bps = None if deep else cap
        elif report is None:
            pass  # the backlog alone says nothing about room for more
        elif shrinking or draining:
            self.state = "underuse"  # hold while the queue drains ...
            # ... but not below a share of the rate it drains at: while a queue drains, the rate
            # received is the path's capacity (after a deep drop the estimate may have fallen far
            # below it, the path recovering from loss)
            if shrinking and self.recent_bps:
                self.estimate_bps = max(self.estimate_bps, p.drain_share * self.recent_bps)
        else:
            self.state = "normal"
            self._cut_short = False
            # the last congestion point probed: received at or above it for `probe_s` with the path
            # calm (no queue forming), it is no longer where the path congests (the capacity rose)
            calm = queue_ms < p.probe_calm_ms and trend < 0.5 * p.overuse_trend_ms_per_s
            self._calm_since = (now if self._calm_since is None else self._calm_since) if calm else None
            if (
                self.last_congested_bps is not None
                and self._calm_since is not None
                and min(self.estimate_bps, self.received_bps or 0.0) >= self.last_congested_bps
                and now - self._calm_since >= p.probe_s
            ):
                self.last_congested_bps = None
                self.probes += 1
            near = (
                self.last_congested_bps is not None
                and p.near_low * self.last_congested_bps < self.estimate_bps < p.near * self.last_congested_bps
                and now - self._last_decrease < p.near_s
            ) or queue_ms > p.calm_queue_ms  # a queue starts to form: slowly, so as not to overshoot
            grown = self.estimate_bps * ((1.0 + p.slow_growth) ** dt if near else p.fast_growth**dt)
            got = max(self.received_bps or 0.0, self.recent_bps or 0.0)
            ceiling = p.received_headroom * got + p.received_floor_bps
            self.estimate_bps = max(self.estimate_bps, min(grown, ceiling))
        if report is not None and self.state != "normal":
            self._calm_since = None  # the probe's calm must be unbroken
        if report is not None:
            # loss behind a queue (fragments that expired in it, a drop-tail bottleneck) is congestion
            # the delay-based estimate answers; the loss bound is for loss without one (random loss,
            # a policer), cut once per loss window: the share is measured over a second, and cutting
            # on every report would compound one burst of loss into several cuts
            congested = queue_ms > p.overuse_queue_ms or now - self._last_decrease < 1.0 + p.loss_lag_s
            if self.loss > p.loss_high:
                if not congested and now - self._last_loss_cut >= p.loss_cut_interval_s:
                    cut = min(self.loss_bound_bps, self.estimate_bps) * (1 - 0.5 * self.loss)
                    self.loss_bound_bps = max(p.min_bps, cut)
                    self._last_loss_cut = now
            elif self.loss < p.loss_low:
                # little loss: the bound stops binding as fast as the delay-based estimate grows
                self.loss_bound_bps = min(p.max_bps, self.loss_bound_bps * p.fast_growth**dt)
        self.estimate_bps = min(max(self.estimate_bps, p.min_bps), p.max_bps)
        return self.value

    @property
    def value(self) -> float:
        """The estimate in bit/s: the delay-based estimate, bounded by the loss-based one."""
        return max(self.policy.min_bps, min(self.estimate_bps, self.loss_bound_bps))

    def stats(self) -> dict:
        return {
            "estimate_kbps": round(self.value / 1e3, 1),
            "delay_based_kbps": round(self.estimate_bps / 1e3, 1),
            "loss_bound_kbps": round(self.loss_bound_bps / 1e3, 1),
            "received_kbps": None if self.received_bps is None else round(self.received_bps / 1e3, 1),
            "loss": round(self.loss, 4),
            "state": self.state,
            "decreases": self.decreases,
            "probes": self.probes,
        }


def _num(v: object) -> float:
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    return f if math.isfinite(f) else 0.0
