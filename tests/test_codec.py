"""SNIS-896 encode/decode: bit-exact closed loop, progressive tiers, switch points, keyframes."""

from __future__ import annotations

import numpy as np
import pytest

from snisd.codec.bitstream import EncodedFrame
from snisd.codec.decoder import Decoder, ReferenceError
from snisd.codec.encoder import Encoder, EncoderConfig
from snisd.errors import BitstreamError, InputError, ModelError
from snisd.frame import Frame


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return 10 * np.log10(255.0 ** 2 / max(mse, 1e-9))


def make_encoder(frames, analysis, synthesis, **kw) -> Encoder:
    f = frames[0]
    cfg = EncoderConfig(f.width, f.height, 25, 1, **kw)
    return Encoder(cfg, analysis=analysis, synthesis=synthesis)


@pytest.fixture(scope="module")
def coded(natural_frames, analysis, synthesis):
    """The 12 natural frames coded with 3 tiers, a switch point every 4 frames, plus the
    encoder's own reconstructions for every tier count."""
    enc = make_encoder(natural_frames, analysis, synthesis, tiers=3, qp=26, switch_interval=4)
    out, recons = [], []
    for f in natural_frames:
        out.append(enc.encode(f))
        recons.append([enc.reconstruction(k) for k in (1, 2, 3)])
    return enc, out, recons


def same(a: Frame, b: Frame) -> bool:
    return np.array_equal(a.y, b.y) and np.array_equal(a.u, b.u) and np.array_equal(a.v, b.v)


@pytest.mark.parametrize("tiers", [1, 2, 3])
def test_decoder_is_bit_identical_to_encoder_reconstruction(coded, synthesis, tiers):
    enc, frames, recons = coded
    dec = Decoder(enc.sequence_header, synthesis=synthesis)
    for i, ef in enumerate(frames):
        assert same(dec.decode(ef, tiers), recons[i][tiers - 1]), f"frame {i}, {tiers} tiers"


def test_quality_rises_with_every_tier_on_natural_video(coded, natural_frames):
    enc, frames, recons = coded
    for i, f in enumerate(natural_frames):
        p = [psnr(f.y, recons[i][k].y) for k in range(3)]
        assert p[0] < p[1] < p[2], (i, p)
        assert p[0] > 25, (i, p)
    sizes = np.sum([[len(c) for c in ef.tiers] for ef in frames], axis=0)
    assert np.all(sizes > 0)


def test_thinned_stream_decodes_without_drift(coded, synthesis):
    """Frames carrying only tier 0 (tiers dropped in transit) decode to the tier-0 reconstruction."""
    enc, frames, recons = coded
    dec = Decoder(enc.sequence_header, synthesis=synthesis)
    for i, ef in enumerate(frames):
        got = dec.decode(ef.thinned(1) if i % 2 else ef)
        want = recons[i][0] if i % 2 or dec.last_tiers == 1 else recons[i][2]
        assert dec.last_tiers in (1, 3)
        assert same(got, recons[i][dec.last_tiers - 1]), i


def test_raising_tiers_waits_for_a_switch_point(coded, synthesis):
    enc, frames, recons = coded
    dec = Decoder(enc.sequence_header, synthesis=synthesis)
    used = []
    for i, ef in enumerate(frames):
        tiers = 1 if i < 2 else 3
        got = dec.decode(ef, tiers)
        used.append(dec.last_tiers)
        assert same(got, recons[i][dec.last_tiers - 1]), i
    # frames 2 and 3 keep 1 tier; frame 4 is a switch point and brings all three
    assert used[:4] == [1, 1, 1, 1] and used[4:] == [3] * (len(frames) - 4)


def test_keyframe_on_request_and_gap_detection(natural_frames, analysis, synthesis):
    enc = make_encoder(natural_frames, analysis, synthesis, tiers=2, qp=30)
    a = enc.encode(natural_frames[0])
    b = enc.encode(natural_frames[1])
    c = enc.encode(natural_frames[2])
    enc.request_keyframe()
    d = enc.encode(natural_frames[3])
    assert a.keyframe and not b.keyframe and not c.keyframe and d.keyframe
    dec = Decoder(enc.sequence_header, synthesis=synthesis)
    with pytest.raises(ReferenceError):
        dec.decode(b)  # no keyframe yet
    dec.decode(a)
    with pytest.raises(ReferenceError, match="gap"):
        dec.decode(c)  # b was lost
    assert same(dec.decode(d), enc.reconstruction())


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


def test_wrong_model_and_bad_frames_are_refused(coded, natural_frames, analysis, synthesis):
    enc, frames, _ = coded
    from dataclasses import replace

    seq = replace(enc.sequence_header, model_hash=b"\1" * 8)
    with pytest.raises(ModelError, match="model"):
        Decoder(seq, synthesis=synthesis)
    small = Frame(np.zeros((32, 32), np.uint8), np.zeros((16, 16), np.uint8), np.zeros((16, 16), np.uint8))
    with pytest.raises(InputError, match="32x32"):
        enc.encode(small)
    with pytest.raises(InputError):
        EncoderConfig(64, 64, qp=99)


def test_corrupt_and_truncated_chunks_raise_typed_errors(coded, synthesis):
    enc, frames, _ = coded
    key = frames[0]
    dec = Decoder(enc.sequence_header, synthesis=synthesis)
    with pytest.raises(BitstreamError):
        dec.decode(EncodedFrame(0, 0, True, True, (key.tiers[0][:3],)))
    with pytest.raises(BitstreamError):
        dec.decode(EncodedFrame(0, 0, True, True, (key.tiers[0][: len(key.tiers[0]) // 3],)))
    with pytest.raises(BitstreamError, match="tier-1"):
        dec.decode(EncodedFrame(0, 0, True, True, (key.tiers[0], b"\x55" + key.tiers[1][1:])))
