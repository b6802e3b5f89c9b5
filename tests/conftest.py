"""Shared fixtures: natural test frames shipped in tests/data, and a session-wide codec model."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def natural_frames():
    """12 frames of real street video (tests/data/SOURCES.md), 640x272 I420."""
    from snisd.capture.file import iter_frames

    return list(iter_frames(DATA / "bikes_12f.mp4"))


@pytest.fixture(scope="session")
def analysis():
    from snisd.codec.analysis import AnalysisTransform

    return AnalysisTransform()


@pytest.fixture(scope="session")
def synthesis():
    from snisd.codec.synthesis import SynthesisTransform

    return SynthesisTransform.load()
