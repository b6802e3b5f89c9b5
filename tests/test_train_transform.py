"""The training's lapped-transform parametrisation (tools/train_transform.py) and the shipped pair.

The trainer learns the pre-filters V of a time-domain lapped transform; these tests check that
its expansion into the contract's 896 + 896 arrays reconstructs exactly for any V (frame edges
included), that V = I is the DCT ablation, and that the quantiser simulation and bit features
behave as the core's quantiser does.  numpy only (TensorFlow is not needed for these parts).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from snisd.codec import reference as ref
from snisd.codec import weights as wts

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import train_transform as tt  # noqa: E402


def _frame(rng, h=64, w=96):
    y = rng.integers(-128, 128, (h, w)).astype(np.float32)
    u = rng.integers(-128, 128, (h // 2, w // 2)).astype(np.float32)
    v = rng.integers(-128, 128, (h // 2, w // 2)).astype(np.float32)
    return y, u, v


def test_identity_prefilters_are_the_dct_ablation():
    a, s = tt.expand_numpy(tt.free_init())
    d = ref.dct_weights()
    for k in wts.WEIGHT_NAMES:
        assert a[k].shape == wts.WEIGHT_SHAPES[k]
        np.testing.assert_allclose(a[k], d[k], atol=1e-7)
        np.testing.assert_allclose(s[k], d[k], atol=1e-7)


@pytest.mark.parametrize("seed", [1, 2])
def test_any_prefilter_reconstructs_exactly(seed):
    rng = np.random.default_rng(seed)
    free = {k: v + 0.2 * rng.standard_normal(v.shape).astype(np.float32) for k, v in tt.free_init().items()}
    a, s = tt.expand_numpy(free)
    # unit-norm analysis filters (latents in pixel units)
    for k in ("luma_row", "chroma_row"):
        np.testing.assert_allclose(np.linalg.norm(a[k], axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.sqrt((a["luma_coarse"] ** 2).sum((1, 2))), 1.0, atol=1e-5)
    y, u, v = _frame(rng)
    rec = ref.synthesize_reference(ref.analyze_reference(y, u, v, a), s)
    for r, x in zip(rec, (y, u, v), strict=True):
        assert np.abs(r - x).max() < 1e-3  # edges included: reflection + folding stay exact
    # not trivially so: the learned filters differ from the DCT's
    assert np.abs(a["luma_row"] - ref.dct_weights()["luma_row"]).max() > 0.01
    # a mismatched synthesis does not reconstruct (the check can fail)
    rec = ref.synthesize_reference(ref.analyze_reference(y, u, v, a), ref.dct_weights())
    assert np.abs(rec[0] - y).max() > 1.0


def test_core_steps_and_tier_plan():
    # native/quant.c: 10 * 2^(qp/6) in 1/16 pixel; frequency weights 1 + (u+v)/(2(n-1))
    assert tt.step_px(24) == pytest.approx(10.0)
    w = tt.channel_weights(8)
    assert w[0] == pytest.approx(1 + 1 / 14) and w[-1] == pytest.approx(2.0)
    mult, rnd = tt.tier_plan(1, 30)
    assert mult == [4.0, 2.0, 1.0] and rnd == [tt.ROUND_INTER] * 3
    assert tt.tier_plan(0, 30) == ([1.0], [tt.ROUND_INTRA])


def test_nnls_recovers_non_negative_weights():
    rng = np.random.default_rng(4)
    a = rng.random((200, 5))
    x = np.array([1.0, 0.0, 3.0, 0.5, 0.0])
    got = tt.nnls(a, a @ x)
    assert np.all(got >= 0)
    np.testing.assert_allclose(got, x, atol=1e-3)


def test_scan_tables_follow_the_core():
    # native/entropy.c make_scan: diagonals u+v, alternating direction, channel u*n+v-1
    for n in (8, 4):
        pos, band, nba, nbb = tt.scan_tables(n)
        c = n * n - 1
        assert sorted(pos.tolist()) == list(range(c))
        for ch in range(c):
            for nb in (nba[ch], nbb[ch]):
                assert nb == c or pos[nb] < pos[ch]  # the template is coded before the latent
        assert np.all(np.diff(band[np.argsort(pos)]) >= 0)
    pos, band, nba, nbb = tt.scan_tables(8)
    assert pos[7] == 0 and pos[0] == 1  # (u, v) = (1, 0) first, then (0, 1)
    assert nba[7] == 63 and nbb[7] == 63  # both neighbours are the DC: no template
    assert nba[8] == 0 and nbb[8] == 7  # (1, 1): (0, 1) and (1, 0)
    order = np.argsort(pos)
    assert band[order[0]] == 0 and band[order[2]] == 2 and band[order[5]] == 3 and band[order[62]] == 9


def test_context_costs_are_never_free():
    counts = np.zeros((2, 3, 2))
    counts[0, 0] = [0, 0]  # never seen
    counts[0, 1] = [1000, 1000]  # always significant
    counts[0, 2] = [0, 1000]  # never significant
    counts[1] = [[10, 100], [50, 100], [90, 100]]
    c1, c0 = tt.ctx_costs(counts)
    assert np.all(np.isfinite(c1)) and np.all(np.isfinite(c0))
    assert np.all(c1 > 0) and np.all(c0 > 0)
    assert c1[0, 0] == pytest.approx(1.0) and c0[0, 0] == pytest.approx(1.0)
    assert c1[0, 2] > 10 and c0[0, 2] < 0.01
    np.testing.assert_allclose(c1[1], -np.log2((np.array([10, 50, 90]) + 0.5) / 101), rtol=1e-5)
