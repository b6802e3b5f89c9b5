"""Fragmented MP4 (ISO/IEC 14496-12) muxer and demuxer for SNIS streams.

Layout (see docs/CONTAINER.md): one video track per tier. Track 1 carries tier 0 with sample
entry `snis`; track t+1 carries tier t with sample entry `snie` and a `sbas` reference to
track 1. Every sample entry holds a `snsC` box (version, tier index, SNIS sequence header) and a
`colr` box (nclx). The init segment declares empty sample tables and `trex` defaults; then
each frame is one fragment: `moof` (`mfhd` + one `traf` per tier present) and one `mdat` with
the tier chunks back to back, tier 0 first. Keeping tiers < k drops whole tracks and trafs.
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from ..codec.bitstream import MAX_TIERS, EncodedFrame, SequenceHeader
from ..errors import BitstreamError, ContainerError
from .boxes import (MAX_BOX_SIZE, BoxHeader, Cursor, box, check_nesting, children_by_type, full_box,
                    parse_header)

log = logging.getLogger(__name__)

BASE_ENTRY = b"snis"
ENHANCEMENT_ENTRY = b"snie"
CONFIG_BOX = b"snsC"
CONFIG_VERSION = 1
DEFAULT_TIMESCALE = 90000

#: nclx (colour_primaries, transfer_characteristics, matrix_coefficients), ISO/IEC 23091-2 codes.
COLORSPACES: dict[str, tuple[int, int, int]] = {
    "bt709": (1, 1, 1),
    "bt601": (6, 6, 6),  # BT.601 525-line (SMPTE 170M)
    "bt601-625": (5, 6, 5),  # BT.601 625-line (BT.470 System B/G)
}

# Sample flags (ISO/IEC 14496-12 8.8.3.1): sync = depends on no other sample;
# non-sync = depends on others and sample_is_non_sync_sample set.
SYNC_FLAGS = 0x02000000
NON_SYNC_FLAGS = 0x01010000
_NON_SYNC_BIT = 0x00010000

_TFHD_BASE_OFFSET = 0x000001
_TFHD_DESC_INDEX = 0x000002
_TFHD_DURATION = 0x000008
_TFHD_SIZE = 0x000010
_TFHD_FLAGS = 0x000020
_TFHD_BASE_IS_MOOF = 0x020000

_TRUN_DATA_OFFSET = 0x001
_TRUN_FIRST_FLAGS = 0x004
_TRUN_DURATION = 0x100
_TRUN_SIZE = 0x200
_TRUN_FLAGS = 0x400
_TRUN_CTO = 0x800

_UNITY_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
_READ_CHUNK = 1 << 18


def timescale_for(seq: SequenceHeader) -> int:
    """90000 when a frame lasts a whole number of its ticks, else the smallest multiple of
    the frame-rate numerator not below 90000 (so the nominal frame duration is exact)."""
    if (DEFAULT_TIMESCALE * seq.fps_den) % seq.fps_num == 0:
        return DEFAULT_TIMESCALE
    return seq.fps_num * -(-DEFAULT_TIMESCALE // seq.fps_num)


def frame_duration(seq: SequenceHeader, timescale: int) -> int:
    return max(1, (timescale * seq.fps_den + seq.fps_num // 2) // seq.fps_num)


def us_to_ticks(pts_us: int, timescale: int) -> int:
    return (pts_us * timescale + 500_000) // 1_000_000


def ticks_to_us(ticks: int, timescale: int) -> int:
    return (ticks * 1_000_000 + timescale // 2) // timescale


# ---------------------------------------------------------------------------------------------
# Parsed descriptions shared by the muxer and the demuxer.


@dataclass(frozen=True)
class InitInfo:
    """What the init segment says: enough to rebuild it byte for byte."""

    seq_bytes: bytes
    width: int
    height: int
    timescale: int
    default_duration: int
    nclx: tuple[int, int, int]
    full_range: bool
    tracks: tuple[int, ...]  # track_ID of tier 0, 1, ...

    @property
    def sequence_header(self) -> SequenceHeader:
        return SequenceHeader.from_bytes(self.seq_bytes)

    @property
    def tiers(self) -> int:
        return len(self.tracks)

    @property
    def colorspace(self) -> str:
        for name, code in COLORSPACES.items():
            if code == self.nclx:
                return name
        return "nclx:%d/%d/%d" % self.nclx


@dataclass(frozen=True)
class Sample:
    """One tier of one frame as stored in a fragment."""

    tier: int
    decode_time: int
    duration: int
    flags: int
    data: bytes


@dataclass(frozen=True)
class Fragment:
    """One parsed moof+mdat pair; `end` is the absolute offset just after the mdat."""

    sequence_number: int
    samples: tuple[Sample, ...]  # tier 0 first, a contiguous prefix of the tiers
    start: int
    end: int


# ---------------------------------------------------------------------------------------------
# Muxing.


def _colr(nclx: tuple[int, int, int], full_range: bool) -> bytes:
    return box(b"colr", b"nclx", struct.pack(">HHHB", *nclx, 0x80 if full_range else 0))


def _sample_entry(info: InitInfo, tier: int) -> bytes:
    name = b"SNIS-896"
    compressor = bytes((len(name),)) + name.ljust(31, b"\0")
    fields = (b"\0" * 6 + struct.pack(">H", 1) + b"\0" * 16
              + struct.pack(">HHIIIH", info.width, info.height, 0x00480000, 0x00480000, 0, 1)
              + compressor + struct.pack(">Hh", 0x0018, -1))
    config = box(CONFIG_BOX, bytes((CONFIG_VERSION, tier)), info.seq_bytes)
    return box(BASE_ENTRY if tier == 0 else ENHANCEMENT_ENTRY, fields, config, _colr(info.nclx, info.full_range))


def _trak(info: InitInfo, tier: int) -> bytes:
    tid = info.tracks[tier]
    tkhd = full_box(b"tkhd", 0, 0x000003, struct.pack(">IIIII", 0, 0, tid, 0, 0), b"\0" * 8,
                    struct.pack(">hhhH", 0, 0, 0, 0), _UNITY_MATRIX,
                    struct.pack(">II", info.width << 16, info.height << 16))
    tref = box(b"tref", box(b"sbas", struct.pack(">I", info.tracks[0]))) if tier else b""
    mdhd = full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, info.timescale, 0, 0x55C4, 0))  # 'und'
    hdlr = full_box(b"hdlr", 0, 0, struct.pack(">I4s12x", 0, b"vide"), b"SNIS tier %d\0" % tier)
    vmhd = full_box(b"vmhd", 0, 1, b"\0" * 8)
    dinf = box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1)))
    stbl = box(b"stbl",
               full_box(b"stsd", 0, 0, struct.pack(">I", 1), _sample_entry(info, tier)),
               full_box(b"stts", 0, 0, struct.pack(">I", 0)),
               full_box(b"stsc", 0, 0, struct.pack(">I", 0)),
               full_box(b"stsz", 0, 0, struct.pack(">II", 0, 0)),
               full_box(b"stco", 0, 0, struct.pack(">I", 0)))
    mdia = box(b"mdia", mdhd, hdlr, box(b"minf", vmhd, dinf, stbl))
    return box(b"trak", tkhd, tref, mdia)


def _init_bytes(info: InitInfo) -> bytes:
    ftyp = box(b"ftyp", b"iso6", struct.pack(">I", 0), b"iso6isommp41")
    mvhd = full_box(b"mvhd", 0, 0, struct.pack(">IIIIIH", 0, 0, 1000, 0, 0x00010000, 0x0100), b"\0" * 10,
                    _UNITY_MATRIX, b"\0" * 24, struct.pack(">I", max(info.tracks) + 1))
    trex = b"".join(full_box(b"trex", 0, 0, struct.pack(">IIIII", tid, 1, info.default_duration, 0, NON_SYNC_FLAGS))
                    for tid in info.tracks)
    moov = box(b"moov", mvhd, *(_trak(info, t) for t in range(len(info.tracks))), box(b"mvex", trex))
    return ftyp + moov


def make_init_info(seq: SequenceHeader, *, tiers: int | None = None, timescale: int | None = None,
                   colorspace: str = "bt709") -> InitInfo:
    if colorspace not in COLORSPACES:
        raise ContainerError(f"unknown colorspace {colorspace!r}; expected one of {', '.join(COLORSPACES)}")
    ts = timescale or timescale_for(seq)
    if not 0 < ts < 1 << 32:
        raise ContainerError(f"timescale {ts} out of range")
    n = seq.tiers if tiers is None else tiers
    if not 1 <= n <= seq.tiers:
        raise ContainerError(f"tier count {n} out of range 1..{seq.tiers}")
    return InitInfo(seq.to_bytes(), seq.width, seq.height, ts, frame_duration(seq, ts),
                    COLORSPACES[colorspace], False, tuple(range(1, n + 1)))


def build_init_segment(seq: SequenceHeader, *, tiers: int | None = None, timescale: int | None = None,
                       colorspace: str = "bt709") -> bytes:
    """`ftyp` + `moov` for a stream with `tiers` tracks (default: all tiers of `seq`).

    `colorspace` is "bt709", "bt601" (525-line) or "bt601-625", all limited range.
    """
    return _init_bytes(make_init_info(seq, tiers=tiers, timescale=timescale, colorspace=colorspace))


def _fragment_bytes(sequence_number: int, samples: list[Sample] | tuple[Sample, ...], tracks: tuple[int, ...]) -> bytes:
    if not 0 <= sequence_number < 1 << 32:
        raise ContainerError(f"sequence number {sequence_number} out of range")
    mfhd = full_box(b"mfhd", 0, 0, struct.pack(">I", sequence_number))
    # Every traf has a fixed size (76 bytes), so the moof size is known before writing offsets.
    moof_size = 8 + len(mfhd) + 76 * len(samples)
    offset = moof_size + 8  # data offsets are relative to the moof (default-base-is-moof)
    trafs = []
    for s in samples:
        trafs.append(box(
            b"traf",
            full_box(b"tfhd", 0, _TFHD_BASE_IS_MOOF, struct.pack(">I", tracks[s.tier])),
            full_box(b"tfdt", 1, 0, struct.pack(">Q", s.decode_time)),
            full_box(b"trun", 0, _TRUN_DATA_OFFSET | _TRUN_DURATION | _TRUN_SIZE | _TRUN_FLAGS,
                     struct.pack(">IiIII", 1, offset, s.duration, len(s.data), s.flags))))
        offset += len(s.data)
    moof = box(b"moof", mfhd, *trafs)
    assert len(moof) == moof_size
    mdat_size = offset - moof_size
    if mdat_size > 0xFFFFFFFF:
        raise ContainerError(f"fragment of {mdat_size} bytes is too large")
    return b"".join((moof, struct.pack(">I4s", mdat_size, b"mdat"), *(s.data for s in samples)))


def frame_samples(frame: EncodedFrame, decode_time: int, duration: int, tiers: int | None = None) -> list[Sample]:
    if not frame.tiers:
        raise ContainerError(f"frame {frame.index} has no tiers")
    if tiers is not None and len(frame.tiers) > tiers:
        raise ContainerError(f"frame {frame.index} has {len(frame.tiers)} tiers, the stream declares {tiers}")
    flags = SYNC_FLAGS if frame.keyframe else NON_SYNC_FLAGS
    return [Sample(t, decode_time, duration, flags, bytes(c)) for t, c in enumerate(frame.tiers)]


def build_fragment(frame: EncodedFrame, sequence_number: int, seq: SequenceHeader, *,
                   decode_time: int | None = None, duration: int | None = None,
                   timescale: int | None = None) -> bytes:
    """One `moof`+`mdat` fragment carrying every tier of `frame`.

    `decode_time` (in `timescale` ticks, default: from frame.pts_us) and `duration` (default: one
    nominal frame) must match the init segment's timescale (default: timescale_for(seq)).
    """
    ts = timescale or timescale_for(seq)
    dt = us_to_ticks(frame.pts_us, ts) if decode_time is None else decode_time
    if not 0 <= dt < 1 << 64:
        raise ContainerError(f"decode time {dt} of frame {frame.index} out of range")
    dur = frame_duration(seq, ts) if duration is None else duration
    samples = frame_samples(frame, dt, dur, seq.tiers)
    return _fragment_bytes(sequence_number, samples, tuple(range(1, seq.tiers + 1)))


# ---------------------------------------------------------------------------------------------
# Demuxing.


def _parse_ftyp(buf, hdr: BoxHeader, base: int) -> None:
    c = Cursor(buf, hdr, base=base)
    c.raw(4)
    c.u32()
    if c.remaining % 4:
        raise c.error(f"ftyp compatible-brand list of {c.remaining} bytes is not a multiple of 4")


def _parse_sample_entry(buf, hdr: BoxHeader, base: int) -> tuple[int, bytes, int, int, tuple[int, int, int], bool]:
    c = Cursor(buf, hdr, base=base)
    c.skip(6)
    c.u16()  # data_reference_index
    c.skip(16)
    width, height = c.u16(), c.u16()
    c.skip(4 + 4 + 4 + 2 + 32 + 2 + 2)
    kids = children_by_type(buf, hdr, skip=78, base=base)
    cfg = kids.get("snsC")
    if not cfg or len(cfg) != 1:
        raise ContainerError(f"sample entry needs exactly one 'snsC' box, found {len(cfg or [])}",
                             base + hdr.start, hdr.type)
    cc = Cursor(buf, cfg[0], base=base)
    version = cc.u8()
    if version != CONFIG_VERSION:
        raise ContainerError(f"unsupported snsC version {version}", base + cfg[0].payload, "snsC")
    tier = cc.u8()
    seq_bytes = cc.rest()
    nclx, full = COLORSPACES["bt709"], False
    for colr in kids.get("colr", []):
        k = Cursor(buf, colr, base=base)
        if k.raw(4) == b"nclx":
            nclx = (k.u16(), k.u16(), k.u16())
            full = bool(k.u8() & 0x80)
    return tier, seq_bytes, width, height, nclx, full


def _only(kids: dict[str, list[BoxHeader]], kind: str, parent: BoxHeader, base: int) -> BoxHeader:
    found = kids.get(kind, [])
    if len(found) != 1:
        raise ContainerError(f"{parent.type!r} must hold exactly one {kind!r} box, found {len(found)}",
                             base + parent.start, parent.type)
    return found[0]


def parse_init(buf, moov: BoxHeader, base: int = 0) -> InitInfo:
    """Parse a complete `moov` box into an InitInfo; ContainerError on anything unexpected."""
    kids = children_by_type(buf, moov, base=base)
    mvhd = _only(kids, "mvhd", moov, base)
    Cursor(buf, mvhd, base=base).full_header((0, 1))
    traks = kids.get("trak", [])
    if not 1 <= len(traks) <= MAX_TIERS:
        raise ContainerError(f"{len(traks)} tracks; a SNIS file has 1..{MAX_TIERS}", base + moov.start, "moov")
    mvex = _only(kids, "mvex", moov, base)
    trex_defaults: dict[int, int] = {}
    for trex in children_by_type(buf, mvex, base=base).get("trex", []):
        c = Cursor(buf, trex, base=base)
        c.full_header()
        tid = c.u32()
        c.u32()
        trex_defaults[tid] = c.u32()
        c.u32()
        c.u32()
    by_tier: dict[int, tuple] = {}
    for trak in traks:
        tk = children_by_type(buf, trak, base=base)
        tkhd = _only(tk, "tkhd", trak, base)
        c = Cursor(buf, tkhd, base=base)
        v, _ = c.full_header((0, 1))
        c.skip(16 if v else 8)
        tid = c.u32()
        if tid == 0:
            raise c.error("track_ID 0 is reserved")
        mdia = _only(tk, "mdia", trak, base)
        md = children_by_type(buf, mdia, base=base)
        mdhd = _only(md, "mdhd", mdia, base)
        c = Cursor(buf, mdhd, base=base)
        v, _ = c.full_header((0, 1))
        c.skip(16 if v else 8)
        timescale = c.u32()
        if timescale == 0:
            raise c.error("timescale 0")
        hdlr = _only(md, "hdlr", mdia, base)
        c = Cursor(buf, hdlr, base=base)
        c.full_header()
        c.u32()
        handler = c.raw(4)
        if handler != b"vide":
            raise ContainerError(f"track {tid} has handler {handler!r}, expected 'vide'", base + hdlr.start, "hdlr")
        minf = _only(md, "minf", mdia, base)
        stbl = _only(children_by_type(buf, minf, base=base), "stbl", minf, base)
        stsd = _only(children_by_type(buf, stbl, base=base), "stsd", stbl, base)
        c = Cursor(buf, stsd, base=base)
        c.full_header()
        if c.u32() < 1:
            raise c.error("sample description table is empty")
        entry = parse_header(buf, c.pos, stsd.end, base=base)
        if entry is None or entry.end > stsd.end:
            raise ContainerError("sample entry overruns 'stsd'", base + c.pos, "stsd")
        if entry.type not in ("snis", "snie"):
            raise ContainerError(f"track {tid}: sample entry {entry.type!r} is not a SNIS stream",
                                 base + entry.start, entry.type)
        check_nesting(entry.type, "stsd", base + entry.start)
        tier, seq_bytes, w, h, nclx, full = _parse_sample_entry(buf, entry, base)
        if (entry.type == "snis") != (tier == 0):
            raise ContainerError(f"sample entry {entry.type!r} declares tier {tier}", base + entry.start, entry.type)
        if tier in by_tier:
            raise ContainerError(f"two tracks carry tier {tier}", base + trak.start, "trak")
        if tid not in trex_defaults:
            raise ContainerError(f"track {tid} has no 'trex' defaults", base + mvex.start, "mvex")
        by_tier[tier] = (tid, timescale, seq_bytes, w, h, nclx, full)
    if sorted(by_tier) != list(range(len(by_tier))):
        raise ContainerError(f"tracks carry tiers {sorted(by_tier)}, not 0..{len(by_tier) - 1}",
                             base + moov.start, "moov")
    tid0, ts, seq_bytes, w, h, nclx, full = by_tier[0]
    tids = tuple(by_tier[t][0] for t in range(len(by_tier)))
    if len(set(tids)) != len(tids):
        raise ContainerError("duplicate track_ID", base + moov.start, "moov")
    for t, (_, ts_t, sb, *_rest) in by_tier.items():
        if ts_t != ts or sb != seq_bytes:
            raise ContainerError(f"tier-{t} track disagrees with tier 0 on timescale or sequence header",
                                 base + moov.start, "moov")
    try:
        seq = SequenceHeader.from_bytes(seq_bytes)
    except BitstreamError as e:
        raise ContainerError(f"bad SNIS sequence header in 'snsC': {e}", base + moov.start, "snsC") from None
    if len(tids) > seq.tiers:
        raise ContainerError(f"{len(tids)} tier tracks but the sequence header declares {seq.tiers} tiers",
                             base + moov.start, "moov")
    return InitInfo(seq_bytes, w, h, ts, trex_defaults[tid0], nclx, full, tids)


def parse_fragment(buf, moof: BoxHeader, mdat: BoxHeader, info: InitInfo, base: int = 0) -> Fragment:
    """Parse a complete `moof` and the complete `mdat` right after it (offsets within `buf`)."""
    kids = children_by_type(buf, moof, base=base)
    c = Cursor(buf, _only(kids, "mfhd", moof, base), base=base)
    c.full_header()
    seqno = c.u32()
    tier_of = {tid: t for t, tid in enumerate(info.tracks)}
    found: dict[int, Sample] = {}
    data_end = moof.start
    payload_start, payload_end = mdat.payload, mdat.end
    spans = []
    for traf in kids.get("traf", []):
        tk = children_by_type(buf, traf, base=base)
        c = Cursor(buf, _only(tk, "tfhd", traf, base), base=base)
        _, tf = c.full_header()
        tid = c.u32()
        if tid not in tier_of:
            raise c.error(f"fragment refers to unknown track {tid}")
        tier = tier_of[tid]
        if tier in found:
            raise c.error(f"two 'traf' boxes for track {tid}")
        data_base = c.u64() - base if tf & _TFHD_BASE_OFFSET else (
            moof.start if tf & _TFHD_BASE_IS_MOOF or not spans else data_end)
        if tf & _TFHD_DESC_INDEX:
            c.u32()
        duration = c.u32() if tf & _TFHD_DURATION else info.default_duration
        size = c.u32() if tf & _TFHD_SIZE else 0
        flags = c.u32() if tf & _TFHD_FLAGS else NON_SYNC_FLAGS
        c = Cursor(buf, _only(tk, "tfdt", traf, base), base=base)
        v, _ = c.full_header((0, 1))
        decode_time = c.u64() if v else c.u32()
        truns = tk.get("trun", [])
        if len(truns) != 1:
            raise ContainerError(f"'traf' must hold exactly one 'trun', found {len(truns)}",
                                 base + traf.start, "traf")
        c = Cursor(buf, truns[0], base=base)
        _, rf = c.full_header((0, 1))
        count = c.u32()
        if count == 0:
            continue  # this tier is absent from this frame
        if count != 1:
            raise c.error(f"'trun' with {count} samples; SNIS fragments carry one frame")
        data_offset = c.s32() if rf & _TRUN_DATA_OFFSET else 0
        if rf & _TRUN_FIRST_FLAGS:
            flags = c.u32()
        if rf & _TRUN_DURATION:
            duration = c.u32()
        if rf & _TRUN_SIZE:
            size = c.u32()
        if rf & _TRUN_FLAGS:
            flags = c.u32()
        if rf & _TRUN_CTO:
            c.u32()
        if c.remaining:
            raise c.error(f"{c.remaining} unexpected bytes after the 'trun' sample table")
        start = data_base + data_offset
        if start < payload_start or start + size > payload_end:
            raise ContainerError(
                f"track {tid} sample of {size} bytes at {base + start} lies outside the 'mdat' payload "
                f"{base + payload_start}..{base + payload_end}", base + truns[0].start, "trun")
        data_end = start + size
        spans.append((start, data_end))
        with memoryview(buf) as mv:  # one copy of the payload, and no export left on a bytearray
            found[tier] = Sample(tier, decode_time, duration, flags, bytes(mv[start:data_end]))
    if 0 not in found:
        raise ContainerError(f"fragment {seqno} has no tier-0 sample", base + moof.start, "moof")
    if sorted(found) != list(range(len(found))):
        raise ContainerError(f"fragment {seqno} carries tiers {sorted(found)}, not a prefix",
                             base + moof.start, "moof")
    spans.sort()
    if sum(e - s for s, e in spans) != payload_end - payload_start or any(
            a[1] > b[0] for a, b in zip(spans, spans[1:])):
        raise ContainerError(
            f"sample sizes {[e - s for s, e in spans]} do not tile the {payload_end - payload_start}-byte 'mdat' payload",
            base + mdat.start, "mdat")
    return Fragment(seqno, tuple(found[t] for t in range(len(found))), base + moof.start, base + mdat.end)


def fragment_to_frame(frag: Fragment, info: InitInfo, index: int) -> EncodedFrame:
    s0 = frag.samples[0]
    return EncodedFrame(index, ticks_to_us(s0.decode_time, info.timescale), not s0.flags & _NON_SYNC_BIT,
                        bool(s0.data and s0.data[0] & 4), tuple(s.data for s in frag.samples))


class Fmp4StreamParser:
    """Incremental demuxer: feed bytes as they arrive, get back every frame completed by them.

    Boxes are only interpreted once complete; bytes of an unfinished box stay buffered. After
    the last feed, `close()` tells whether the stream stopped inside a box (`truncated`).
    """

    def __init__(self, *, max_box_size: int = MAX_BOX_SIZE, _init_only: bool = False) -> None:
        self.max_box_size = max_box_size
        self._init_only = _init_only  # stop interpreting boxes once the init segment is parsed
        self.init: InitInfo | None = None
        self.truncated = False
        #: absolute offset just after the init segment / last complete fragment
        self.valid_end = 0
        self.frames = 0
        self.last_fragment: Fragment | None = None
        self._buf = bytearray()
        self._pos = 0  # parse position within _buf
        self._base = 0  # absolute offset of _buf[0]
        self._seen_ftyp = False
        self._moof: BoxHeader | None = None  # a parsed moof waiting for its mdat (kept in _buf)
        self._closed = False

    @property
    def sequence_header(self) -> SequenceHeader | None:
        return self.init.sequence_header if self.init else None

    def feed(self, data: bytes) -> list[EncodedFrame]:
        return [fragment_to_frame(f, self.init, i) for f, i in self.feed_fragments(data)]  # type: ignore[arg-type]

    def feed_fragments(self, data: bytes) -> list[tuple[Fragment, int]]:
        """Like feed, but returns the parsed fragments with their frame index."""
        if self._closed:
            raise ContainerError("feed after close")
        self._buf += data
        out: list[tuple[Fragment, int]] = []
        buf = self._buf
        while not (self._init_only and self.init is not None):
            abs_pos = self._base + self._pos
            hdr = parse_header(buf, self._pos, len(buf), base=self._base, max_size=self.max_box_size)
            if hdr is None or hdr.end > len(buf):
                break
            check_nesting(hdr.type, "file", abs_pos)
            self._handle(hdr, abs_pos, out)
            self._pos = hdr.end
        # Drop consumed bytes now and then, but never a moof still waiting for its mdat.
        keep = self._moof.start if self._moof is not None else self._pos
        if keep > 1 << 16 and keep * 2 > len(buf):
            del buf[:keep]
            self._base += keep
            self._pos -= keep
            if self._moof is not None:
                self._moof = BoxHeader("moof", 0, self._moof.size, self._moof.header_size)
        return out

    def _handle(self, hdr: BoxHeader, abs_pos: int, out: list[tuple[Fragment, int]]) -> None:
        kind = hdr.type
        if not self._seen_ftyp:
            if kind != "ftyp":
                raise ContainerError(f"file starts with {kind!r}, not 'ftyp'", abs_pos, kind)
            _parse_ftyp(self._buf, hdr, self._base)
            self._seen_ftyp = True
            return
        if kind == "ftyp":
            raise ContainerError("second 'ftyp'", abs_pos, kind)
        if self._moof is not None and kind != "mdat":
            raise ContainerError(f"'moof' followed by {kind!r}, not 'mdat'", abs_pos, kind)
        if kind == "moov":
            if self.init is not None:
                raise ContainerError("second 'moov'", abs_pos, kind)
            self.init = parse_init(self._buf, hdr, self._base)
            self.valid_end = hdr.end + self._base
        elif kind in ("moof", "mdat") and self.init is None:
            raise ContainerError(f"{kind!r} before 'moov'", abs_pos, kind)
        elif kind == "moof":
            self._moof = hdr
        elif kind == "mdat":
            if self._moof is None:
                raise ContainerError("'mdat' without a 'moof'", abs_pos, kind)
            moof, self._moof = self._moof, None
            mstart = self._base + moof.start
            if moof.end != hdr.start:
                raise ContainerError("'mdat' does not follow its 'moof'", abs_pos, kind)
            frag = parse_fragment(self._buf, moof, hdr, self.init, self._base)  # type: ignore[arg-type]
            last = self.last_fragment
            if last is not None:
                if frag.sequence_number <= last.sequence_number:
                    raise ContainerError(f"fragment sequence number {frag.sequence_number} after "
                                         f"{last.sequence_number}", mstart, "mfhd")
                if frag.samples[0].decode_time <= last.samples[0].decode_time:
                    raise ContainerError(f"decode time {frag.samples[0].decode_time} after "
                                         f"{last.samples[0].decode_time}", mstart, "tfdt")
            self.last_fragment = frag
            self.valid_end = frag.end
            out.append((frag, self.frames))
            self.frames += 1
        # any other top-level box (free, skip, sidx, unknown) is skipped

    def close(self) -> bool:
        """End of input: returns and records whether it stopped inside an incomplete box or fragment."""
        if not self._closed:
            self._closed = True
            self.truncated = self._pos < len(self._buf) or self._moof is not None or self.init is None
            if self.truncated:
                log.warning("fMP4 input truncated: %d bytes after the last complete fragment at offset %d",
                            self._base + len(self._buf) - self.valid_end, self.valid_end)
        return self.truncated


class Fmp4Reader:
    """A recorded SNIS fMP4 file: `.sequence_header` now, frames by iteration.

    A file cut anywhere yields every frame of its complete fragments and then sets
    `truncated` (no exception); malformed content raises ContainerError. A file cut inside its
    init segment has `sequence_header` None and yields nothing.
    """

    def __init__(self, path: str | os.PathLike, *, max_box_size: int = MAX_BOX_SIZE) -> None:
        self.path = path
        self.max_box_size = max_box_size
        self.truncated = False
        self.valid_end = 0
        self.init: InitInfo | None = None
        p = Fmp4StreamParser(max_box_size=max_box_size, _init_only=True)
        with open(path, "rb") as f:
            while p.init is None:
                chunk = f.read(64 << 10)
                if not chunk:
                    break
                p.feed_fragments(chunk)
        self.init = p.init
        if self.init is None:
            self.truncated = p.close()

    @property
    def sequence_header(self) -> SequenceHeader | None:
        return self.init.sequence_header if self.init else None

    @property
    def tiers(self) -> int:
        return self.init.tiers if self.init else 0

    @property
    def colorspace(self) -> str | None:
        return self.init.colorspace if self.init else None

    def fragments(self) -> Iterator[Fragment]:
        p = Fmp4StreamParser(max_box_size=self.max_box_size)
        with open(self.path, "rb") as f:
            while True:
                chunk = f.read(_READ_CHUNK)
                if not chunk:
                    break
                for frag, _ in p.feed_fragments(chunk):
                    self.valid_end = p.valid_end
                    yield frag
        self.valid_end = p.valid_end
        self.truncated = p.close()

    def __iter__(self) -> Iterator[EncodedFrame]:
        if self.init is None:
            return
        for i, frag in enumerate(self.fragments()):
            yield fragment_to_frame(frag, self.init, i)

    def __enter__(self) -> "Fmp4Reader":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def open_fmp4(path: str | os.PathLike, **kwargs) -> Fmp4Reader:
    return Fmp4Reader(path, **kwargs)


def read_fmp4(path: str | os.PathLike) -> tuple[SequenceHeader | None, list[EncodedFrame], bool]:
    """Convenience: (sequence header, all frames, truncated)."""
    r = Fmp4Reader(path)
    frames = list(r)
    return r.sequence_header, frames, r.truncated


# ---------------------------------------------------------------------------------------------
# Writing files.


class Fmp4Writer:
    """Record a SNIS stream as fragmented MP4, one fragment per frame, flushed after each.

    `fsync=True` also forces every fragment to disk. After a crash, `Fmp4Writer.resume(path)`
    cuts the file after its last complete fragment and continues sequence numbers and the
    decode timeline.
    """

    def __init__(self, path: str | os.PathLike, seq: SequenceHeader, *, colorspace: str = "bt709",
                 timescale: int | None = None, fsync: bool = False) -> None:
        self.path = path
        self.seq = seq
        self.fsync = fsync
        self.info = make_init_info(seq, timescale=timescale, colorspace=colorspace)
        self._f: BinaryIO | None = open(path, "wb")
        self.sequence_number = 0  # of the last fragment written
        self.frames_written = 0
        self._next_dts = 0  # earliest decode time the next frame may take
        self._last_dts: int | None = None
        self._offset: int | None = 0  # added to pts-derived ticks (None: decide at next write)
        self._put(_init_bytes(self.info))

    @classmethod
    def resume(cls, path: str | os.PathLike, seq: SequenceHeader | None = None, *, fsync: bool = False,
               colorspace: str = "bt709", timescale: int | None = None) -> "Fmp4Writer":
        """Re-open a recording after a crash or restart.

        Everything after the last complete fragment is cut off. The next frame gets the next
        sequence number, and its decode time continues the file's timeline: if its pts lies
        before the end of the recording (a restarted encoder counting from 0), all following
        frames are shifted to start right after it. A missing or partial init segment is
        rewritten from `seq` (required then). With `seq` given, it must match the file's.
        """
        if not os.path.exists(path) or os.path.getsize(path) == 0:
            if seq is None:
                raise ContainerError(f"{path}: nothing to resume and no sequence header given")
            return cls(path, seq, colorspace=colorspace, timescale=timescale, fsync=fsync)
        reader = Fmp4Reader(path)
        last: Fragment | None = None
        frames = 0
        for last in reader.fragments():
            frames += 1
        info = reader.init
        if info is None:
            if seq is None:
                raise ContainerError(f"{path}: init segment incomplete and no sequence header given", 0, "moov")
            return cls(path, seq, colorspace=colorspace, timescale=timescale, fsync=fsync)
        if seq is not None and seq.to_bytes() != info.seq_bytes:
            raise ContainerError(f"{path}: recording has a different sequence header", 0, "snsC")
        self = cls.__new__(cls)
        self.path = path
        self.seq = info.sequence_header
        self.fsync = fsync
        self.info = info
        self.sequence_number = last.sequence_number if last else 0
        self.frames_written = frames
        self._last_dts = last.samples[0].decode_time if last else None
        self._next_dts = last.samples[0].decode_time + last.samples[0].duration if last else 0
        self._offset = None if last else 0
        if reader.valid_end < os.path.getsize(path):
            log.warning("%s: cutting %d bytes of an incomplete fragment at offset %d", path,
                        os.path.getsize(path) - reader.valid_end, reader.valid_end)
        f = open(path, "r+b")
        f.truncate(reader.valid_end)
        f.seek(reader.valid_end)
        self._f = f
        if fsync:
            os.fsync(f.fileno())
        return self

    def _put(self, data: bytes) -> None:
        assert self._f is not None
        self._f.write(data)
        self._f.flush()
        if self.fsync:
            os.fsync(self._f.fileno())

    def write(self, frame: EncodedFrame) -> None:
        if self._f is None:
            raise ContainerError(f"{self.path}: writer is closed")
        ticks = us_to_ticks(frame.pts_us, self.info.timescale)
        if self._offset is None:
            self._offset = max(0, self._next_dts - ticks)
        dts = ticks + self._offset
        if self._last_dts is not None and dts <= self._last_dts:
            raise ContainerError(f"frame {frame.index}: pts {frame.pts_us} us does not increase")
        samples = frame_samples(frame, dts, self.info.default_duration, self.info.tiers)
        self._put(_fragment_bytes(self.sequence_number + 1, samples, self.info.tracks))
        self.sequence_number += 1
        self.frames_written += 1
        self._last_dts = dts
        self._next_dts = dts + self.info.default_duration

    def close(self) -> None:
        if self._f is not None:
            self._f.flush()
            if self.fsync:
                os.fsync(self._f.fileno())
            self._f.close()
            self._f = None

    def __enter__(self) -> "Fmp4Writer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def extract_tiers(src_path: str | os.PathLike, dst_path: str | os.PathLike, k: int) -> int:
    """Copy `src_path` to `dst_path` keeping tiers < k: drops tracks and trafs, copies the tier
    payloads byte for byte. Returns the number of frames written. A truncated source gives a
    destination with its complete fragments."""
    if k < 1:
        raise ContainerError(f"tier count {k} must be at least 1")
    reader = Fmp4Reader(src_path)
    if reader.init is None:
        raise ContainerError(f"{src_path}: no complete init segment", 0, "moov")
    info = reader.init
    n = min(k, info.tiers)
    out_info = InitInfo(info.seq_bytes, info.width, info.height, info.timescale, info.default_duration,
                        info.nclx, info.full_range, info.tracks[:n])
    count = 0
    with open(dst_path, "wb") as out:
        out.write(_init_bytes(out_info))
        for frag in reader.fragments():
            out.write(_fragment_bytes(frag.sequence_number, frag.samples[:n], out_info.tracks))
            count += 1
    return count
