"""SNIS-896 encode/decode: bit-exact shared loop, embedded tiers, key pictures, drift bound, errors."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import replace

import numpy as np
import pytest

from snisd.codec.bitstream import EncodedFrame, FrameHeader, SequenceHeader, tier_payload
from snisd.codec.decoder import Decoder, MissingReferenceError
from snisd.codec.encoder import Encoder, EncoderConfig, Tuning
from snisd.errors import BitstreamError, InputError, ModelError
from snisd.frame import Frame

DRIFT_BOUND_DB = 30.0  # a thinned decode stays within this PSNR of the encoder's picture of its tiers


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return 10 * np.log10(255.0**2 / max(mse, 1e-9))


def make_encoder(frames, analysis, synthesis, **kw) -> Encoder:
    f = frames[0]
    cfg = EncoderConfig(f.width, f.height, 25, 1, **kw)
    return Encoder(cfg, analysis=analysis, synthesis=synthesis)


def code_with_recons(enc: Encoder, frames) -> tuple[list[EncodedFrame], list[list[Frame]]]:
    """The coded frames, and beside each the encoder's own picture of every tier prefix."""
    out, recons = [], []
    for f in frames:
        out.append(enc.encode(f))
        recons.append([enc.reconstruction(k) for k in range(1, enc.config.tiers + 1)])
    return out, recons


@pytest.fixture(scope="module")
def coded(natural_frames, analysis, synthesis):
    """The 12 natural frames coded with 3 tiers and a key picture every 4 frames, plus the
    encoder's own picture of every tier prefix."""
    enc = make_encoder(natural_frames, analysis, synthesis, tiers=3, qp=26, switch_interval=4)
    return (enc, *code_with_recons(enc, natural_frames))


def same(a: Frame, b: Frame) -> bool:
    return np.array_equal(a.y, b.y) and np.array_equal(a.u, b.u) and np.array_equal(a.v, b.v)


def test_full_decoder_is_bit_identical_to_the_encoder(coded, synthesis):
    enc, frames, recons = coded
    dec = Decoder(enc.sequence_header, synthesis=synthesis)
    for i, ef in enumerate(frames):
        assert same(dec.decode(ef), recons[i][2]), i


@pytest.mark.parametrize("show", [1, 2])
def test_every_tier_prefix_is_bit_identical_over_the_shared_prediction(coded, synthesis, show):
    enc, frames, recons = coded
    dec = Decoder(enc.sequence_header, synthesis=synthesis)
    for i, ef in enumerate(frames):
        assert same(dec.decode(ef, show_tiers=show), recons[i][show - 1]), i


@pytest.mark.parametrize("tiers", [1, 2])
def test_thinned_stream_drift_is_bounded_and_gone_at_each_key_picture(coded, synthesis, tiers):
    enc, frames, recons = coded
    dec = Decoder(enc.sequence_header, synthesis=synthesis)
    for i, ef in enumerate(frames):
        got = dec.decode(ef.thinned(tiers))
        want = recons[i][tiers - 1]
        if ef.keyframe or ef.switch_point:
            assert same(got, want), f"frame {i}: drift not reset at the key picture"
        else:
            assert psnr(want.y, got.y) > DRIFT_BOUND_DB, i
            assert psnr(want.u, got.u) > DRIFT_BOUND_DB, i


def test_thinned_decoders_predict_p_frames_without_obmc(natural_frames, analysis, synthesis):
    """The overlapped blend is part of the full decoder's P-frames and of every decoder's key
    pictures (whose reference, the last key picture's base tier, is the encoder's everywhere); a
    decoder of fewer tiers predicts its P-frames without it, and still shows the encoder's
    picture of its tiers exactly at every key picture."""
    enc = make_encoder(natural_frames, analysis, synthesis, tiers=3, qp=26, switch_interval=4, tuning=Tuning(obmc=1))
    frames, recons = code_with_recons(enc, natural_frames)
    obmc = 16  # the fifth motion-tool bit
    for tiers in (1, 2, 3):
        dec = Decoder(enc.sequence_header, synthesis=synthesis)
        for i, ef in enumerate(frames):
            got = dec.decode(ef.thinned(tiers))
            tools = int(dec.stats()["motion_tools"])
            if ef.keyframe:
                assert tools == 0, i
            elif ef.switch_point or tiers == 3:
                assert tools & obmc, (tiers, i)
            else:
                assert not tools & obmc, (tiers, i)
            if ef.keyframe or ef.switch_point or tiers == 3:
                assert same(got, recons[i][tiers - 1]), (tiers, i)
            else:
                assert psnr(recons[i][tiers - 1].y, got.y) > DRIFT_BOUND_DB, (tiers, i)


def _coded_at_qp20(clip, analysis, synthesis, tiers: int, **tune: int):
    """The encoder, its frames, its pictures of every prefix and its per-frame stats at qp 20."""
    enc = make_encoder(clip, analysis, synthesis, tiers=tiers, qp=20, tuning=Tuning(**tune))
    frames, recons = code_with_recons(enc, clip)
    return enc, frames, recons, list(enc.times.stages)


def test_base_tier_codes_what_its_dead_zone_lets_through_to_the_nearest_level(natural_frames, analysis, synthesis):
    """`round_base`: in a P-frame of a stream of several tiers the base tier's dead zone still
    decides which latents it codes (the first P-frame, whose latents do not depend on it, codes as
    many non-zero levels in tier 0 either way), and the levels it codes are rounded to the nearest
    (so tier 0 changes); keyframes and single-tier streams are untouched, a value not above
    round_lower is the dead zone's own, and the full decoder still shows the encoder's picture."""
    clip = natural_frames[:4]

    def run(tiers: int, **tune: int):
        return _coded_at_qp20(clip, analysis, synthesis, tiers, **tune)

    enc, near, recons, st_near = run(3)
    _, dead, _, st_dead = run(3, round_base=0)
    assert Tuning().round_base == 32
    assert near[0].tiers == dead[0].tiers  # the keyframe
    assert st_near[1]["nz_levels"][0] == st_dead[1]["nz_levels"][0] > 0
    assert near[1].tiers[0] != dead[1].tiers[0]
    assert [ef.tiers for ef in run(3, round_base=Tuning().round_lower)[1]] == [ef.tiers for ef in dead]
    assert [ef.tiers for ef in run(1)[1]] == [ef.tiers for ef in run(1, round_base=0)[1]]
    dec = Decoder(enc.sequence_header, synthesis=synthesis)
    for i, ef in enumerate(near):
        assert same(dec.decode(ef), recons[i][2]), i


def test_keyframe_codes_what_its_dead_zone_lets_through_to_the_nearest_level(natural_frames, analysis, synthesis):
    """`round_key`: a keyframe's dead zone (round_intra) still decides which latents it codes, in
    one tier and in several (as many non-zero levels in tier 0 either way: without intra
    prediction its latents do not depend on the rounding), and the levels it codes are rounded
    to the nearest (the keyframe's bytes change); a value not above round_intra is the dead
    zone's own, and the decoder shows the encoder's pictures."""
    clip = natural_frames[:2]

    def run(tiers: int, **tune: int):
        return _coded_at_qp20(clip, analysis, synthesis, tiers, **tune)

    assert Tuning().round_key == 32
    for tiers in (1, 3):
        enc, near, recons, st_near = run(tiers)
        _, dead, _, st_dead = run(tiers, round_key=0)
        assert near[0].keyframe and st_near[0]["nz_levels"][0] == st_dead[0]["nz_levels"][0] > 0, tiers
        assert near[0].tiers[0] != dead[0].tiers[0], tiers
        same_as_dead = run(tiers, round_key=Tuning().round_intra)[1]
        assert [ef.tiers for ef in same_as_dead] == [ef.tiers for ef in dead], tiers
        dec = Decoder(enc.sequence_header, synthesis=synthesis)
        for i, ef in enumerate(near):
            assert same(dec.decode(ef), recons[i][tiers - 1]), (tiers, i)


def test_quality_rises_with_every_tier_on_natural_video(coded, natural_frames):
    """Every tier adds quality; at keyframes and key pictures the base tier carries (nearly) all of
    it by default (key_tier_ratio 0), so the tiers above add little there."""
    enc, frames, recons = coded
    for i, f in enumerate(natural_frames):
        p = [psnr(f.y, recons[i][k].y) for k in range(3)]
        if frames[i].switch_point:
            assert p[0] <= p[1] <= p[2], (i, p)
        else:
            assert p[0] < p[1] < p[2], (i, p)
        assert p[0] > 30, (i, p)
    sizes = np.sum([[len(c) for c in ef.tiers] for ef in frames], axis=0)
    assert np.all(sizes > 10)


def test_raising_tiers_waits_for_a_key_picture(coded, synthesis):
    enc, frames, recons = coded
    dec = Decoder(enc.sequence_header, synthesis=synthesis)
    used = []
    for i, ef in enumerate(frames):
        dec.decode(ef, 1 if i < 2 else 3)
        used.append(dec.last_tiers)
    # frames 2 and 3 keep 1 tier; frame 4 is a key picture and brings all three
    assert used[:4] == [1, 1, 1, 1] and used[4:] == [3] * (len(frames) - 4)


def test_a_lost_frame_is_recovered_at_the_next_key_picture(coded, synthesis):
    enc, frames, recons = coded
    dec = Decoder(enc.sequence_header, synthesis=synthesis)
    dec.decode(frames[0])
    dec.decode(frames[1])
    with pytest.raises(MissingReferenceError):
        dec.decode(frames[3])  # frame 2 was lost
    got = dec.decode(frames[4])  # key picture: no keyframe needed
    assert same(got, recons[4][2])
    assert same(dec.decode(frames[5]), recons[5][2])


def test_a_lost_key_picture_needs_a_keyframe(coded, synthesis):
    enc, frames, _ = coded
    dec = Decoder(enc.sequence_header, synthesis=synthesis)
    for i in range(4):
        dec.decode(frames[i])
    with pytest.raises(MissingReferenceError, match="key picture"):
        dec.decode(frames[8])  # the key picture at frame 4 was lost


def test_keyframe_on_request_and_gap_detection(natural_frames, analysis, synthesis):
    enc = make_encoder(natural_frames, analysis, synthesis, tiers=2, qp=30, switch_interval=0)
    a = enc.encode(natural_frames[0])
    b = enc.encode(natural_frames[1])
    c = enc.encode(natural_frames[2])
    enc.request_keyframe()
    d = enc.encode(natural_frames[3])
    assert a.keyframe and not b.keyframe and not c.keyframe and d.keyframe
    dec = Decoder(enc.sequence_header, synthesis=synthesis)
    with pytest.raises(MissingReferenceError):
        dec.decode(b)  # no keyframe yet
    dec.decode(a)
    with pytest.raises(MissingReferenceError):
        dec.decode(c)  # b was lost
    assert same(dec.decode(d), enc.reconstruction())


def test_on_request_keyframes_only(natural_frames, analysis, synthesis):
    enc = make_encoder(natural_frames, analysis, synthesis, tiers=1, keyframe_interval=0, switch_interval=0)
    keys = [enc.encode(f).keyframe for f in natural_frames]
    assert keys == [True] + [False] * (len(natural_frames) - 1)
    assert enc.sequence_header.keyframe_interval == 0


def test_key_tier_ratio_spreads_key_pictures_over_the_tiers(natural_frames, analysis, synthesis):
    enc = make_encoder(natural_frames, analysis, synthesis, tiers=3, qp=30, key_tier_ratio=8)
    ef = enc.encode(natural_frames[0])
    assert enc.sequence_header.key_step_log2 == 8
    p = [psnr(natural_frames[0].y, enc.reconstruction(k).y) for k in (1, 2, 3)]
    assert p[0] + 1 < p[1] + 0.5 < p[2], p
    assert len(ef.tiers[2]) > len(ef.tiers[0]) // 4
    dec = Decoder(enc.sequence_header, synthesis=synthesis)
    assert same(dec.decode(ef), enc.reconstruction())


def test_a_key_picture_has_a_fine_base_unless_its_residual_exceeds_key_sad(natural_frames, analysis, synthesis):
    """By default (key_sad_q4 0) a key picture's tier 0 carries it at the top step, so the next key
    picture predicts from a full-quality reference; with a threshold its residual exceeds, its base
    is coarse (the header's flag) and the upper tiers carry the rest. The decoder follows either."""
    gaps = {}
    for tuning, coarse in ((Tuning(), False), (Tuning(key_sad_q4=1), True)):
        enc = make_encoder(natural_frames, analysis, synthesis, tiers=3, qp=30, switch_interval=3, tuning=tuning)
        dec = Decoder(enc.sequence_header, synthesis=synthesis)
        for f in natural_frames[:4]:
            ef = enc.encode(f)
            assert same(dec.decode(ef), enc.reconstruction()), (tuning, ef.index)
        assert ef.switch_point and FrameHeader.from_bytes(ef.tiers[0]).coarse_key == coarse
        gaps[coarse] = psnr(f.y, enc.reconstruction(3).y) - psnr(f.y, enc.reconstruction(1).y)
    assert gaps[False] < 0.5 < 2.0 < gaps[True], gaps


def test_single_tier_and_full_tier_top_quality_match(natural_frames, analysis, synthesis):
    """The top tier of a 3-tier stream reaches the quality of a 1-tier stream at the same qp."""
    one = make_encoder(natural_frames, analysis, synthesis, tiers=1, qp=28)
    three = make_encoder(natural_frames, analysis, synthesis, tiers=3, qp=28)
    p1, p3 = [], []
    for f in natural_frames[:6]:
        one.encode(f)
        three.encode(f)
        p1.append(psnr(f.y, one.reconstruction().y))
        p3.append(psnr(f.y, three.reconstruction().y))
    assert abs(np.mean(p1) - np.mean(p3)) < 1.0


def test_the_bitstream_does_not_depend_on_the_thread_count(natural_frames, analysis, synthesis):
    streams = []
    for threads in (1, 2):
        enc = make_encoder(natural_frames, analysis, synthesis, tiers=3, qp=30, threads=threads, switch_interval=3)
        streams.append([enc.encode(f).tiers for f in natural_frames[:6]])
    assert streams[0] == streams[1]
    dec = Decoder(enc.sequence_header, synthesis=synthesis, threads=2)
    ref = Decoder(enc.sequence_header, synthesis=synthesis, threads=1)
    for tiers in streams[1]:
        assert same(dec.decode(tiers), ref.decode(tiers))


def test_corrupt_upper_tiers_decode_alike_on_one_and_two_threads(natural_frames, analysis, synthesis):
    """With two threads the decoder's upper tiers decode while the prediction runs; a corrupt
    upper tier must still cost the same tiers at the same frames, and the pictures stay equal."""
    enc = make_encoder(natural_frames, analysis, synthesis, tiers=3, qp=30, switch_interval=4)
    rng = np.random.default_rng(5)
    stream = []
    for i, f in enumerate(natural_frames[:8]):
        chunks = list(enc.encode(f).tiers)
        if i in (1, 5, 6):  # P-frames: one in the first key interval, a key picture and the P-frame after it
            k = 1 + i % 2
            bad = bytearray(chunks[k])
            for at in rng.integers(4, len(bad), 12):
                bad[at] ^= 0xFF
            chunks[k] = bytes(bad)
        stream.append(tuple(chunks))
    runs = []
    for threads in (1, 2):
        dec = Decoder(enc.sequence_header, synthesis=synthesis, threads=threads)
        pictures, tiers = [], []
        for chunks in stream:
            pictures.append(dec.decode(chunks))
            tiers.append(dec.last_tiers)
        runs.append((pictures, tiers))
    assert runs[0][1] == runs[1][1]
    assert min(runs[0][1]) < 3, "no corruption reached the decoder"
    assert all(same(a, b) for a, b in zip(runs[0][0], runs[1][0], strict=True))


def test_wrong_model_version_and_bad_frames_are_refused(coded, natural_frames, synthesis):
    enc, frames, _ = coded
    seq = replace(enc.sequence_header, model_hash=b"\1" * 8)
    with pytest.raises(ModelError, match="model"):
        Decoder(seq, synthesis=synthesis)
    raw = bytearray(enc.sequence_header.to_bytes())
    for old in (1, 2, 3, 4, 5, 6):  # versions 2 to 6 have the same framing but another payload or decoding
        raw[4] = old
        with pytest.raises(BitstreamError, match=f"version {old}"):
            SequenceHeader.from_bytes(bytes(raw))
    small = Frame(np.zeros((32, 32), np.uint8), np.zeros((16, 16), np.uint8), np.zeros((16, 16), np.uint8))
    with pytest.raises(InputError, match="32x32"):
        enc.encode(small)
    with pytest.raises(InputError):
        EncoderConfig(64, 64, qp=99)


def test_corrupt_and_truncated_chunks_raise_typed_errors(coded, synthesis):
    enc, frames, recons = coded
    key = frames[0]
    dec = Decoder(enc.sequence_header, synthesis=synthesis)
    with pytest.raises(BitstreamError):
        dec.decode(EncodedFrame(0, 0, True, True, (key.tiers[0][:3],)))
    with pytest.raises(BitstreamError, match="truncated"):
        dec.decode(EncodedFrame(0, 0, True, True, (key.tiers[0][: len(key.tiers[0]) // 3],)))
    with pytest.raises(BitstreamError, match="tier-1"):
        dec.decode(EncodedFrame(0, 0, True, True, (key.tiers[0], b"\x55" + key.tiers[1][1:])))
    # a corrupt enhancement tier leaves the tiers below it decodable
    bad = key.tiers[1][:1] + bytes(len(key.tiers[1]) * 4)
    got = dec.decode(EncodedFrame(0, 0, True, True, (key.tiers[0], bad[: len(key.tiers[1])] + b"\xff" * 40)))
    assert dec.last_tiers in (1, 2)
    assert psnr(recons[0][0].y, got.y) > 25


def test_random_payloads_give_only_typed_errors(coded, synthesis):
    enc, frames, _ = coded
    rng = np.random.default_rng(7)
    for _ in range(60):
        dec = Decoder(enc.sequence_header, synthesis=synthesis)
        for ef in frames[:3]:
            chunks = [bytearray(c) for c in ef.tiers]
            k = int(rng.integers(0, len(chunks)))
            c = chunks[k]
            for _ in range(int(rng.integers(1, 8))):
                c[int(rng.integers(0, len(c)))] = int(rng.integers(0, 256))
            try:
                dec.decode(tuple(bytes(x) for x in chunks))
            except BitstreamError:
                pass


def test_tuning_overrides_are_checked():
    t = Tuning().with_overrides(["skip_sad_q8=24", "search-range=32"])
    assert (t.skip_sad_q8, t.search_range) == (24, 32)
    assert t.as_tuple()[0] == Tuning().round_intra
    for bad in ("nope=1", "skip_sad_q8", "skip_sad_q8=x"):
        with pytest.raises(InputError, match="--tune"):
            Tuning().with_overrides([bad])
    assert Tuning().with_overrides(["split=3", "aq_strength=-12"]).aq_strength == -12
    for bad, message in (
        ("split=5", "split must be 0..4"),
        ("obmc=3", "obmc must be 0..2"),
        ("qpel=2", "qpel must be 0..1"),
        ("search_range=-1", "search_range must be >= 0"),
        ("aq_strength=40", "-32..31"),
        ("subpel=3", "subpel must be 0..2"),
    ):
        with pytest.raises(InputError, match=re.escape(message)):
            Tuning().with_overrides([bad])


def test_keyframes_are_finer_by_key_qp_at_a_fixed_qp(natural_frames, analysis, synthesis):
    """At a fixed qp the keyframe's header carries qp - key_qp, a key picture's qp -
    key_picture_qp and the P-frames qp; a qp the caller gives (rate control) is taken as it is;
    neither offset reaches the core's tuple."""
    assert len(Tuning().as_tuple()) == len(dataclasses.fields(Tuning)) - 2
    assert (Tuning().key_qp, Tuning().key_picture_qp) == (3, 1)
    for key_qp, kp_qp, explicit in ((2, 1, None), (0, 0, None), (3, 2, None), (5, 2, 33)):
        t = Tuning(key_qp=key_qp, key_picture_qp=kp_qp)
        enc = make_encoder(natural_frames, analysis, synthesis, tiers=2, qp=30, switch_interval=2, tuning=t)
        frames = [enc.encode(f, qp=explicit) for f in natural_frames[:4]]
        assert [ef.switch_point for ef in frames] == [True, False, True, False]
        qps = [FrameHeader.from_bytes(ef.tiers[0]).qp for ef in frames]
        want = [30 - key_qp, 30, 30 - kp_qp, 30] if explicit is None else [explicit] * 4
        assert qps == want, (key_qp, kp_qp, qps)
    enc = make_encoder(natural_frames, analysis, synthesis, qp=1, tuning=Tuning(key_qp=4))
    assert FrameHeader.from_bytes(enc.encode(natural_frames[0]).tiers[0]).qp == 0


def test_presets_differ_only_in_encoder_tuning():
    from snisd.codec.presets import PRESETS, tuning_for

    assert tuning_for("realtime") == tuning_for()
    assert (tuning_for().key_sad_q4, tuning_for(live=True).key_sad_q4, tuning_for("medium", live=True).key_sad_q4) == (
        0,
        48,
        48,
    )
    assert (tuning_for().skip_sad_q8, tuning_for(live=True).skip_sad_q8) == (16, 8)
    assert (tuning_for().key_qp, tuning_for().key_picture_qp) == (3, 1)
    assert (tuning_for(live=True).key_qp, tuning_for(live=True).key_picture_qp) == (0, 0)
    assert all(tuning_for(p) != tuning_for() for p in PRESETS if p != "realtime")
    assert tuning_for("medium", ["search_range=7"]).search_range == 7
    with pytest.raises(InputError, match="preset 'slowest'"):
        tuning_for("slowest")


def _encode_all(natural_frames, analysis, synthesis, tuning, frames: int = 6):
    enc = make_encoder(natural_frames, analysis, synthesis, tiers=3, qp=30, switch_interval=4, tuning=tuning)
    out, recons, nz = [], [], []
    for f in natural_frames[:frames]:
        out.append(enc.encode(f))
        recons.append(enc.reconstruction())
        nz.append(enc.times.stages[-1]["nz_levels"])
    return enc, out, recons, nz


@pytest.mark.parametrize(
    "overrides",
    [
        ["mb_rd=4", "rd_lambda_q8=80"],
        ["mb_rd=64", "rd_lambda_q8=200"],
        ["decimate=8", "rd_lambda_q8=200"],
        ["rdoq=1"],
        ["rdoq=2"],
    ],
)
def test_rate_distortion_tools_are_encoder_only(natural_frames, analysis, synthesis, overrides):
    """Each coefficient decision changes the levels (so the stream), never the syntax: the decoder
    still reproduces the encoder's picture bit for bit."""
    _, base, _, base_nz = _encode_all(natural_frames, analysis, synthesis, Tuning())
    enc, out, recons, nz = _encode_all(natural_frames, analysis, synthesis, Tuning().with_overrides(overrides))
    assert [ef.tiers for ef in out] != [ef.tiers for ef in base]
    assert nz != base_nz
    dec = Decoder(enc.sequence_header, synthesis=synthesis)
    for i, ef in enumerate(out):
        assert same(dec.decode(ef), recons[i]), i


def test_split8_partitions_change_the_split_stream(natural_frames, analysis, synthesis):
    """8x8 partitions are chosen somewhere on natural video (their flags and vectors change tier 0
    against 16x16 partitions alone) and decode to the encoder's pictures."""
    _, s16, _, _ = _encode_all(natural_frames, analysis, synthesis, Tuning(split=2))
    enc, s8, recons, _ = _encode_all(natural_frames, analysis, synthesis, Tuning(split=2, split8=2))
    assert sum(a.tiers[0] != b.tiers[0] for a, b in zip(s16[1:], s8[1:], strict=True)) >= (len(s8) - 1) // 2
    dec = Decoder(enc.sequence_header, synthesis=synthesis)
    for i, ef in enumerate(s8):
        assert same(dec.decode(ef), recons[i]), i


def test_nonzero_level_counter(natural_frames, analysis, synthesis):
    """nz_levels counts the levels each tier coded: none past the tier count, and fewer where
    decimation at a huge lambda drops every block of lone +-1 levels."""

    *_, nz = _encode_all(natural_frames, analysis, synthesis, Tuning(), frames=3)
    *_, nz_dec = _encode_all(
        natural_frames, analysis, synthesis, Tuning().with_overrides(["decimate=64", "rd_lambda_q8=100000"]), frames=3
    )
    for a, b in zip(nz, nz_dec, strict=True):
        assert a[0] > 0 and a[3:] == (0,) * 5
        assert sum(b) < sum(a)


def test_motion_bit_counter(natural_frames, analysis, synthesis):
    """motion_bits counts tier 0's macroblock modes and vectors on the range coder: next to
    nothing on a keyframe (grey intra modes), part of tier 0's payload on a P-frame, and more
    when merging is off and every vector is coded."""

    def run(tuning):
        enc = make_encoder(natural_frames, analysis, synthesis, tiers=3, qp=34, switch_interval=0, tuning=tuning)
        rows = []
        for f in natural_frames[:4]:
            ef = enc.encode(f)
            payload = tier_payload(ef.tiers[0], 0, FrameHeader.from_bytes(ef.tiers[0]).frame_no)
            rows.append((enc.times.stages[-1]["motion_bits"], 8 * len(payload)))
        return rows

    merged, coded = run(Tuning()), run(Tuning(merge=0, split=0))
    mbs = -(-natural_frames[0].width // 32) * -(-natural_frames[0].height // 32)
    assert merged[0][0] < 0.1 * mbs
    for motion, payload in merged[1:] + coded[1:]:
        assert 0 < motion < payload
    assert sum(m for m, _ in coded[1:]) > sum(m for m, _ in merged[1:])


@pytest.mark.parametrize("strength", [12, -12])
def test_adaptive_quantisation_keeps_every_tier_prefix_bit_identical(natural_frames, analysis, synthesis, strength):
    """Per-macroblock qp offsets (derived from the prediction by both ends) change the P-frames'
    coding, and every tier prefix still decodes to the encoder's picture of those tiers."""

    streams = {}
    for s in (0, strength):
        enc = make_encoder(
            natural_frames,
            analysis,
            synthesis,
            tiers=3,
            qp=30,
            switch_interval=4,
            tuning=Tuning(aq_strength=s, aq_still=0),
        )
        dec = [Decoder(enc.sequence_header, synthesis=synthesis) for _ in range(3)]
        out = []
        for f in natural_frames:
            ef = enc.encode(f)
            out.append(ef.tiers)
            for k in (1, 2, 3):
                assert same(dec[k - 1].decode(ef, show_tiers=k), enc.reconstruction(k)), (s, k)
        streams[s] = out
    assert streams[0][0] == streams[strength][0]  # a keyframe's grey prediction gives no offsets
    assert sum(a != b for a, b in zip(streams[0][1:], streams[strength][1:], strict=True)) >= len(natural_frames) - 2


def test_aq_still_keeps_adaptive_quantisation_to_a_still_camera(natural_frames, analysis, synthesis):
    """`aq_still`: the strength applies only to frames whose macroblocks are mostly inter with zero
    vectors. The street clip (moving camera) codes as without adaptive quantisation, byte for
    byte; a still camera (one picture plus sensor noise) codes as with it everywhere."""
    rng = np.random.default_rng(7)
    f0 = natural_frames[0]
    still = [f0] + [
        Frame(np.clip(f0.y.astype(np.int16) + rng.integers(-2, 3, f0.y.shape), 0, 255).astype(np.uint8), f0.u, f0.v)
        for _ in range(4)
    ]
    gated = Tuning(aq_strength=12, aq_still=48)
    off, everywhere = Tuning(aq_strength=0), Tuning(aq_strength=12, aq_still=0)
    for frames, same_as in ((natural_frames[:5], off), (still, everywhere)):
        _, out, _, _ = _encode_all(frames, analysis, synthesis, gated, frames=5)
        _, ref, _, _ = _encode_all(frames, analysis, synthesis, same_as, frames=5)
        assert [ef.tiers for ef in out] == [ef.tiers for ef in ref]
    _, plain, _, _ = _encode_all(still, analysis, synthesis, off, frames=5)
    assert all(a.tiers != b.tiers for a, b in zip(out[1:], plain[1:], strict=True))
    enc = make_encoder(still, analysis, synthesis, tiers=3, qp=30, switch_interval=4, tuning=gated)
    dec = Decoder(enc.sequence_header, synthesis=synthesis)
    for f in still:
        assert same(dec.decode(enc.encode(f)), enc.reconstruction())


def _shifted(f0: Frame, dy: int, dx: int) -> Frame:
    """f0 moved by (dy, dx) pixels (luma; chroma by half), wrapping around."""
    return Frame(
        np.roll(f0.y, (dy, dx), axis=(0, 1)),
        np.roll(f0.u, (dy // 2, dx // 2), axis=(0, 1)),
        np.roll(f0.v, (dy // 2, dx // 2), axis=(0, 1)),
    )


def test_still_camera_tools_follow_the_camera(natural_frames, analysis, synthesis):
    """`realtime`'s blend (obmc 2) and split search (split 4) depend on the camera: a panning
    camera codes byte for byte as with neither (obmc 0, split 3); a still camera with a moving
    part (a window onto the street clip) blends every P-frame after the first still one, searches
    its splits as `split=1` does (not as `split=3`) and, inside a split that won, 8x8 partitions
    (split8 4 as 3), and every tier prefix decodes to the encoder's picture."""
    rng = np.random.default_rng(11)
    f0 = natural_frames[0]
    pan = [_shifted(f0, 0, 4 * i) for i in range(6)]
    still = []
    for f in natural_frames[:6]:
        y = np.clip(f0.y.astype(np.int16) + rng.integers(-2, 3, f0.y.shape), 0, 255).astype(np.uint8)
        y[80:208, 64:320] = f.y[80:208, 64:320]
        still.append(Frame(y, f0.u, f0.v))
    gated = Tuning()
    assert (gated.obmc, gated.split, gated.split8) == (2, 4, 4)
    _, out, _, _ = _encode_all(pan, analysis, synthesis, gated)
    _, ref, _, _ = _encode_all(pan, analysis, synthesis, Tuning(obmc=0, split=3, split8=0))
    assert [ef.tiers for ef in out] == [ef.tiers for ef in ref]
    enc = make_encoder(still, analysis, synthesis, tiers=3, qp=30, switch_interval=8, tuning=gated)
    decs = [Decoder(enc.sequence_header, synthesis=synthesis) for _ in range(3)]
    blended = []
    for f in still:
        ef = enc.encode(f)
        blended.append(bool(int(enc.times.stages[-1]["motion_tools"]) & 16))
        for k in (1, 2, 3):
            assert same(decs[k - 1].decode(ef, show_tiers=k), enc.reconstruction(k)), k
    assert blended == [False, False, True, True, True, True]
    streams = {}
    for split in (1, 3, 4):
        _, coded, _, _ = _encode_all(still, analysis, synthesis, Tuning(obmc=0, split=split, split8=0))
        streams[split] = [ef.tiers for ef in coded]
    assert streams[4] == streams[1] != streams[3]
    # the 8x8 partitions inside a split that won, once the camera is still (split8 4 as 3)
    enc, coded, _, _ = _encode_all(still, analysis, synthesis, Tuning(obmc=0))
    tools = [int(st["motion_tools"]) for st in enc.times.stages]
    assert [ef.tiers for ef in coded][:2] == streams[4][:2] != [ef.tiers for ef in coded]
    assert not tools[1] & 8 and any(t & 8 for t in tools[2:]), tools


@pytest.mark.parametrize(
    "overrides",
    [
        ["merge=0"],
        ["qpel=1"],
        ["split=0"],
        ["split=2"],
        ["qpel=1", "split=2", "merge=0"],
        ["split=2", "split8=2"],
        ["split=1", "split8=1", "qpel=1"],
        ["subpel=0"],
        ["subpel=2"],
        ["subpel=0", "qpel=1"],
        ["obmc=1"],
        ["obmc=1", "split=2", "split8=2", "qpel=1"],
    ],
)
def test_motion_tools_round_trip(natural_frames, analysis, synthesis, overrides):
    """Each motion tool combination (the frame announces which tools it uses, and the syntax of
    the others is absent) decodes to the encoder's picture bit for bit, and changes the stream."""
    _, base, _, _ = _encode_all(natural_frames, analysis, synthesis, Tuning())
    enc, out, recons, _ = _encode_all(natural_frames, analysis, synthesis, Tuning().with_overrides(overrides))
    assert [ef.tiers[0] for ef in out[1:]] != [ef.tiers[0] for ef in base[1:]]
    dec = Decoder(enc.sequence_header, synthesis=synthesis)
    for i, ef in enumerate(out):
        assert same(dec.decode(ef), recons[i]), i


def test_contexts_start_from_the_trained_initial_probabilities(natural_frames, analysis, synthesis):
    """Every tier starts from its table of native/context_init.h (not one half everywhere), in the
    documented form v * 128 + 64, the tables differ between tiers, and coding moves them."""
    enc = make_encoder(natural_frames, analysis, synthesis, tiers=3, qp=30)
    start = [np.frombuffer(enc._core.contexts(k), dtype=np.uint16).copy() for k in range(3)]
    for s in start:
        assert np.all((s.astype(np.int64) - 64) % 128 == 0)
        assert np.count_nonzero(s != 128 * 128 + 64) > 300
    assert not np.array_equal(start[0], start[1])
    enc.encode(natural_frames[0])
    assert not np.array_equal(np.frombuffer(enc._core.contexts(0), dtype=np.uint16), start[0])
    with pytest.raises(ValueError, match="tier 3"):
        enc._core.contexts(3)
