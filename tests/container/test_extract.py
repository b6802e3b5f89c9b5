"""Tier extraction: keeping tiers < k drops tracks and trafs and copies the payloads unchanged."""

from __future__ import annotations

import pytest
from fmp4_samples import SEQ

from snisd.container import extract_tiers, open_fmp4


@pytest.mark.parametrize("k", [1, 2, 3, 8])
def test_extract_tiers(recording, tmp_path, k) -> None:
    path, frames, _ = recording
    out = tmp_path / f"k{k}.mp4"
    assert extract_tiers(path, out, k) == len(frames)
    r = open_fmp4(out)
    assert r.sequence_header == SEQ and r.tiers == min(k, 3)
    assert list(r) == [f.thinned(k) for f in frames]
    if k >= 3:
        assert out.read_bytes() == path.read_bytes()


def test_extract_from_truncated_source(recording, tmp_path) -> None:
    path, frames, ends = recording
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[: ends[7] + 100])
    out = tmp_path / "thin.mp4"
    assert extract_tiers(cut, out, 2) == 7
    assert list(open_fmp4(out)) == [f.thinned(2) for f in frames[:7]]
