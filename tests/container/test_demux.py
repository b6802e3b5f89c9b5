"""Malformed input gives ContainerError with offset and box type; mutated and random bytes give
frames, a clean truncation or ContainerError, nothing else."""

from __future__ import annotations

import struct

import pytest
from fmp4_samples import SEQ, make_frames
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snisd.container import Fmp4StreamParser, build_fragment, build_init_segment
from snisd.container.boxes import box
from snisd.errors import ContainerError


def _one_frame_file() -> bytes:
    return build_init_segment(SEQ) + build_fragment(make_frames(1)[0], 1, SEQ)


def _patch(data: bytes, marker: bytes, delta_at: int, value: bytes, nth: int = 0) -> bytes:
    at = -1
    for _ in range(nth + 1):
        at = data.index(marker, at + 1)
    pos = at + delta_at
    return data[:pos] + value + data[pos + len(value) :]


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

    def size_of(tag: bytes, nth: int = 0) -> int:
        at = _find(good, tag, nth)
        return int.from_bytes(good[at - 4 : at], "big")

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
        size = int.from_bytes(good[size_at : size_at + 4], "big")
        _expect_error(good[:size_at] + struct.pack(">I", size + delta) + good[size_at + 4 :], where)
    # fragments out of order or incomplete
    _expect_error(good + box(b"mdat", b"xx"), "mdat")
    moof_start = _find(good, b"moof") - 4
    _expect_error(good[:moof_start] + good[moof_start : _find(good, b"mdat") - 4] + box(b"free"), "free")
    _expect_error(box(b"moov", b"") + good, "moov")
    # garbage that is not an MP4 at all
    _expect_error(b"hello, this is not a video file", None)


def _find(data: bytes, tag: bytes, nth: int = 0) -> int:
    at = -1
    for _ in range(nth + 1):
        at = data.index(tag, at + 1)
    return at


# Fuzz: mutated valid files give frames, a clean truncation, or ContainerError; nothing else.


_FUZZ_BASE = [
    build_init_segment(SEQ)
    + b"".join(build_fragment(f, i + 1, SEQ) for i, f in enumerate(make_frames(4, seed=11, max_chunk=40)))
]
_FUZZ_BASE.append(
    build_init_segment(SEQ, tiers=1)
    + b"".join(build_fragment(f.thinned(1), i + 1, SEQ) for i, f in enumerate(make_frames(3, seed=12, max_chunk=40)))
)


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
    st.tuples(
        st.just("size"),
        st.integers(0, 1 << 20),
        st.sampled_from([0, 1, 7, 8, 9, 16, 0x7FFFFFFF, 0xFFFFFFFF, -1, 1, -8]),
    ),
    st.tuples(
        st.just("insert"),
        st.integers(0, 1 << 20),
        st.sampled_from([b"free", b"moof", b"mdat", b"trak", b"traf", b"trun", b"moov", b"mvhd", b"snsC"]),
    ),
)


def _apply(data: bytes, kind: str, where: int, arg) -> bytes:
    if not data:
        return data
    pos = where % len(data)
    if kind == "flip":
        return data[:pos] + bytes((data[pos] ^ (1 << arg),)) + data[pos + 1 :]
    if kind == "truncate":
        return data[:pos]
    if kind == "size":
        # overwrite the size field of the box whose type sits nearest after `pos`
        starts = [i - 4 for i in range(4, len(data) - 4) if data[i : i + 4].isalpha()]
        if not starts:
            return data
        at = min(starts, key=lambda s: abs(s - pos))
        old = int.from_bytes(data[at : at + 4], "big")
        new = (old + arg) & 0xFFFFFFFF if arg in (-1, -8, 1) else arg
        return data[:at] + new.to_bytes(4, "big") + data[at + 4 :]
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
