"""The synthetic camera: deterministic, natural-looking, smooth, fast, paced with counted drops,
and a typed error for a size it cannot render."""

from __future__ import annotations

import time
from itertools import pairwise

import numpy as np
import pytest

from snisd.capture.synthetic import SyntheticScene, SyntheticSource
from snisd.errors import InputError


def test_synthetic_is_deterministic_and_moves():
    a, b = SyntheticScene(320, 240, seed=3), SyntheticScene(320, 240, seed=3)
    for n in (0, 1, 77):
        fa, fb = a.render(n), b.render(n)
        assert np.array_equal(fa.y, fb.y) and np.array_equal(fa.u, fb.u) and np.array_equal(fa.v, fb.v)
    other = SyntheticScene(320, 240, seed=4).render(0)
    assert not np.array_equal(other.y, a.render(0).y)
    f0, f1, f30 = a.render(0), a.render(1), a.render(30)
    assert np.mean(np.abs(f1.y.astype(int) - f0.y)) > 0.5  # noise and motion between frames
    assert np.mean(np.abs(f30.y.astype(int) - f0.y)) > 5  # the scene has moved a lot after a second
    assert f1.pts_us == 33333


def test_synthetic_looks_natural():
    f = SyntheticScene(640, 360).render(10)
    y = f.y.astype(np.float64)
    assert 90 < y.mean() < 160 and 12 < y.std() < 60  # mid-grey, good contrast, nothing clipped
    assert f.y.min() >= 1 and f.y.max() <= 254
    # texture at every scale: neighbouring pixels correlate strongly but not perfectly
    dx = np.abs(np.diff(y, axis=1)).mean()
    assert 1.0 < dx < 15.0
    assert f.u.std() > 2 and f.v.std() > 2  # there is colour


def test_synthetic_pans_smoothly():
    s = SyntheticScene(320, 240)
    offsets = [s.pan(n) for n in range(60)]
    steps = [abs(b[1] - a[1]) for a, b in pairwise(offsets)]
    assert max(steps) <= 8  # slow pan: a few pixels per frame at most (wrap aside)


def test_synthetic_is_fast_enough_for_1080p30():
    s = SyntheticScene(1920, 1080)
    s.render(0)
    t = time.perf_counter()
    for n in range(1, 31):
        s.render(n)
    per_frame = (time.perf_counter() - t) / 30
    assert per_frame < 1 / 30 / 2, f"{per_frame * 1e3:.1f} ms per 1080p frame"


def test_synthetic_source_paces_and_counts_drops():
    src = SyntheticSource(64, 48, fps=50)
    with src:
        t = time.monotonic()
        pts = [src.read().pts_us for _ in range(10)]
        elapsed = time.monotonic() - t
        assert 0.15 <= elapsed < 0.6  # 9 periods of 20 ms
        assert pts == sorted(pts)
        time.sleep(0.2)  # a late reader: ten frame periods missed
        src.read()
        assert src.dropped >= 8


def test_synthetic_size_errors_are_input_errors():
    for w, h in ((15, 16), (16, 14), (8, 8)):
        with pytest.raises(InputError, match="even and at least 16x16"):
            SyntheticScene(w, h)
        with pytest.raises(InputError):
            SyntheticSource(w, h).open()
