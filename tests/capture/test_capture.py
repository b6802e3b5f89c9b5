"""Camera specs (snisd.capture): parsing, the Pi-camera-or-V4L2 choice, opening a source."""

from __future__ import annotations

import pytest

from snisd.capture import make_source, open_source, parse_spec
from snisd.capture.synthetic import SyntheticSource
from snisd.capture.v4l2 import V4l2Source
from snisd.errors import InputError


def test_parse_spec():
    assert parse_spec("0") == ("auto", "0")
    assert parse_spec("/dev/video2") == ("v4l2", "/dev/video2")
    assert parse_spec("v4l2:1") == ("v4l2", "1")
    assert parse_spec("picamera") == ("picamera", "0")
    assert parse_spec("file:a b.mp4") == ("file", "a b.mp4")
    assert parse_spec("synthetic") == ("synthetic", "")
    assert parse_spec("synthetic:7") == ("synthetic", "7")
    for bad in ("", "rtsp://x", "file:", "synthetic:x"):
        with pytest.raises(InputError):
            parse_spec(bad)


def test_number_falls_back_to_v4l2_without_picamera2():
    from snisd.capture import picamera

    if picamera.camera_count():
        pytest.skip("a Pi camera is present")
    src = make_source("0", 640, 480, 30)
    assert isinstance(src, V4l2Source) and src.device == "/dev/video0"


def test_open_source_synthetic():
    src = open_source("synthetic:2", 64, 48, 30)
    try:
        assert isinstance(src, SyntheticSource) and src.seed == 2
        assert src.read().width == 64
    finally:
        src.close()
