"""Capacity estimate, pacing and tier choice of the sender (snisd/transport/estimator.py, pacer.py,
feedback.py): deterministic, against a simulated bottleneck (a fluid queue in front of a link of
known capacity), with reports built as the receiver builds them. No clock, no network."""

from __future__ import annotations

from snisd.transport.estimator import CapacityEstimator, EstimatorPolicy
from snisd.transport.feedback import TierController
from snisd.transport.pacer import Pacer

DT = 0.05  # simulation step, s
REPORT = 0.25  # receiver report interval, s


class Bottleneck:
    """A link of `capacity` bit/s behind a FIFO (drop-tail at `limit_s`); the sender sends at the
    estimate. Reports: bytes received, queueing delay, delay slope over 2 s."""

    def __init__(self, capacity: float, limit_s: float = 0.4) -> None:
        self.capacity = capacity
        self.limit_s = limit_s
        self.queue_bits = 0.0
        self.received_bits = 0.0
        self.sent_bits = 0.0
        self.delays: list[tuple[float, float]] = []

    def step(self, t: float, send_bps: float) -> None:
        self.sent_bits += send_bps * DT
        self.queue_bits += send_bps * DT
        out = min(self.queue_bits, self.capacity * DT)
        self.queue_bits -= out
        self.queue_bits = min(self.queue_bits, self.capacity * self.limit_s)
        self.received_bits += out
        self.delays.append((t, self.queue_bits / self.capacity * 1000.0))

    def report(self, t: float) -> dict:
        window = [(a, d) for a, d in self.delays if a > t - 2.0]
        n = len(window)
        mx = sum(a for a, _ in window) / n
        my = sum(d for _, d in window) / n
        sxx = sum((a - mx) ** 2 for a, _ in window) or 1.0
        slope = sum((a - mx) * (d - my) for a, d in window) / sxx
        return {
            "t_ms": t * 1000.0,
            "wire_bytes": int(self.received_bits / 8),
            "queue_delay_ms": window[-1][1],
            "delay_trend_ms_per_s": slope,
            "frames": [int(t * 15)] * 3,
        }


def simulate(est: CapacityEstimator, link: Bottleneck, t0: float, t1: float, log: list, capacity=None) -> float:
    t = t0
    next_report = t0
    while t < t1:
        if capacity is not None:
            link.capacity = capacity(t)
        link.step(t, est.value)
        if t >= next_report:
            est.update(link.report(t), t)
            next_report += REPORT
        log.append((t, est.value, link.capacity, link.queue_bits / link.capacity))
        t += DT
    return t


def test_steady_link_is_used_and_the_queue_stays_short():
    est, log = CapacityEstimator(), []
    link = Bottleneck(1e6)
    simulate(est, link, 0.0, 30.0, log)
    late = [x for x in log if x[0] >= 10]
    mean = sum(v for _, v, _, _ in late) / len(late)
    assert 0.88e6 <= mean <= 1.05e6, mean
    delays = sorted(q for *_, q in late)
    assert delays[int(0.95 * len(delays))] <= 0.2, delays[-1]  # p95 of the queue <= 200 ms
    assert est.decreases >= 1


def test_a_sudden_drop_is_followed_within_a_second():
    est, log = CapacityEstimator(EstimatorPolicy(start_bps=2e6)), []
    link = Bottleneck(2e6)
    t = simulate(est, link, 0.0, 10.0, log)
    simulate(est, link, t, t + 5.0, log, capacity=lambda _t: 300e3)
    after = [(x[0] - t, x[1]) for x in log if x[0] >= t]
    below = next(dt for dt, v in after if v < 300e3)
    assert below <= 1.0, after[:30]
    assert all(v < 400e3 for dt, v in after if dt > 1.5)


def test_capacity_that_comes_back_is_found_within_five_seconds():
    est, log = CapacityEstimator(), []
    link = Bottleneck(300e3)
    t = simulate(est, link, 0.0, 15.0, log)
    simulate(est, link, t, t + 8.0, log, capacity=lambda _t: 2e6)
    after = [(x[0] - t, x[1]) for x in log if x[0] >= t]
    used = next(dt for dt, v in after if v >= 0.8 * 2e6)
    assert used <= 5.0, after[::10]


def test_the_estimate_never_runs_far_ahead_of_what_was_received():
    est = CapacityEstimator()
    for k in range(40):  # the sender sends little (a static scene): 100 kbit/s received, calm path
        est.update(
            {"t_ms": k * 250.0, "wire_bytes": k * 3125, "queue_delay_ms": 0.5, "delay_trend_ms_per_s": 0.0}, k * 0.25
        )
    p = est.policy  # it does not grow past 1.5 x received + the floor (nor fall without a reason)
    assert est.value <= max(p.start_bps, p.received_headroom * 100e3 + p.received_floor_bps) + 1


def test_heavy_loss_lowers_the_bound_light_loss_does_not():
    def run(loss: float) -> CapacityEstimator:
        est = CapacityEstimator(EstimatorPolicy(start_bps=1e6))
        sent = 0
        for k in range(40):
            t = k * 0.25
            sent += 30
            got = int((sent - 30) * (1 - loss))  # fragments arrive a report later, minus the lost share
            est.update(
                {
                    "t_ms": t * 1000,
                    "wire_bytes": int(k * 31250 * (1 - loss)),
                    "queue_delay_ms": 1.0,
                    "delay_trend_ms_per_s": 0.0,
                    "frames": [k * 4, got, 0],
                },
                t,
                enhancement_sent=sent,
            )
        return est

    heavy, light = run(0.3), run(0.01)
    assert heavy.loss > 0.2 and heavy.loss_bound_bps < 0.7e6, heavy.stats()
    assert light.loss < 0.05 and light.loss_bound_bps > 5e6, light.stats()
    assert heavy.value < light.value


def test_a_backlog_that_drains_slowly_is_overuse_one_the_pacer_holds_is_not():
    est = CapacityEstimator(EstimatorPolicy(start_bps=1e6))
    est.update(None, 0.0, backlog_s=0.5, drain_bps=1.15e6)  # drains at the pacing rate: a large frame
    assert est.value == 1e6 and est.decreases == 0
    est.update(None, 0.1, backlog_s=0.5, drain_bps=400e3)  # the first hop carries less
    assert est.value <= 0.95 * 400e3 + 1 and est.state == "overuse"


def test_reset_starts_over():
    est = CapacityEstimator(EstimatorPolicy(start_bps=500e3))
    est.update(None, 0.0, backlog_s=1.0, drain_bps=100e3)
    assert est.value < 500e3
    est.reset()
    assert est.value == 500e3 and est.decreases == 0


def test_garbage_in_reports_is_ignored():
    est = CapacityEstimator()
    v = est.update(
        {"t_ms": "x", "queue_delay_ms": "nan?", "delay_trend_ms_per_s": None, "frames": "no"}, 0.0, enhancement_sent=5
    )
    assert v == est.policy.start_bps


def test_pacer_releases_at_its_rate_base_first_and_expires_stale_enhancements():
    p = Pacer(800e3, burst_s=0.01, min_burst_bytes=1000)  # 100 kB/s
    for _ in range(10):
        p.push(1, b"e" * 1000, 0.0)
    for _ in range(10):
        p.push(0, b"b" * 1000, 0.0)
    out = p.pop(0.0)
    assert [m.tier for m in out] == [0]  # one burst's worth, base first
    sent = len(out)
    t = 0.0
    while t < 0.1:
        t += 0.005
        out = p.pop(t)
        sent += len(out)
    assert 9 <= sent <= 12, sent  # 100 kB/s for 0.1 s = 10 messages of 1 kB (plus the burst)
    assert p.expire(0.2, 0.15) > 0 and p.expired > 0
    assert p.pending_bytes == sum(len(m.data) for q in (p._base, p._enh) for m in q)
    p.push(1, b"e" * 1000, 0.2)
    assert p.wait_s() is not None
    p.clear()
    assert p.wait_s() is None and p.pending_bytes == 0


def test_tiers_drop_at_once_and_come_back_once_rate_control_settled():
    c = TierController(3)
    rates = [100e3, 300e3, 900e3]
    assert c.update(1e6, rates, 0.0) == 3
    assert c.update(200e3, rates, 0.1) == 1  # a sudden fall: straight to what fits (300 > 1.4 x 200)
    # the encoder settles on the new target: every tier fits again, after a short hold
    settled = [30e3, 90e3, 230e3]
    assert c.update(260e3, settled, 0.2) == 1
    assert c.update(260e3, settled, 0.7) == 3
    assert c.steps_down == 1 and c.steps_up == 1
    c.current = 1  # only two tiers fit 1.1 x the estimate: the third stays off
    assert c.update(200e3, settled, 1.0) == 1 and c.update(200e3, settled, 1.5) == 2
    # a small backoff of the estimate (10 %) is no reason to drop a tier
    c.current = 3
    assert c.update(0.9 * 230e3, settled, 1.6) == 3
    assert c.update(260e3, None, 0.8) == 3  # no rates yet: unchanged


def test_a_short_queue_behind_a_sender_that_offered_little_costs_a_mild_cut():
    est = CapacityEstimator(EstimatorPolicy(start_bps=800e3))
    for k in range(6):  # the sender stalled: 200 kbit/s received, then a burst queues 50 ms
        est.update(
            {
                "t_ms": k * 250.0,
                "wire_bytes": k * 6250,
                "queue_delay_ms": 50.0 if k == 5 else 1.0,
                "delay_trend_ms_per_s": 0.0,
            },
            k * 0.25,
        )
    assert est.state == "overuse" and est.value >= 0.85 * 800e3 - 1, est.stats()
    est.update({"t_ms": 2000.0, "wire_bytes": 40000, "queue_delay_ms": 300.0, "delay_trend_ms_per_s": 100.0}, 2.0)
    assert est.value < 400e3, est.stats()  # a long queue: down to what the path delivers


def test_start_up_and_steady_use_from_300_kbits_to_5_mbits():
    """From the start rate (150 kbit/s) the capacity is found within 5 s, and then used (>= 90 %
    of it) with a short queue (p95 <= 200 ms, never the whole buffer), at every link rate."""
    for cap in (300e3, 1e6, 2e6, 5e6):
        est, log = CapacityEstimator(), []
        simulate(est, Bottleneck(cap), 0.0, 30.0, log)
        found = next(t for t, v, _, _ in log if v >= 0.8 * cap)
        assert found <= 5.0, (cap, found)
        late = [x for x in log if x[0] >= 10]
        used = sum(min(v, c) for _, v, c, _ in late) / len(late) / cap
        assert used >= 0.9, (cap, used)
        queues = sorted(q for *_, q in late)
        assert queues[int(0.95 * len(queues))] <= 0.2 and max(q for *_, q in log) < 0.3, (cap, queues[-1])


def test_a_rise_to_5_mbits_is_found_within_five_seconds_without_a_long_queue():
    for lo, hi in ((300e3, 2e6), (300e3, 5e6), (1e6, 5e6)):
        est, log = CapacityEstimator(), []
        link = Bottleneck(lo)
        t = simulate(est, link, 0.0, 15.0, log)
        simulate(est, link, t, t + 8.0, log, capacity=lambda _t, hi=hi: hi)
        after = [(x[0] - t, x[1], x[3]) for x in log if x[0] >= t]
        used = next(dt for dt, v, _ in after if v >= 0.8 * hi)
        assert used <= 5.0, (lo, hi, used)
        assert max(q for *_, q in after) <= 0.2, (lo, hi)  # the climb never queues 200 ms


def _report(k: float, wire: int, queue: float, trend: float = 0.0, got: int = 0) -> dict:
    return {
        "t_ms": k * 250.0,
        "wire_bytes": wire,
        "queue_delay_ms": queue,
        "delay_trend_ms_per_s": trend,
        "frames": [int(k), got, 0],
    }


def test_loss_behind_a_queue_is_left_to_the_delay_estimate_random_loss_cuts_once_a_second():
    # fragments expire in a long queue: 40 % "lost", but the queue says congestion, the loss bound holds
    est = CapacityEstimator(EstimatorPolicy(start_bps=1e6))
    for k in range(12):
        est.update(_report(k, k * 31250, 300.0, 50.0, got=int(k * 30 * 0.6)), k * 0.25, enhancement_sent=k * 30)
    assert est.loss > 0.3 and est.loss_bound_bps == est.policy.max_bps, est.stats()
    # 20 % random loss on a calm path: one cut per second, not one per report
    est = CapacityEstimator(EstimatorPolicy(start_bps=1e6))
    cuts, bound = 0, est.loss_bound_bps
    for k in range(16):
        est.update(_report(k, k * 25000, 1.0, got=int(k * 30 * 0.8)), k * 0.25, enhancement_sent=k * 30)
        cuts += est.loss_bound_bps < bound
        bound = est.loss_bound_bps
    assert est.loss > 0.1 and 2 <= cuts <= 4, (cuts, est.stats())
    # and once the loss is gone, the bound stops binding within seconds
    for k in range(16, 40):
        est.update(_report(k, k * 25000, 1.0, got=int(k * 30 - 90)), k * 0.25, enhancement_sent=k * 30)
    assert est.loss_bound_bps > 2 * est.estimate_bps, est.stats()


def test_a_draining_queue_holds_the_estimate_near_the_rate_it_drains_at():
    """After a deep drop the estimate may sit far below the path (the rate received while it
    recovered from loss); a queue that drains shows what the path carries: not below 85 % of it."""
    est = CapacityEstimator(EstimatorPolicy(start_bps=40e3))
    q = [300.0, 280.0, 250.0, 220.0, 190.0, 160.0]
    for k, queue in enumerate(q):  # 300 kbit/s received while the queue shrinks
        est.update(_report(k, k * 9375, queue, -120.0), k * 0.25)
    assert est.state == "underuse" and 0.8 * 300e3 <= est.value <= 300e3, est.stats()


def test_a_congestion_point_received_for_a_second_without_a_queue_is_forgotten():
    """Near where the path last congested the estimate grows slowly; once that rate has been
    received for a second with no queue forming, the capacity has risen: fast growth again."""

    def run(queue) -> CapacityEstimator:
        est = CapacityEstimator(EstimatorPolicy(start_bps=280e3))
        est.last_congested_bps, est._last_decrease = 280e3, 0.0
        for k in range(1, 9):  # 300 kbit/s received
            est.update(_report(k, k * 9375, queue(k)), k * 0.25)
        return est

    calm = run(lambda k: 2.0)
    assert calm.probes == 1 and calm.last_congested_bps is None and calm.value > 350e3, calm.stats()
    queued = run(lambda k: 30.0 if k % 2 else 22.0)  # a queue stays: slow growth
    assert queued.probes == 0 and queued.value < 400e3, queued.stats()


def test_a_mild_cut_that_leaves_the_estimate_above_the_rate_received_is_followed_at_once():
    """A fast ramp overshoots (estimate 1.3 Mbit/s, 0.86 Mbit/s received): the first short queue
    costs a mild cut, and the next report that finds the queue grown cuts to the rate received,
    not a decrease interval later."""
    est = CapacityEstimator(EstimatorPolicy(start_bps=1.3e6))
    wire = 0
    for k in range(8):  # 0.86 Mbit/s received, no queue
        wire += int(0.86e6 / 8 * 0.25)
        est.update(_report(k, wire, 2.0), k * 0.25)
    assert est.state == "normal" and est.value >= 1.3e6, est.stats()
    wire += int(0.86e6 / 8 * 0.25)
    est.update(_report(8, wire, 50.0, 60.0), 2.0)
    assert est.state == "overuse" and est.value >= 0.85 * 1.3e6 - 1, est.stats()  # mild: 1.105 M
    wire += int(0.86e6 / 8 * 0.25)
    est.update(_report(9, wire, 90.0, 120.0), 2.25)  # 0.25 s later, the queue grew
    assert est.value <= 0.86e6, est.stats()
