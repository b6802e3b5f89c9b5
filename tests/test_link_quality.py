"""The delivered-quality benchmark (tools/bench_link_quality.py, tools/linkscore.py): the playout
rule, clock alignment, stalls and picture matching deterministically; VMAF of a played-out
sequence; and a few seconds of the real machinery (snisd and aiortc VP8 through a shaped link
between two network namespaces, root only) on a synthetic clip written here."""

from __future__ import annotations

import argparse
import os
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import linkscore as ls  # noqa: E402

FPS = 20.0
PERIOD = 1000.0 / FPS


def _shown(indices, latency_ms, epoch=1000.0, offset=0.0, late=None):
    """Pictures of `indices` shown `latency_ms` after capture (receiver clock); `late` maps an
    index to its own latency."""
    late = late or {}
    return [ls.Shown(n, epoch + n * PERIOD - offset + late.get(n, latency_ms)) for n in indices]


# ---------------------------------------------------------------------------------------------
# The playout rule.


def test_pictures_in_time_are_shown_at_their_own_slot():
    shown = _shown(range(0, 40), 100.0)
    slots = ls.playout(shown, 5, 30, 1000.0, FPS, 0.0, 400.0)
    assert [shown[k].index for k in slots] == list(range(5, 31))


def test_a_late_picture_counts_as_the_last_one_shown_repeated():
    # frame 10 is 450 ms late (deadline 400 ms): slot 10 shows frame 9 again; frame 11 is in time
    shown = _shown(range(0, 30), 100.0, late={10: 450.0})
    slots = ls.playout(shown, 0, 20, 1000.0, FPS, 0.0, 400.0)
    got = [shown[k].index for k in slots]
    assert got[9:13] == [9, 9, 11, 12]
    # a picture that missed its slot is seen at a later one only while nothing newer has come
    shown = _shown(range(0, 30), 100.0, late={10: 430.0, 11: 700.0})
    got = [shown[k].index for k in ls.playout(shown, 0, 20, 1000.0, FPS, 0.0, 400.0)]
    assert got[9:14] == [9, 9, 10, 12, 13]


def test_lost_pictures_and_a_blank_start():
    shown = _shown([3, 4, 8, 9], 50.0)
    slots = ls.playout(shown, 0, 10, 1000.0, FPS, 0.0, 400.0)
    assert slots[:3] == [ls.BLANK] * 3
    assert [shown[k].index for k in slots[3:]] == [3, 4, 4, 4, 4, 8, 9, 9]


def test_an_early_picture_waits_for_its_slot():
    # shown 300 ms before its capture (a badly aligned clock would do this): still at its own slot
    shown = _shown(range(0, 20), -300.0)
    got = [shown[k].index for k in ls.playout(shown, 2, 12, 1000.0, FPS, 0.0, 400.0)]
    assert got == list(range(2, 13))


def test_a_longer_deadline_rescues_late_pictures():
    shown = _shown(range(0, 60), 600.0)
    short = [shown[k].index for k in ls.playout(shown, 20, 40, 1000.0, FPS, 0.0, 400.0)]
    long = [shown[k].index for k in ls.playout(shown, 20, 40, 1000.0, FPS, 0.0, 1000.0)]
    assert long == list(range(20, 41))
    assert short == [n - 4 for n in range(20, 41)]  # 600 ms late with a 400 ms deadline: 4 frames behind


# ---------------------------------------------------------------------------------------------
# Clock alignment.


def _ping(sync, t0_receiver, offset, up_ms, down_ms):
    """A ping at receiver time t0 crossing `up_ms` to a sender whose clock is `offset` ahead and
    `down_ms` back; the sender answers in 0.1 ms."""
    t1 = t0_receiver + up_ms + offset
    t2 = t1 + 0.1
    t3 = t0_receiver + up_ms + 0.1 + down_ms
    return sync.on_pong({"type": "pong", "t0": t0_receiver, "t1": t1, "t2": t2}, t3)


def test_clock_offset_from_the_smallest_round_trip():
    from snisd.transport.clocksync import ClockSync

    offset = 7_200_000.0  # the sender's clock two hours ahead
    sync = ClockSync()
    samples = [
        _ping(sync, 1000.0 * k, offset, up, down)
        for k, (up, down) in enumerate([(2, 2), (150, 3), (1.0, 1.4), (40, 300), (5, 5)])
    ]
    best = ls.best_clock_offset(ls.ClockSample(s.offset_ms, s.rtt_ms) for s in samples)
    assert best.rtt_ms == pytest.approx(2.4)
    assert abs(best.offset_ms - offset) <= best.rtt_ms / 2  # the NTP bound
    assert best.offset_ms == pytest.approx(offset - 0.2)  # (up - down) / 2
    with pytest.raises(ValueError):
        ls.best_clock_offset([])


def test_playout_and_latency_do_not_depend_on_the_sender_clock():
    offset = 7_200_000.0
    epoch_sender = 5000.0 + offset  # frame 0 captured at receiver time 5000
    shown = _shown(range(0, 40), 120.0, epoch=epoch_sender, offset=offset, late={7: 500.0})
    base = _shown(range(0, 40), 120.0, epoch=5000.0, late={7: 500.0})
    a = ls.playout(shown, 0, 30, epoch_sender, FPS, offset, 400.0)
    b = ls.playout(base, 0, 30, 5000.0, FPS, 0.0, 400.0)
    assert a == b
    lat = ls.latencies_ms(shown, epoch_sender, FPS, offset)
    assert lat[0] == pytest.approx(120.0) and lat[7] == pytest.approx(500.0)
    assert ls.percentile(lat, 50) == pytest.approx(120.0)


def test_capture_epoch_is_the_frame_that_waited_least():
    idx = [0, 1, 2, 3]
    t = [1003.0, 1051.0, 1102.0, 1160.0]
    assert ls.capture_epoch(idx, t, FPS) == pytest.approx(1001.0)


# ---------------------------------------------------------------------------------------------
# Stalls and picture matching.


def test_stalls_count_freezes_beyond_the_frame_interval():
    fresh = list(range(40))
    assert ls.stalls(fresh, FPS) == ls.Stalls(0, 0.0, 0.0, 1.0)
    one_repeat = [0, 1, 1, 3, 4]
    assert ls.stalls(one_repeat, FPS).count == 0  # 50 ms beyond the interval: no stall
    frozen = [0, 1, 2] + [2] * 6 + [9, 10]  # 6 repeats at 20 fps: 300 ms without a new picture
    st = ls.stalls(frozen, FPS)
    assert st.count == 1 and st.total_s == pytest.approx(0.3) and st.longest_s == pytest.approx(0.3)
    blank_start = [ls.BLANK] * 8 + [8, 9]
    st = ls.stalls(blank_start, FPS)
    assert st.count == 1 and st.total_s == pytest.approx(0.4)


def test_start_index_found_by_comparing_pictures():
    rng = np.random.default_rng(1)
    src = [rng.integers(0, 256, (36, 64), dtype=np.uint8) for _ in range(60)]
    rel = [0, 1, 2, 4, 5, 9, 10, 20, 30]
    start = 7
    noisy = [np.clip(src[start + r].astype(int) + rng.integers(-3, 4, (36, 64)), 0, 255) for r in rel]
    got, err, runner = ls.match_start(lambda k: noisy[k], rel, lambda n: src[n], len(src), max_start=20)
    assert got == start and err < runner / 3


# ---------------------------------------------------------------------------------------------
# VMAF of a played-out sequence (ffmpeg with libvmaf from imageio-ffmpeg).


def _scene(n: int, w: int = 320, h: int = 180, fps: float = FPS):
    from snisd.capture.synthetic import SyntheticScene

    scene = SyntheticScene(w, h, fps)
    return [scene.render(i) for i in range(n)]


def _i420(f) -> np.ndarray:
    return np.concatenate([f.y.ravel(), f.u.ravel(), f.v.ravel()])


def test_vmaf_of_the_source_far_above_repeated_frames(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    from rdlib import ffmpeg_exe

    frames = [_i420(f) for f in _scene(24)]
    same = ls.vmaf_sequence(
        ffmpeg_exe(), 320, 180, FPS, lambda i: frames[i], lambda i: frames[i], 24, tmp_path / "same.json"
    )
    # every picture shown for four slots (three of four late): what the playout rule makes of it
    shown = [ls.Shown(n, 1000.0 + n * PERIOD + (50.0 if n % 4 == 0 else 900.0)) for n in range(24)]
    slots = ls.playout(shown, 0, 23, 1000.0, FPS, 0.0, 400.0)
    assert [shown[k].index for k in slots][:8] == [0, 0, 0, 0, 4, 4, 4, 4]
    rep = ls.vmaf_sequence(
        ffmpeg_exe(),
        320,
        180,
        FPS,
        lambda i: frames[shown[slots[i]].index],
        lambda i: frames[i],
        24,
        tmp_path / "rep.json",
    )
    blank = ls.blank_frame(320, 180)
    grey = ls.vmaf_sequence(
        ffmpeg_exe(), 320, 180, FPS, lambda i: blank, lambda i: frames[i], 24, tmp_path / "blank.json"
    )
    assert same["vmaf"] > 95 and len(same["frames"]) == 24
    assert rep["vmaf"] < same["vmaf"] - 20
    assert grey["vmaf"] < rep["vmaf"]
    fresh = [rep["frames"][i] for i in range(24) if i % 4 == 0]
    stale = [rep["frames"][i] for i in range(24) if i % 4 != 0]
    assert min(fresh) > max(stale)  # the repeated slots are the ones that score low


# ---------------------------------------------------------------------------------------------
# The machinery for a few seconds: snisd and aiortc VP8 over a shaped link (root).


def _netns_skip() -> str | None:
    import bench_adaptation as ba

    why = ba.netns_unavailable()
    if why:
        return why
    link = ba.Link(tag=f"q{os.getpid() % 10000}")
    try:
        link.up()
        link.set_rate(1000)
    except Exception as exc:
        return f"cannot build the test link: {exc}"
    finally:
        link.down()
    return None


@pytest.mark.slow
def test_short_runs_snisd_and_aiortc_vp8(tmp_path):
    pytest.importorskip("aiortc")
    pytest.importorskip("aiohttp")
    pytest.importorskip("imageio_ffmpeg")
    why = _netns_skip()
    if why:
        pytest.skip(why)
    import bench_link_quality as blq

    from snisd.y4m import Y4mWriter

    fps = 10.0
    clip = tmp_path / "scene.y4m"
    with open(clip, "wb") as f:
        w = Y4mWriter(f, 320, 180, Fraction(10))
        for fr in _scene(60, fps=fps):
            w.write(fr)
    args = argparse.Namespace(
        warmup=1.0,
        duration=4.0,
        playout_ms=400.0,
        also_playout_ms=[],
        stall_ms=200.0,
        vmaf_threads=2,
        snisd_config=None,
    )
    (tmp_path / "src").mkdir()
    src = blq.prepare_source(str(clip), "", args.warmup + args.duration + 25.0, tmp_path / "src")
    assert src.fps == fps and src.clip_frames == 60 and (src.width, src.height) == (320, 180)
    sc = blq.SCENARIOS["2.5M"]
    results = {}
    for n, sender in enumerate(("snisd", "vp8")):
        run = blq.run_one(sender, sc, src, tmp_path / sender, args, port=18700 + os.getpid() % 100 + n)
        sh = blq.showing_snisd(run, src) if sender == "snisd" else blq.showing_aiortc(run, src)
        r = blq.score(run, sh, src, args, tmp_path / sender)
        results[sender] = r
        info = {k: v for k, v in r.items() if k not in ("slot_index", "vmaf_frames")}
        assert r["slots"] == 40, info
        assert abs(r["clock_offset_ms"]) <= max(5.0, r["clock_rtt_ms"]), info  # one machine: the clocks agree
        assert r["pictures_in_window"] >= 20, info
        assert r["latency_p50_ms"] is not None and 0 < r["latency_p50_ms"] < 2000, info
        assert 0 < r["delivered_kbps"] <= 2500 * 1.05, info
        assert r["vmaf"] > 20, info
        # the score is what the slots show: fresh slots score above repeated ones on moving content
        own = [
            i
            for i in range(1, r["slots"])
            if r["slot_index"][i] == r["window_frames"][0] + i and r["slot_index"][i] != r["slot_index"][i - 1]
        ]  # slots showing their own frame, fresh
        fresh = [r["vmaf_frames"][i] for i in own]
        assert fresh and np.mean(fresh) > 50, info
    assert results["snisd"]["info"]["hash_mismatches"] == 0
    assert results["snisd"]["info"]["capture_epoch_from"] == ["capture"]
    vp8 = results["vp8"]["info"]
    assert vp8["start_match_mad"] < vp8["runner_up_mad"] / 2, vp8
