"""Demuxing complete boxes: a `moov` into an InitInfo, a `moof` + `mdat` into a Fragment, samples into frames.

Every size and offset is checked before it is used; anything unexpected raises ContainerError
naming the absolute byte offset and the box type. The incremental driver is streaming.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

from ..codec.bitstream import MAX_TIERS, EncodedFrame, FrameHeader, SequenceHeader
from ..errors import BitstreamError, ContainerError
from .boxes import BoxHeader, Cursor, check_nesting, children_by_type, parse_header
from .layout import (
    COLORSPACES,
    CONFIG_VERSION,
    NON_SYNC_FLAGS,
    TFHD_BASE_IS_MOOF,
    TFHD_BASE_OFFSET,
    TFHD_DESC_INDEX,
    TFHD_DURATION,
    TFHD_FLAGS,
    TFHD_SIZE,
    TRUN_CTO,
    TRUN_DATA_OFFSET,
    TRUN_DURATION,
    TRUN_FIRST_FLAGS,
    TRUN_FLAGS,
    TRUN_SIZE,
    Fragment,
    InitInfo,
    Sample,
    ticks_to_us,
)


def parse_ftyp(buf, hdr: BoxHeader, base: int) -> None:
    """Check a complete `ftyp` box: major brand, minor version, whole compatible brands."""
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
        raise ContainerError(
            f"sample entry needs exactly one 'snsC' box, found {len(cfg or [])}", base + hdr.start, hdr.type
        )
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
        raise ContainerError(
            f"{parent.type!r} must hold exactly one {kind!r} box, found {len(found)}", base + parent.start, parent.type
        )
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
            raise ContainerError(
                f"track {tid}: sample entry {entry.type!r} is not a SNIS stream", base + entry.start, entry.type
            )
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
        raise ContainerError(
            f"tracks carry tiers {sorted(by_tier)}, not 0..{len(by_tier) - 1}", base + moov.start, "moov"
        )
    tid0, ts, seq_bytes, w, h, nclx, full = by_tier[0]
    tids = tuple(by_tier[t][0] for t in range(len(by_tier)))
    if len(set(tids)) != len(tids):
        raise ContainerError("duplicate track_ID", base + moov.start, "moov")
    for t, (_, ts_t, sb, *_rest) in by_tier.items():
        if ts_t != ts or sb != seq_bytes:
            raise ContainerError(
                f"tier-{t} track disagrees with tier 0 on timescale or sequence header", base + moov.start, "moov"
            )
    try:
        seq = SequenceHeader.from_bytes(seq_bytes)
    except BitstreamError as e:
        raise ContainerError(f"bad SNIS sequence header in 'snsC': {e}", base + moov.start, "snsC") from None
    if len(tids) > seq.tiers:
        raise ContainerError(
            f"{len(tids)} tier tracks but the sequence header declares {seq.tiers} tiers", base + moov.start, "moov"
        )
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
    spans: list[tuple[int, int]] = []
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
        data_base = (
            c.u64() - base
            if tf & TFHD_BASE_OFFSET
            else (moof.start if tf & TFHD_BASE_IS_MOOF or not spans else data_end)
        )
        if tf & TFHD_DESC_INDEX:
            c.u32()
        duration = c.u32() if tf & TFHD_DURATION else info.default_duration
        size = c.u32() if tf & TFHD_SIZE else 0
        flags = c.u32() if tf & TFHD_FLAGS else NON_SYNC_FLAGS
        c = Cursor(buf, _only(tk, "tfdt", traf, base), base=base)
        v, _ = c.full_header((0, 1))
        decode_time = c.u64() if v else c.u32()
        truns = tk.get("trun", [])
        if len(truns) != 1:
            raise ContainerError(f"'traf' must hold exactly one 'trun', found {len(truns)}", base + traf.start, "traf")
        c = Cursor(buf, truns[0], base=base)
        _, rf = c.full_header((0, 1))
        count = c.u32()
        if count == 0:
            continue  # this tier is absent from this frame
        if count != 1:
            raise c.error(f"'trun' with {count} samples; SNIS fragments carry one frame")
        data_offset = c.s32() if rf & TRUN_DATA_OFFSET else 0
        if rf & TRUN_FIRST_FLAGS:
            flags = c.u32()
        if rf & TRUN_DURATION:
            duration = c.u32()
        if rf & TRUN_SIZE:
            size = c.u32()
        if rf & TRUN_FLAGS:
            flags = c.u32()
        if rf & TRUN_CTO:
            c.u32()
        if c.remaining:
            raise c.error(f"{c.remaining} unexpected bytes after the 'trun' sample table")
        start = data_base + data_offset
        if start < payload_start or start + size > payload_end:
            raise ContainerError(
                f"track {tid} sample of {size} bytes at {base + start} lies outside the 'mdat' payload "
                f"{base + payload_start}..{base + payload_end}",
                base + truns[0].start,
                "trun",
            )
        data_end = start + size
        spans.append((start, data_end))
        with memoryview(buf) as mv:  # one copy of the payload, and no export left on a bytearray
            found[tier] = Sample(tier, decode_time, duration, flags, bytes(mv[start:data_end]))
    if 0 not in found:
        raise ContainerError(f"fragment {seqno} has no tier-0 sample", base + moof.start, "moof")
    if sorted(found) != list(range(len(found))):
        raise ContainerError(f"fragment {seqno} carries tiers {sorted(found)}, not a prefix", base + moof.start, "moof")
    spans.sort()
    if sum(e - s for s, e in spans) != payload_end - payload_start or any(a[1] > b[0] for a, b in pairwise(spans)):
        raise ContainerError(
            f"sample sizes {[e - s for s, e in spans]} do not tile the "
            f"{payload_end - payload_start}-byte 'mdat' payload",
            base + mdat.start,
            "mdat",
        )
    return Fragment(seqno, tuple(found[t] for t in range(len(found))), base + moof.start, base + mdat.end)


def frame_from_samples(samples: Sequence[Sample], timescale: int, index: int) -> EncodedFrame:
    """The EncodedFrame of a frame's samples (tier 0 first): timing and keyframe from the samples, the
    switch-point flag from the SNIS frame header of tier 0."""
    s0 = samples[0]
    try:
        switch_point = FrameHeader.from_bytes(s0.data).switch_point
    except BitstreamError:
        switch_point = False  # the container keeps the frame; the decoder reports the bad header
    return EncodedFrame(
        index, ticks_to_us(s0.decode_time, timescale), s0.is_sync, switch_point, tuple(s.data for s in samples)
    )


def fragment_to_frame(frag: Fragment, info: InitInfo, index: int) -> EncodedFrame:
    return frame_from_samples(frag.samples, info.timescale, index)
