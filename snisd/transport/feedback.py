"""Which tiers to send: the largest tier set whose rate fits the capacity estimate.

The capacity estimate (estimator.py) and the encoder's rate control do the slow work: the encoder
codes at the sender's target, so on a steady link every tier fits. Tiers are the fast lever: when
the estimate falls well below what the encoder still produces (a sudden drop of capacity: the
tier set's rate is more than `fit_share` x the estimate), the tiers that do not fit are dropped at
once, and they come back when the encoder's tiers fit again (rate
control has settled at the new level) for `up_after_s`. The base tier is never switched off.
The sender applies the result as `WhipSender.max_tiers`; docs/TRANSPORT.md describes it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TierPolicy:
    # a tier set is dropped when its rate exceeds the estimate by this factor: a smaller excess
    # (the estimate backing off by a few per cent) is the pacer's and rate control's to absorb
    fit_share: float = 1.4
    up_share: float = 1.1  # ... and added back once its rate is below this multiple of the estimate
    up_after_s: float = 0.4  # a tier set must have fitted this long before it is sent again


class TierController:
    """Keeps the number of tiers to send between 1 and `tiers`."""

    def __init__(self, tiers: int, policy: TierPolicy | None = None) -> None:
        self.tiers = tiers
        self.policy = policy or TierPolicy()
        self.current = tiers
        self.steps_down = 0
        self.steps_up = 0
        self._fits_since: float | None = None

    def reset(self) -> None:
        """A new session: start from every tier again."""
        self.current = self.tiers
        self._fits_since = None

    def fitting(self, capacity_bps: float, rates: list[float], share: float) -> int:
        """The largest tier count whose rate is below `share` x the capacity (at least 1)."""
        n = 1
        for k, r in enumerate(rates[: self.tiers]):
            if r <= share * capacity_bps:
                n = k + 1
            else:
                break
        return n

    def update(self, capacity_bps: float, rates: list[float] | None, now: float) -> int:
        """`rates`: bits per second of the first 1, 2, ... tiers as the encoder produces them now
        (none yet: keep the current count). Returns the tiers to send."""
        if not rates:
            return self.current
        p = self.policy
        down = self.fitting(capacity_bps, rates, p.fit_share)
        if down < self.current:
            self.current = down
            self.steps_down += 1
            self._fits_since = None
            return self.current
        up = self.fitting(capacity_bps, rates, p.up_share)
        if up > self.current:
            if self._fits_since is None:
                self._fits_since = now
            if now - self._fits_since >= p.up_after_s:
                self.current = up
                self.steps_up += 1
                self._fits_since = None
        else:
            self._fits_since = None
        return self.current
