"""Intra prediction (docs/CODEC.md): keyframes coded in bands, intra macroblocks of P-frames,
the mode syntax and its errors."""

from __future__ import annotations

import numpy as np
import pytest

from snisd.codec import _native
from snisd.codec.bitstream import FRAME_I, EncodedFrame, FrameHeader
from snisd.codec.decoder import Decoder
from snisd.codec.encoder import Encoder, EncoderConfig, Tuning
from snisd.errors import BitstreamError
from snisd.frame import Frame

CTX_IMODE = 3  # native/entropy.c: the mode's "most probable" flag, then its 3-bit tree


def same(a: Frame, b: Frame) -> bool:
    return np.array_equal(a.y, b.y) and np.array_equal(a.u, b.u) and np.array_equal(a.v, b.v)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return 10 * np.log10(255.0**2 / max(mse, 1e-9))


def encoder(frames, analysis, synthesis, intra_pred: int = 1, **kw) -> Encoder:
    f = frames[0]
    cfg = EncoderConfig(f.width, f.height, 25, 1, tuning=Tuning(intra_pred=intra_pred), **kw)
    return Encoder(cfg, analysis=analysis, synthesis=synthesis)


def scene_cut(frames: list[Frame]) -> list[Frame]:
    """The frames, then the same frames upside down: P-frames after the cut go intra."""
    flipped = [Frame(f.y[::-1].copy(), f.u[::-1].copy(), f.v[::-1].copy(), f.pts_us) for f in frames]
    return frames[:3] + flipped[3:6]


@pytest.fixture(scope="module")
def coded(natural_frames, analysis, synthesis):
    """A keyframe and a scene cut coded with 3 tiers, with the encoder's picture of every prefix."""
    enc = encoder(natural_frames, analysis, synthesis, tiers=3, qp=30, switch_interval=4)
    out, recons, intra = [], [], []
    for f in scene_cut(natural_frames):
        out.append(enc.encode(f))
        recons.append([enc.reconstruction(k) for k in (1, 2, 3)])
        intra.append(enc.times.stages[-1]["intra_mbs"])
    return enc, out, recons, intra


def test_keyframe_and_intra_macroblocks_decode_bit_identically(coded, synthesis):
    enc, frames, recons, intra = coded
    assert max(intra[3:]) > 0  # the cut made P-frames with intra macroblocks
    for show in (1, 2, 3):
        dec = Decoder(enc.sequence_header, synthesis=synthesis)
        for i, ef in enumerate(frames):
            assert same(dec.decode(ef, show_tiers=show), recons[i][show - 1]), (i, show)


def test_base_tier_decoder_matches_the_encoder_at_the_keyframe(coded, synthesis):
    """A keyframe predicts from its tier-0 picture (the band-sequential synthesis), which a
    decoder of tier 0 alone computes from fewer tiers: the same picture as the whole-frame
    synthesis of tier 0 over the saved prediction (show_tiers=1 of a full decode)."""
    enc, frames, recons, _ = coded
    base = Decoder(enc.sequence_header, synthesis=synthesis).decode(frames[0], tiers=1)
    assert same(base, recons[0][0])


def test_intra_prediction_changes_keyframes_and_can_be_turned_off(natural_frames, analysis, synthesis):
    sizes, quality = {}, {}
    for on in (0, 1):
        enc = encoder(natural_frames, analysis, synthesis, on, tiers=1, qp=30)
        ef = enc.encode(natural_frames[0])
        rec = enc.reconstruction()
        assert same(Decoder(enc.sequence_header, synthesis=synthesis).decode(ef), rec)
        sizes[on] = ef.tiers
        quality[on] = psnr(rec.y, natural_frames[0].y)
    assert sizes[0] != sizes[1]
    assert abs(quality[0] - quality[1]) < 1.5  # a different prediction, not a broken picture


def mode_payload(bits: list[tuple[int, int]], init: bytes) -> bytes:
    """A keyframe's tier-0 payload: the adaptive-quantisation flag (a bypass 0: off), then these
    (context, bit) decisions, the contexts starting where a decoder's tier 0 starts (init: the
    first 64 of them)."""
    kinds = bytes([1] + [0] * len(bits))
    ctxs = bytes([0] + [c for c, _ in bits])
    vals = np.array([0] + [b for _, b in bits], "<i4").tobytes()
    return _native.rc_code(False, kinds, ctxs, vals, b"", init)


def test_a_corrupt_intra_mode_is_a_typed_error(coded, natural_frames, analysis, synthesis):
    enc, frames, _, _ = coded
    header = FrameHeader(FRAME_I, True, 0, 30, 1).to_bytes()
    init = encoder(natural_frames, analysis, synthesis, tiers=1, qp=30)._core.contexts(0)[:128]  # a fresh tier 0
    # macroblock 0: not the most probable mode (DC), then the tree bits 1, 1, 1: mode 7
    bad = mode_payload([(CTX_IMODE, 0), (CTX_IMODE + 2, 1), (CTX_IMODE + 4, 1), (CTX_IMODE + 8, 1)], init)
    dec = Decoder(enc.sequence_header, synthesis=synthesis)
    with pytest.raises(BitstreamError, match="corrupt"):
        dec.decode(EncodedFrame(0, 0, True, True, (header + bad,)))
    # mode 6 is valid: that payload fails later, when it runs out of bytes, not at the mode
    ok = mode_payload([(CTX_IMODE, 0), (CTX_IMODE + 2, 1), (CTX_IMODE + 4, 1), (CTX_IMODE + 8, 0)], init)
    with pytest.raises(BitstreamError, match="truncated"):
        dec.decode(EncodedFrame(0, 0, True, True, (header + ok,)))
    # the decoder is usable after the errors
    assert same(dec.decode(frames[0]), Decoder(enc.sequence_header, synthesis=synthesis).decode(frames[0]))


def test_an_abandoned_keyframe_leaves_the_encoder_usable(natural_frames, analysis, synthesis):
    """A keyframe in bands that stops half-way (an analysis error) must not leak into the next frame."""
    enc = encoder(natural_frames, analysis, synthesis, tiers=2, qp=30)
    ref = encoder(natural_frames, analysis, synthesis, tiers=2, qp=30)
    ystrip, uvstrip = enc.analysis.input_buffers(_native.ALIGN, enc.wp)
    f = natural_frames[0]
    enc._core.intra_begin(f.y, f.u, f.v, 30)
    with pytest.raises(ValueError, match="wrong shape"):  # a strip of the wrong height
        enc._core.intra_band(0, None, (), (), ystrip[1:], uvstrip)
    enc._core.intra_band(0, None, (), (), ystrip, uvstrip)
    enc.analysis(ystrip, uvstrip)
    with pytest.raises(_native.NativeError):
        enc._core.intra_band(2, None, (), (), ystrip, uvstrip)  # out of order
    for g in natural_frames[:3]:
        assert enc.encode(g).tiers == ref.encode(g).tiers


def test_the_last_tuning_fields_are_the_ones_the_core_reads_last():
    """The binding reads the tuple in declaration order: intra_pred, split8, subpel, obmc, then
    round_base, round_key, key_intra_bias and aq_still close it."""
    t = Tuning().with_overrides(
        [
            "intra_pred=1",
            "split8=2",
            "subpel=0",
            "obmc=1",
            "round_base=20",
            "round_key=40",
            "key_intra_bias=50",
            "aq_still=33",
        ]
    )
    assert t.as_tuple()[-8:] == (1, 2, 0, 1, 20, 40, 50, 33)
    d = Tuning()
    assert d.as_tuple()[-8:] == (2, 4, 1, 2, 32, 32, d.key_intra_bias, d.aq_still)


def test_intra_prediction_in_key_pictures_only(natural_frames, analysis, synthesis):
    """`intra_pred=2` (the default): the keyframe and the P-frames are those of `intra_pred=0`
    byte for byte; a key picture after a scene cut, whose key reference no longer matches, codes
    its intra macroblocks with intra modes (other bytes) and decodes bit-identically."""
    streams = {}
    for mode in (0, 2):
        enc = encoder(natural_frames, analysis, synthesis, mode, tiers=3, qp=30, switch_interval=4)
        out = []
        for f in scene_cut(natural_frames):
            ef = enc.encode(f)
            out.append((ef, enc.reconstruction(), enc.times.stages[-1]["intra_mbs"]))
        streams[mode] = (enc, out)
    assert Tuning().intra_pred == 2
    k = next(i for i, (ef, _, _) in enumerate(streams[2][1]) if ef.switch_point and not ef.keyframe)
    assert streams[2][1][k][2] > 0  # the key picture after the cut has intra macroblocks
    for i in range(k):
        assert streams[0][1][i][0].tiers == streams[2][1][i][0].tiers, i
    assert streams[0][1][k][0].tiers != streams[2][1][k][0].tiers
    enc, out = streams[2]
    dec = Decoder(enc.sequence_header, synthesis=synthesis)
    for i, (ef, rec, _) in enumerate(out):
        assert same(dec.decode(ef), rec), i


def test_key_pictures_have_their_own_intra_bias(natural_frames, analysis, synthesis):
    """`key_intra_bias` decides intra against inter in key pictures only: with 0 the key picture
    after the scene cut has more intra macroblocks, every other frame is the same bytes, and the
    stream decodes bit-identically."""
    runs = {}
    for bias in (Tuning().intra_bias * 4, 0):
        f = natural_frames[0]
        cfg = EncoderConfig(
            f.width, f.height, 25, 1, tiers=2, qp=30, switch_interval=4, tuning=Tuning(key_intra_bias=bias)
        )
        enc = Encoder(cfg, analysis=analysis, synthesis=synthesis)
        out = [
            (enc.encode(f), enc.times.stages[-1]["intra_mbs"], enc.reconstruction()) for f in scene_cut(natural_frames)
        ]
        runs[bias] = (enc, out)
    (_, high), (enc, low) = runs.values()
    k = next(i for i, (ef, _, _) in enumerate(low) if ef.switch_point and not ef.keyframe)
    assert low[k][1] > high[k][1]
    assert all(low[i][0].tiers == high[i][0].tiers for i in range(k))
    dec = Decoder(enc.sequence_header, synthesis=synthesis)
    assert all(same(dec.decode(ef), rec) for ef, _, rec in low)
