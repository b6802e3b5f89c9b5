"""Crash safety: a file cut anywhere yields its complete fragments; resume continues it."""

from __future__ import annotations

import random

import pytest
from fmp4_samples import SEQ, make_frames

from snisd.codec.bitstream import SequenceHeader
from snisd.container import Fmp4StreamParser, Fmp4Writer, build_init_segment, open_fmp4
from snisd.errors import ContainerError


def test_cut_at_random_offsets(recording, tmp_path) -> None:
    path, frames, ends = recording
    data = path.read_bytes()
    rng = random.Random(896)
    offsets = sorted({rng.randrange(0, len(data) + 1) for _ in range(300)} | set(ends) | {0, 1, len(data)})
    cut = tmp_path / "cut.mp4"
    for off in offsets:
        cut.write_bytes(data[:off])
        complete = sum(1 for e in ends[1:] if e <= off)
        r = open_fmp4(cut)
        got = list(r)
        assert got == frames[:complete], off
        assert r.truncated == (off not in ends), off
        if off >= ends[0]:
            assert r.sequence_header == SEQ
        else:
            assert r.sequence_header is None
        p = Fmp4StreamParser()
        assert p.feed(data[:off]) == frames[:complete]
        assert p.close() == (off not in ends)


def test_resume_after_crash(recording, tmp_path) -> None:
    path, frames, ends = recording
    rec = tmp_path / "crashed.mp4"
    rec.write_bytes(path.read_bytes()[: ends[10] + 57])  # died inside the 11th fragment
    more = make_frames(10, seed=9)  # a restarted encoder counts pts from 0 again
    w = Fmp4Writer.resume(rec, SEQ)
    assert w.sequence_number == 10 and w.frames_written == 10
    for f in more:
        w.write(f)
    w.close()
    got = list(open_fmp4(rec))
    assert len(got) == 20
    assert [g.tiers for g in got] == [f.tiers for f in frames[:10] + more]
    assert [g.keyframe for g in got] == [f.keyframe for f in frames[:10] + more]
    assert [g.pts_us for g in got] == [round(i * 1e6 / 30) for i in range(20)]
    seqnos = [int.from_bytes(fr_bytes[12:16], "big") for fr_bytes in _moofs(rec.read_bytes())]
    assert seqnos == list(range(1, 21))


def test_resume_clean_file_keeps_wall_clock_gap(recording, tmp_path) -> None:
    path, frames, _ = recording
    rec = tmp_path / "r.mp4"
    rec.write_bytes(path.read_bytes())
    later = make_frames(3, seed=2, pts0=10_000_000)
    with Fmp4Writer.resume(rec) as w:
        for f in later:
            w.write(f)
    got = list(open_fmp4(rec))
    assert [g.pts_us for g in got[20:]] == [f.pts_us for f in later]


def test_resume_without_init(tmp_path) -> None:
    rec = tmp_path / "empty.mp4"
    rec.write_bytes(build_init_segment(SEQ)[:30])
    with pytest.raises(ContainerError):
        Fmp4Writer.resume(rec)
    with Fmp4Writer.resume(rec, SEQ) as w:
        w.write(make_frames(1)[0])
    assert len(list(open_fmp4(rec))) == 1
    with pytest.raises(ContainerError):
        Fmp4Writer.resume(rec, SequenceHeader(64, 64))


def _moofs(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        if data[pos + 4 : pos + 8] == b"moof":
            out.append(data[pos + 8 : pos + size])
        pos += size
    return out
