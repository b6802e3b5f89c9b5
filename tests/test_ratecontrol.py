"""Encoder rate control (snisd/codec/ratecontrol.py): deterministic, driven by a synthetic codec
whose frame sizes follow a known law with noise (no clock, no real encoder), plus one short run of
the real encoder."""

from __future__ import annotations

import random

import pytest

from snisd.codec.ratecontrol import RateController, RatePolicy
from snisd.errors import InputError

FPS = 15
SWITCH = 15  # a key picture every second
KEYINT = 150


class FakeCodec:
    """bits = scale(kind) * 2^(-qp / 4) * noise: a slope other than the controller's model (3.5),
    key pictures 4x and keyframes 10x a P-frame at the same qp."""

    def __init__(self, seed: int = 1, scale: float = 3e6) -> None:
        self.rng = random.Random(seed)
        self.scale = scale
        self.index = 0

    def kind(self) -> str:
        if self.index % KEYINT == 0:
            return "I"
        return "K" if self.index % SWITCH == 0 else "P"

    def bits(self, kind: str, qp: int) -> float:
        mult = {"I": 10.0, "K": 4.0, "P": 1.0}[kind]
        self.index += 1
        return self.scale * mult * 2.0 ** (-qp / 4.0) * self.rng.uniform(0.7, 1.3)


def run(rc: RateController, codec: FakeCodec, seconds: float, log: list) -> None:
    for _ in range(int(seconds * FPS)):
        kind = codec.kind()
        qp = rc.plan(kind)
        bits = codec.bits(kind, qp)
        rc.coded(kind, qp, bits)
        log.append((kind, qp, bits, rc.target_bps))


def second_rates(log: list) -> list[float]:
    return [sum(b for _, _, b, _ in log[k : k + FPS]) for k in range(0, len(log) - FPS + 1, FPS)]


def make(target: float, budget_ms: float = 300.0) -> RateController:
    return RateController(640, 360, FPS, target, SWITCH, KEYINT, RatePolicy(budget_ms=budget_ms))


@pytest.mark.parametrize("target", [150e3, 600e3, 3e6])
def test_settles_on_the_target_within_a_few_seconds(target):
    rc, log = make(target), []
    run(rc, FakeCodec(), 8, log)
    rates = second_rates(log)
    settled = sum(rates[3:]) / len(rates[3:])
    assert 0.9 * target <= settled <= 1.08 * target, (target, rates)
    assert all(0.75 * target <= r <= 1.25 * target for r in rates[3:]), rates


def test_no_frame_exceeds_the_budget_keyframes_and_key_pictures_included():
    rc, log = make(400e3, budget_ms=250), []
    run(rc, FakeCodec(seed=3), 12, log)
    budget = 400e3 * 0.25
    kinds = {k for k, *_ in log}
    assert kinds == {"I", "K", "P"}
    over = [(n, k, b) for n, (k, _, b, _) in enumerate(log) if b > budget]
    assert not over, over
    # key pictures and keyframes are the frames the budget caps: coarser qp than the P-frames around them
    k_qp = [q for k, q, *_ in log[FPS * 3 :] if k == "K"]
    p_qp = [q for k, q, *_ in log[FPS * 3 :] if k == "P"]
    assert min(k_qp) > sorted(p_qp)[len(p_qp) // 2], (k_qp, p_qp)


def test_a_target_drop_is_followed_at_once_and_a_rise_within_seconds():
    rc, log = make(2e6), []
    codec = FakeCodec(seed=5)
    run(rc, codec, 5, log)
    rc.set_target(300e3)
    drop = len(log)
    run(rc, codec, 5, log)
    after = second_rates(log[drop:])
    assert after[0] <= 1.4 * 300e3, after  # the first second after the drop already close to it
    assert all(0.8 * 300e3 <= r <= 1.2 * 300e3 for r in after[2:]), after
    rc.set_target(2e6)
    rise = len(log)
    run(rc, codec, 5, log)
    up = second_rates(log[rise:])
    assert up[2] >= 0.85 * 2e6 and all(r <= 1.2 * 2e6 for r in up), up


def test_a_new_keyframe_on_request_is_capped_too():
    rc, log = make(300e3), []
    codec = FakeCodec(seed=7)
    run(rc, codec, 4, log)
    qp = rc.plan("I")  # a keyframe request in the middle of the stream
    bits = codec.bits("I", qp)
    assert bits <= 300e3 * 0.3, (qp, bits)


def test_keyframes_and_key_pictures_are_planned_finer_by_their_offsets_where_the_budget_allows():
    # a budget that never binds: the plan is the rate level, each kind offset by its `finer`
    target, log, flat_log = 600e3, [], []
    rc = RateController(640, 360, FPS, target, SWITCH, KEYINT, RatePolicy(budget_ms=5000), finer={"I": 3, "K": 1})
    flat = RateController(640, 360, FPS, target, SWITCH, KEYINT, RatePolicy(budget_ms=5000))
    run(rc, FakeCodec(seed=11), 12, log)
    run(flat, FakeCodec(seed=11), 12, flat_log)
    # the next frame's plan, asked for each kind in the same state (nothing coded in between)
    plans = {kind: rc.plan(kind) for kind in ("P", "K", "I")}
    assert plans["P"] - plans["K"] == 1 and plans["P"] - plans["I"] == 3, plans
    flat_plans = {kind: flat.plan(kind) for kind in ("P", "K", "I")}
    assert len(set(flat_plans.values())) == 1, flat_plans
    # the level pays for the finer frames: the P-frames coarser than without offsets, the rate the same
    p_on = sorted(q for k, q, *_ in log[FPS * 3 :] if k == "P")
    p_off = sorted(q for k, q, *_ in flat_log[FPS * 3 :] if k == "P")
    assert p_on[len(p_on) // 2] >= p_off[len(p_off) // 2], (p_on, p_off)
    for one in (log, flat_log):
        settled = sum(second_rates(one)[3:]) / len(second_rates(one)[3:])
        assert 0.9 * target <= settled <= 1.1 * target, second_rates(one)


def test_a_frame_budget_still_caps_the_finer_keyframe():
    rc = RateController(640, 360, FPS, 300e3, SWITCH, KEYINT, RatePolicy(budget_ms=250), finer={"I": 6, "K": 3})
    log: list = []
    codec = FakeCodec(seed=13)
    run(rc, codec, 11, log)  # past the periodic keyframe at 10 s
    over = [(n, k, b) for n, (k, _, b, _) in enumerate(log) if b > 300e3 * 0.25]
    assert not over, over


def test_bad_inputs_are_typed_errors():
    with pytest.raises(InputError):
        RatePolicy(budget_ms=5)
    with pytest.raises(InputError):
        RatePolicy(min_qp=40, max_qp=30)
    rc = make(300e3)
    with pytest.raises(InputError):
        rc.set_target(0)
    with pytest.raises(InputError):
        rc.set_target(float("nan"))
    with pytest.raises(InputError):
        rc.plan("X")
    with pytest.raises(InputError):
        RateController(64, 64, 0, 1e5)
    with pytest.raises(InputError, match="'P'"):
        RateController(64, 64, 15, 1e5, finer={"P": 1})
    with pytest.raises(InputError, match="-1"):
        RateController(64, 64, 15, 1e5, finer={"I": -1})


def test_the_real_encoder_follows_its_target():
    from snisd.capture.synthetic import SyntheticScene
    from snisd.codec.encoder import Encoder, EncoderConfig
    from snisd.codec.ratecontrol import RateControlledEncoder

    fps = 10
    enc = RateControlledEncoder(Encoder(EncoderConfig(160, 96, fps, 1, tiers=2, switch_interval=fps)), 60e3)
    scene = SyntheticScene(160, 96, fps)
    sizes = []
    for i in range(50):
        if i == 20:
            enc.set_target(150e3)
        ef = enc.encode(scene.render(i))
        sizes.append(8 * sum(len(t) for t in ef.tiers))
        assert sizes[-1] <= enc.control.budget_bits * 1.5, (i, sizes[-1], enc.stats())
    low, high = sum(sizes[10:20]), sum(sizes[40:50])
    assert 0.7 * 60e3 <= low <= 1.3 * 60e3, sizes
    assert 0.7 * 150e3 <= high <= 1.3 * 150e3, sizes
    assert enc.stats()["qp"] is not None


def test_metrics_and_status_expose_estimate_target_and_qp():
    from snisd.metrics import families_from_snapshot, render

    snap = {
        "stages": {},
        "rate_control": {"target_kbps": 812.5, "qp": 23, "level": 22.4, "buffer_ms": 40.0, "budget_ms": 300.0},
        "transport": {
            "state": "connected",
            "estimate": {"estimate_kbps": 850.0},
            "target_kbps": 812.5,
            "max_tiers": 3,
            "bytes_sent": [1, 2, 3],
        },
    }
    text = render(families_from_snapshot(snap))
    assert "snisd_encoder_qp 23.0" in text
    assert "snisd_transport_estimate_bps 850000.0" in text
    assert "snisd_transport_target_bps 812500.0" in text
    assert "snisd_encoder_target_bps 812500.0" in text
    assert "snisd_transport_tiers_sent 3.0" in text


def test_a_file_encoded_at_a_target_bit_rate(tmp_path):
    """`snisd encode --bitrate`: the live sender's rate control on a file; a decodable stream whose
    rate follows the target, every frame within the frame budget."""
    pytest.importorskip("av")
    from pathlib import Path

    from snisd.files import decode_file, encode_file, read_stream

    clip = str(Path(__file__).resolve().parent / "data" / "bikes_12f.mp4")
    reports = {}
    for kbps in (150.0, 600.0):
        out = tmp_path / f"r{int(kbps)}.snis"
        rep = encode_file(clip, str(out), tiers=2, bitrate_kbps=kbps, frame_budget_ms=400)
        assert rep.qp is None and rep.target_kbps == kbps and rep.frames == 12, rep
        assert rep.mean_qp is not None and 4 <= rep.mean_qp <= 63, rep
        sizes = [8 * sum(len(t) for t in ef.tiers) for ef in read_stream(str(out))[1]]
        assert max(sizes) <= 1.5 * kbps * 1e3 * 0.4, (kbps, sizes)  # the budget (the first keyframe's guess: 1.5x)
        dec = decode_file(str(out), str(tmp_path / f"r{int(kbps)}.y4m"))
        assert dec.frames == 12 and not dec.errors, dec
        reports[kbps] = rep
    assert reports[600.0].mean_qp < reports[150.0].mean_qp, reports
    assert sum(reports[600.0].bytes_per_tier) > 2 * sum(reports[150.0].bytes_per_tier), reports
    with pytest.raises(InputError, match="-5"):
        encode_file(clip, str(tmp_path / "bad.snis"), bitrate_kbps=-5.0)
    with pytest.raises(InputError, match="budget"):
        encode_file(clip, str(tmp_path / "bad.snis"), bitrate_kbps=100.0, frame_budget_ms=1.0)
