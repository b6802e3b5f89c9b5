"""Bandwidth-adaptive tiers (the tier controller, docs/TRANSPORT.md "Tier controller"): the
controller alone, then short link scenarios between two network namespaces made (and removed) here.

The link is a veth pair shaped by `tc tbf` on the sender's side, with random loss added by
nftables on the receiver's input. The sender replays a pre-encoded clip at its real frame rate
(tools/bench_adaptation.py), so the link's behaviour is measured, not the slow Python encoder.
The clip's tier sets are about 125, 390 and 1080 kbit/s. Each scenario takes at most 20 s;
tools/bench_adaptation.py runs the long versions and writes docs/ADAPTATION.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from snisd.transport.feedback import TierController, TierPolicy

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))


# ---------------------------------------------------------------------------------------------
# The controller alone (fast).


def _report(t_ms: float, total_bytes: int, queue_ms: float = 0.0, trend: float = 0.0) -> dict:
    return {"type": "report", "t_ms": t_ms, "bytes": [total_bytes, 0, 0], "queue_delay_ms": queue_ms,
            "delay_trend_ms_per_s": trend}


RATES = [125e3, 390e3, 1080e3]


def test_drop_goes_straight_to_the_tier_set_that_fits():
    c = TierController(3)
    total = 0
    for k in range(4):  # 1 Mbit/s delivered, calm
        total += 62_500
        assert c.update(_report(k * 500, total), 0.0, now=k * 0.5, rates=RATES) == 3
    # the link drops to 300 kbit/s: the receiver gets 300 kbit/s and sees the queue grow
    for k in range(4, 6):
        total += 18_750
        got = c.update(_report(k * 500, total, queue_ms=250, trend=200), 0.2, now=k * 0.5, rates=RATES)
    assert got == 1 and c.steps_down == 1, "one step from 3 tiers to the base alone"
    assert 250e3 < c.delivered_bps < 350e3


def test_without_rates_one_tier_per_step_and_never_below_the_base():
    c = TierController(3)
    seen = [c.update(_report(k * 500, 0, queue_ms=500), 0.0, now=k * 0.5) for k in range(10)]
    assert seen[0] == 2 and min(seen) == 1 and seen[-1] == 1


def test_probe_hysteresis_first_failure_keeps_the_hold_then_doubles_and_resets():
    p = TierPolicy()
    c = TierController(2, p)
    c.current = 1
    t = 0.0

    def calm_until(t_end: float) -> None:
        nonlocal t
        while t < t_end:
            c.update(_report(t * 1000, 0), 0.0, now=t)
            t += 0.5

    def calm_until_probe() -> float:
        nonlocal t
        start, ups = t, c.steps_up
        while c.steps_up == ups:
            c.update(_report(t * 1000, 0), 0.0, now=t)
            t += 0.5
        return t - start

    def congest() -> None:
        nonlocal t
        c.update(_report(t * 1000, 0, queue_ms=400), 0.0, now=t)
        t += 0.5

    calm_until_probe()
    assert c.current == 2  # the first probe
    congest()
    assert c.current == 1 and c._hold == p.hold_s  # the first failed probe: the same wait
    assert calm_until_probe() <= max(p.hold_s, p.up_calm_s) + 0.5  # probes again soon
    congest()
    longer = min(2 * p.hold_s, p.max_hold_s)
    assert longer > p.hold_s and longer <= 4.5  # capacity that comes back is found within ~5 s
    assert c.current == 1 and c._hold == longer  # the second failure in a row: a longer wait
    assert calm_until_probe() >= longer - 0.5
    calm_until(t + p.hold_s + 0.5)  # this probe held: the wait is back to normal
    assert c._hold == p.hold_s and c.current == 2


def test_steady_calm_path_does_not_oscillate():
    c = TierController(3)
    seen = {c.update(_report(k * 500, k * 60_000, queue_ms=5, trend=2), 0.0, now=k * 0.5) for k in range(120)}
    assert seen == {3} and c.steps_down == 0


# ---------------------------------------------------------------------------------------------
# Link scenarios between two network namespaces.

pytest.importorskip("aiortc")
pytest.importorskip("aiohttp")


def _skip_reason() -> str | None:
    import bench_adaptation as ba

    why = ba.netns_unavailable()
    if why:
        return why
    link = ba.Link(tag=f"p{os.getpid() % 10000}")
    try:
        link.up()
        link.set_rate(1000)
        link.set_loss(1)
    except Exception as exc:
        return f"cannot build the test link: {exc}"
    finally:
        link.down()
    return None


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    import bench_adaptation as ba

    why = _skip_reason()
    if why:
        pytest.skip(why)
    return ba.encode_clip(tmp_path_factory.mktemp("clip") / "clip.pkl")


def _run(clip, tmp_path, name, phases):
    import bench_adaptation as ba

    sc = ba.Scenario(name, name, phases)
    with ba.Link() as link:
        res = ba.run_scenario(sc, clip, tmp_path, link=link, port=18700 + os.getpid() % 200)
    info = {k: v for k, v in res.items() if k != "series"}
    return res, info


def _scenario(clip, tmp_path, name, phases, check):
    """Run a link scenario and check it; a run that misses a bound is repeated once, and the
    second run must meet every bound. These are real-time measurements on a shared 2-core
    machine, where another job can delay a frame past a limit; a second miss is a failure."""
    for d in ("run1", "run2"):
        (tmp_path / d).mkdir(exist_ok=True)
    res, info = _run(clip, tmp_path / "run1", name, phases)
    try:
        check(res, info)
    except AssertionError as first:
        res, info = _run(clip, tmp_path / "run2", name, phases)
        try:
            check(res, info)
        except AssertionError as second:
            raise AssertionError(f"missed twice: first {first}; then {second}") from None


@pytest.mark.slow
def test_step_down_and_back_up(clip, tmp_path):
    """2 Mbit/s -> 300 kbit/s -> 2 Mbit/s (6 + 8 + 6 s)."""
    _scenario(clip, tmp_path, "step", [(6, 2000, 0), (8, 300, 0), (6, 2000, 0)], _check_step)


def _check_step(res, info):
    rates = res["rates_kbps"]
    assert rates[0] < 0.85 * 300 < rates[1] and rates[2] < 0.85 * 2000, rates
    drop, rise = res["steps"]
    # after the drop the sender sends less than the link carries within 1 s
    assert drop["sent_below_link_after_s"] is not None and drop["sent_below_link_after_s"] <= 1.0, info
    # the base tier never stalls: no gap > 1 s between frames the receiver released
    assert res["stalls"] == [], info
    assert res["frames_released"] >= 0.97 * res["frames_sent"], info
    # after the capacity returns a tier is added within 5 s
    assert rise["tier_up_after_s"] is not None and rise["tier_up_after_s"] <= 5.0, info
    hi, lo, back = res["phases"]
    # steady state: the highest tier set that fits is sent, and most of its rate arrives
    assert hi["tiers_mode"] == 3 and hi["delivered_kbps"] >= 0.7 * rates[2], info
    assert lo["tiers_mode"] == 1 and lo["delivered_kbps"] >= 0.7 * rates[0], info
    assert lo["sent_kbps"] < 300, info


@pytest.mark.slow
def test_link_just_above_two_tiers_is_used(clip, tmp_path):
    """A link just above the rate of two tiers (22 % above, as 480 kbit/s was for the version-1 clip's 393):
    two tiers fit, three do not; the link is used >= 70 %."""
    import bench_adaptation as ba

    rates = ba.clip_rates(clip)
    link = round(1.22 * rates[1])
    assert link < rates[2], rates
    _scenario(clip, tmp_path, "fit", [(18, link, 0)], _check_fit)


def _check_fit(res, info):
    (ph,) = res["phases"]
    assert ph["fits_tiers"] == 2 and ph["tiers_mode"] == 2, info
    assert ph["utilisation"] >= 0.7, info
    # no oscillation: probes get rarer (waits of 3, 3, 6, 12 s after failed probes), so at most
    # two steps up in the 9-s second half, and the tier set that fits is sent most of it
    assert ph["probes_2nd_half"] <= 2 and ph["share_at_fit_2nd_half"] >= 0.75, info
    assert res["stalls"] == [], info


@pytest.mark.slow
def test_loss_and_keyframe_recovery(clip, tmp_path):
    """2 Mbit/s with 2 % random loss, and a 2.5-s blackout in the middle (the sender gives up the
    base backlog): keyframe requested, clean picture soon after the blackout ends."""
    _scenario(clip, tmp_path, "loss", [(4, 2000, 2), (2.5, 2000, 100), (8.5, 2000, 2)], _check_loss)


def _check_loss(res, info):
    burst_end = res["phases"][2]["start"]
    cl = res["clean_after_loss_s"]
    events = cl["events_list"]
    assert events and all(e[1] is not None for e in events), info  # every impairment ends clean
    after = [e for e in events if e[1] >= burst_end]
    assert after and after[0][1] - burst_end <= 3.0, info  # clean picture within 3 s of the burst's end
    # outside the blackout a loss is repaired at the next switch point (every second) or keyframe
    short = [e[1] - e[0] for e in events if e[1] < res["phases"][1]["start"] or e[0] > burst_end + 3]
    assert all(d <= 2.0 for d in short), info
    assert res["keyframe_requests"] >= 2, info  # the session's first one, and the recovery
    # the base kept flowing outside the blackout
    late = [s for s in res["stalls"] if s[0] > burst_end + 3]
    assert not late, info
