"""Fragmented MP4 container: round trips, thinning, crash safety, malformed input, and
acceptance by parsers written elsewhere (ffprobe, mp4box.js)."""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snisd.codec.bitstream import FRAME_I, FRAME_P, EncodedFrame, FrameHeader, SequenceHeader, enhancement_header
from snisd.container import (Fmp4StreamParser, Fmp4Writer, build_fragment, build_init_segment, extract_tiers,
                             open_fmp4)
from snisd.container.boxes import box, full_box, iter_children, parse_header
from snisd.errors import ContainerError

HERE = Path(__file__).resolve().parent
SEQ = SequenceHeader(1280, 720, 30, 1, tiers=3, keyframe_interval=10)


def make_frames(n: int = 20, seed: int = 0, tiers: int = 3, max_chunk: int = 3000, pts0: int = 0,
                fps: float = 30.0) -> list[EncodedFrame]:
    rng = random.Random(seed)
    frames = []
    for i in range(n):
        key = i % 10 == 0
        switch = i % 5 == 0
        t0 = FrameHeader(FRAME_I if key else FRAME_P, switch, i & 0xFFFF, 20).to_bytes() + rng.randbytes(
            rng.randint(0, max_chunk))
        chunks = [t0] + [enhancement_header(t, i) + rng.randbytes(rng.randint(0, max_chunk)) for t in range(1, tiers)]
        frames.append(EncodedFrame(i, pts0 + round(i * 1e6 / fps), key, switch, tuple(chunks)))
    return frames


def write_file(path: Path, frames: list[EncodedFrame], seq: SequenceHeader = SEQ, **kw) -> list[int]:
    """Write a recording; returns the file size after the init segment and after each fragment."""
    ends = []
    with Fmp4Writer(path, seq, **kw) as w:
        ends.append(path.stat().st_size)
        for f in frames:
            w.write(f)
            ends.append(path.stat().st_size)
    return ends


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> tuple[Path, list[EncodedFrame], list[int]]:
    path = tmp_path_factory.mktemp("fmp4") / "rec.mp4"
    frames = make_frames()
    ends = write_file(path, frames)
    return path, frames, ends


# ---------------------------------------------------------------------------------------------
# Round trips


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
    assert struct.unpack(">HHHB", init[at:at + 7]) == (*code, 0)  # limited range
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
            got += p.feed(data[pos:pos + n])
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


# ---------------------------------------------------------------------------------------------
# Thinning


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
    cut.write_bytes(path.read_bytes()[:ends[7] + 100])
    out = tmp_path / "thin.mp4"
    assert extract_tiers(cut, out, 2) == 7
    assert list(open_fmp4(out)) == [f.thinned(2) for f in frames[:7]]


# ---------------------------------------------------------------------------------------------
# Crash safety


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
    rec.write_bytes(path.read_bytes()[:ends[10] + 57])  # died inside the 11th fragment
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
        size = int.from_bytes(data[pos:pos + 4], "big")
        if data[pos + 4:pos + 8] == b"moof":
            out.append(data[pos + 8:pos + size])
        pos += size
    return out


# ---------------------------------------------------------------------------------------------
# Malformed input: ContainerError with offset and box type


def _one_frame_file() -> bytes:
    return build_init_segment(SEQ) + build_fragment(make_frames(1)[0], 1, SEQ)


def _patch(data: bytes, marker: bytes, delta_at: int, value: bytes, nth: int = 0) -> bytes:
    at = -1
    for _ in range(nth + 1):
        at = data.index(marker, at + 1)
    pos = at + delta_at
    return data[:pos] + value + data[pos + len(value):]


def _expect_error(data: bytes, box_type: str | None = None) -> ContainerError:
    p = Fmp4StreamParser()
    with pytest.raises(ContainerError) as exc:
        p.feed(data)
    err = exc.value
    assert err.offset is not None and 0 <= err.offset <= len(data)
    assert err.box is not None
    if box_type is not None:
        assert err.box == box_type, str(err)
    return err


def test_malformed_inputs() -> None:
    good = _one_frame_file()
    size_of = lambda tag, nth=0: int.from_bytes(good[_find(good, tag, nth) - 4:_find(good, tag, nth)], "big")
    # a child box smaller than its header
    _expect_error(_patch(good, b"mvhd", -4, struct.pack(">I", 4)), "mvhd")
    # a child box larger than its complete parent
    _expect_error(_patch(good, b"trun", -4, struct.pack(">I", size_of(b"trun") + 8)), "trun")
    # 64-bit largesize with the top bit set
    _expect_error(good + struct.pack(">I4sQ", 1, b"free", 1 << 63) + b"\0" * 8, "free")
    # largesize smaller than its header
    _expect_error(good + struct.pack(">I4sQ", 1, b"free", 12), "free")
    # size 0 and a size beyond the limit
    _expect_error(good + struct.pack(">I4s", 0, b"free"), "free")
    _expect_error(good + struct.pack(">I4s", 0xFFFFFFF0, b"mdat"), "mdat")
    # wrong nesting: a trak at the top level, an mvhd inside a traf
    _expect_error(good + box(b"trak", b""), "trak")
    mvhd_in_traf = _patch(good, b"tfdt", 0, b"mvhd")
    _expect_error(mvhd_in_traf, "mvhd")
    # unknown versions
    _expect_error(_patch(good, b"tfdt", 4, b"\x07"), "tfdt")
    _expect_error(_patch(good, b"trun", 4, b"\x05"), "trun")
    _expect_error(_patch(good, b"mvhd", 4, b"\x09"), "mvhd")
    # sample sizes not matching the mdat
    for nth, delta, where in ((2, +1, "trun"), (0, +1, "mdat"), (0, -1, "mdat")):
        trun = _find(good, b"trun", nth)
        size_at = trun + 4 + 4 + 4 + 4 + 4  # version/flags, count, data_offset, duration
        size = int.from_bytes(good[size_at:size_at + 4], "big")
        _expect_error(good[:size_at] + struct.pack(">I", size + delta) + good[size_at + 4:], where)
    # fragments out of order or incomplete
    _expect_error(good + box(b"mdat", b"xx"), "mdat")
    moof_start = _find(good, b"moof") - 4
    _expect_error(good[:moof_start] + good[moof_start:_find(good, b"mdat") - 4] + box(b"free"), "free")
    _expect_error(box(b"moov", b"") + good, "moov")
    # garbage that is not an MP4 at all
    _expect_error(b"hello, this is not a video file", None)


def _find(data: bytes, tag: bytes, nth: int = 0) -> int:
    at = -1
    for _ in range(nth + 1):
        at = data.index(tag, at + 1)
    return at


def test_box_primitives() -> None:
    assert box(b"free", b"abc") == b"\0\0\0\x0bfreeabc"
    assert full_box(b"mfhd", 1, 0x20001, b"") == b"\0\0\0\x0cmfhd\x01\x02\x00\x01"
    hdr = parse_header(struct.pack(">I4sQ", 1, b"mdat", 24) + b"x" * 8, 0, 24)
    assert (hdr.type, hdr.size, hdr.header_size, hdr.payload, hdr.end) == ("mdat", 24, 16, 16, 24)
    assert parse_header(b"\0\0\0\x10fr", 0, 6) is None
    parent = box(b"free", b"\0\0\0\x08skip", b"\0\0")
    with pytest.raises(ContainerError, match="stray"):
        list(iter_children(parent, 8, len(parent), "free"))


# ---------------------------------------------------------------------------------------------
# Fuzz: mutated valid files give frames, a clean truncation, or ContainerError; nothing else.


_FUZZ_BASE = [build_init_segment(SEQ) + b"".join(build_fragment(f, i + 1, SEQ) for i, f in enumerate(
    make_frames(4, seed=11, max_chunk=40)))]
_FUZZ_BASE.append(build_init_segment(SEQ, tiers=1) + b"".join(
    build_fragment(f.thinned(1), i + 1, SEQ) for i, f in enumerate(make_frames(3, seed=12, max_chunk=40))))


def _demux_all(data: bytes) -> None:
    p = Fmp4StreamParser()
    try:
        p.feed(data)
        p.close()
    except ContainerError as e:
        assert e.offset is None or 0 <= e.offset <= len(data) + 16


_mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 20), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 20), st.just(0)),
    st.tuples(st.just("size"), st.integers(0, 1 << 20),
              st.sampled_from([0, 1, 7, 8, 9, 16, 0x7FFFFFFF, 0xFFFFFFFF, -1, 1, -8])),
    st.tuples(st.just("insert"), st.integers(0, 1 << 20), st.sampled_from(
        [b"free", b"moof", b"mdat", b"trak", b"traf", b"trun", b"moov", b"mvhd", b"snsC"])),
)


def _apply(data: bytes, kind: str, where: int, arg) -> bytes:
    if not data:
        return data
    pos = where % len(data)
    if kind == "flip":
        return data[:pos] + bytes((data[pos] ^ (1 << arg),)) + data[pos + 1:]
    if kind == "truncate":
        return data[:pos]
    if kind == "size":
        # overwrite the size field of the box whose type sits nearest after `pos`
        starts = [i - 4 for i in range(4, len(data) - 4) if data[i:i + 4].isalpha()]
        if not starts:
            return data
        at = min(starts, key=lambda s: abs(s - pos))
        old = int.from_bytes(data[at:at + 4], "big")
        new = (old + arg) & 0xFFFFFFFF if arg in (-1, -8, 1) else arg
        return data[:at] + new.to_bytes(4, "big") + data[at + 4:]
    return data[:pos] + box(arg, b"\0" * (where % 24)) + data[pos:]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.sampled_from(range(len(_FUZZ_BASE))), mutations=st.lists(_mutation, min_size=1, max_size=3))
def test_fuzz_mutations(base, mutations) -> None:
    data = _FUZZ_BASE[base]
    for kind, where, arg in mutations:
        data = _apply(data, kind, where, arg)
    _demux_all(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data) -> None:
    _demux_all(data)
    _demux_all(_FUZZ_BASE[0][:200] + data)


# ---------------------------------------------------------------------------------------------
# Independent parsers


FFPROBE = shutil.which("ffprobe")


def _ffprobe(path: Path, *args: str) -> dict:
    proc = subprocess.run([FFPROBE, "-v", "error", "-of", "json", *args, str(path)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.skipif(FFPROBE is None, reason="ffprobe not installed")
@pytest.mark.parametrize("k", [3, 1])
def test_ffprobe_accepts(recording, tmp_path, k) -> None:
    path, frames, _ = recording
    if k < 3:
        thin = tmp_path / "thin.mp4"
        extract_tiers(path, thin, k)
        path = thin
    info = _ffprobe(path, "-count_packets", "-show_streams", "-show_format")
    streams = info["streams"]
    assert [s["codec_tag_string"] for s in streams] == ["snis"] + ["snie"] * (k - 1)
    duration = len(frames) / 30
    for s in streams:
        assert s["codec_type"] == "video"
        assert (s["width"], s["height"]) == (SEQ.width, SEQ.height)
        assert int(s["nb_read_packets"]) == len(frames)
        assert float(s["duration"]) == pytest.approx(duration, abs=1e-3)
        assert s["color_primaries"] == "bt709" and s["color_range"] == "tv"
    assert float(info["format"]["duration"]) == pytest.approx(duration, abs=1e-3)
    pk = _ffprobe(path, "-show_packets", "-select_streams", "0")["packets"]
    assert [p["flags"].startswith("K") for p in pk] == [f.keyframe for f in frames]
    assert [int(p["size"]) for p in pk] == [len(f.tiers[0]) for f in frames]
    assert [int(p["pts"]) for p in pk] == [i * 3000 for i in range(len(frames))]


def _mp4box_ready() -> bool:
    return shutil.which("node") is not None and (HERE / ".node" / "node_modules" / "mp4box").is_dir() or bool(
        os.environ.get("MP4BOX_DIR"))


@pytest.mark.skipif(not _mp4box_ready(), reason="mp4box.js not installed (npm install --prefix tests/.node mp4box)")
@pytest.mark.parametrize("k", [3, 2])
def test_mp4box_js_walks_every_box(recording, tmp_path, k) -> None:
    path, frames, _ = recording
    if k < 3:
        thin = tmp_path / "thin.mp4"
        extract_tiers(path, thin, k)
        path = thin
    proc = subprocess.run(["node", str(HERE / "mp4walk.js"), str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    assert out["ok"] and out["fragmented"] and not out["errors"]
    allowed = {"Unknown sample entry type: 'snis'", "Unknown sample entry type: 'snie'",
               "Unknown track reference type: 'sbas'"}
    assert {w.split(": ", 1)[1] for w in out["warnings"]} <= allowed, out["warnings"]
    assert [t["codec"] for t in out["tracks"]] == ["snis"] + ["snie"] * (k - 1)
    for tier, t in enumerate(out["tracks"]):
        assert out["samples"][str(t["id"])] == [
            [i * 3000, len(f.tiers[tier]), int(f.keyframe)] for i, f in enumerate(frames)]
    paths = set(out["paths"])
    for p in ("moov/mvex/trex", "moov/trak/mdia/minf/stbl/stsd/snis", "moof/traf/tfdt", "moof/traf/trun", "mdat"):
        assert p in paths
