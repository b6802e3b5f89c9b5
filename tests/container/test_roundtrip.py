"""Muxing and demuxing round trips: writer, builders, reader and the streaming parser agree."""

from __future__ import annotations

import random
import struct

import pytest
from fmp4_samples import SEQ, make_frames, write_file

from snisd.codec.bitstream import SequenceHeader
from snisd.container import Fmp4StreamParser, Fmp4Writer, build_fragment, build_init_segment, open_fmp4
from snisd.errors import ContainerError


def test_round_trip(recording) -> None:
    path, frames, _ = recording
    r = open_fmp4(path)
    assert r.sequence_header == SEQ
    assert r.tiers == 3 and r.colorspace == "bt709"
    assert list(r) == frames
    assert not r.truncated


def test_writer_bytes_equal_builder_bytes(recording) -> None:
    path, frames, _ = recording
    expected = build_init_segment(SEQ) + b"".join(build_fragment(f, i + 1, SEQ) for i, f in enumerate(frames))
    assert path.read_bytes() == expected


@pytest.mark.parametrize("colorspace,code", [("bt709", (1, 1, 1)), ("bt601", (6, 6, 6)), ("bt601-625", (5, 6, 5))])
def test_colorspace_in_colr(tmp_path, colorspace, code) -> None:
    init = build_init_segment(SEQ, colorspace=colorspace)
    assert init.count(b"colr") == SEQ.tiers
    at = init.index(b"colrnclx") + 8
    assert struct.unpack(">HHHB", init[at : at + 7]) == (*code, 0)  # limited range
    p = tmp_path / "c.mp4"
    write_file(p, make_frames(3), colorspace=colorspace)
    assert open_fmp4(p).colorspace == colorspace


def test_unknown_colorspace_rejected() -> None:
    with pytest.raises(ContainerError):
        build_init_segment(SEQ, colorspace="srgb")


def test_stream_parser_any_chunking(recording) -> None:
    path, frames, _ = recording
    data = path.read_bytes()
    rng = random.Random(3)
    for _ in range(5):
        p = Fmp4StreamParser()
        got, pos = [], 0
        while pos < len(data):
            n = rng.choice([1, 7, 100, 5000, 70000])
            got += p.feed(data[pos : pos + n])
            pos += n
        assert got == frames
        assert p.sequence_header == SEQ
        assert not p.close()


def test_frames_with_fewer_tiers_and_odd_rates(tmp_path) -> None:
    seq = SequenceHeader(640, 480, 30000, 1001, tiers=4)
    frames = make_frames(12, seed=5, tiers=4, fps=30000 / 1001)
    frames = [f.thinned(1 + i % 4) for i, f in enumerate(frames)]  # tier count varies per frame
    p = tmp_path / "ntsc.mp4"
    write_file(p, frames, seq)
    assert list(open_fmp4(p)) == frames
    seq7 = SequenceHeader(64, 64, 7, 1, tiers=1)  # 90000 is not a multiple of 7 frames
    f7 = make_frames(9, tiers=1, fps=7.0)
    write_file(p, f7, seq7)
    assert list(open_fmp4(p)) == f7


def test_too_many_tiers_and_non_increasing_pts(tmp_path) -> None:
    frames = make_frames(2, tiers=3)
    with Fmp4Writer(tmp_path / "x.mp4", SequenceHeader(64, 64, tiers=2)) as w:
        with pytest.raises(ContainerError):
            w.write(frames[0])
    with Fmp4Writer(tmp_path / "y.mp4", SEQ) as w:
        w.write(frames[1])
        with pytest.raises(ContainerError):
            w.write(frames[0])
