"""Muxing: the init segment and the one-frame fragments of a SNIS fMP4 stream, as bytes."""

from __future__ import annotations

import struct
from collections.abc import Sequence

from ..codec.bitstream import EncodedFrame, SequenceHeader
from ..errors import ContainerError
from .boxes import box, full_box
from .layout import (
    BASE_ENTRY,
    COLORSPACES,
    CONFIG_BOX,
    CONFIG_VERSION,
    ENHANCEMENT_ENTRY,
    NON_SYNC_FLAGS,
    TFHD_BASE_IS_MOOF,
    TRUN_DATA_OFFSET,
    TRUN_DURATION,
    TRUN_FLAGS,
    TRUN_SIZE,
    InitInfo,
    Sample,
    frame_duration,
    sample_flags,
    timescale_for,
    us_to_ticks,
)

_UNITY_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def _colr(nclx: tuple[int, int, int], full_range: bool) -> bytes:
    return box(b"colr", b"nclx", struct.pack(">HHHB", *nclx, 0x80 if full_range else 0))


def _sample_entry(info: InitInfo, tier: int) -> bytes:
    name = b"SNIS-896"
    compressor = bytes((len(name),)) + name.ljust(31, b"\0")
    fields = (
        b"\0" * 6
        + struct.pack(">H", 1)
        + b"\0" * 16
        + struct.pack(">HHIIIH", info.width, info.height, 0x00480000, 0x00480000, 0, 1)
        + compressor
        + struct.pack(">Hh", 0x0018, -1)
    )
    config = box(CONFIG_BOX, bytes((CONFIG_VERSION, tier)), info.seq_bytes)
    return box(BASE_ENTRY if tier == 0 else ENHANCEMENT_ENTRY, fields, config, _colr(info.nclx, info.full_range))


def _trak(info: InitInfo, tier: int) -> bytes:
    tid = info.tracks[tier]
    tkhd = full_box(
        b"tkhd",
        0,
        0x000003,
        struct.pack(">IIIII", 0, 0, tid, 0, 0),
        b"\0" * 8,
        struct.pack(">hhhH", 0, 0, 0, 0),
        _UNITY_MATRIX,
        struct.pack(">II", info.width << 16, info.height << 16),
    )
    tref = box(b"tref", box(b"sbas", struct.pack(">I", info.tracks[0]))) if tier else b""
    mdhd = full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, info.timescale, 0, 0x55C4, 0))  # 'und'
    hdlr = full_box(b"hdlr", 0, 0, struct.pack(">I4s12x", 0, b"vide"), b"SNIS tier %d\0" % tier)
    vmhd = full_box(b"vmhd", 0, 1, b"\0" * 8)
    dinf = box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1)))
    stbl = box(
        b"stbl",
        full_box(b"stsd", 0, 0, struct.pack(">I", 1), _sample_entry(info, tier)),
        full_box(b"stts", 0, 0, struct.pack(">I", 0)),
        full_box(b"stsc", 0, 0, struct.pack(">I", 0)),
        full_box(b"stsz", 0, 0, struct.pack(">II", 0, 0)),
        full_box(b"stco", 0, 0, struct.pack(">I", 0)),
    )
    mdia = box(b"mdia", mdhd, hdlr, box(b"minf", vmhd, dinf, stbl))
    return box(b"trak", tkhd, tref, mdia)


def init_segment(info: InitInfo) -> bytes:
    """`ftyp` + `moov` declaring the tracks of `info` (its inverse is demux.parse_init)."""
    ftyp = box(b"ftyp", b"iso6", struct.pack(">I", 0), b"iso6isommp41")
    mvhd = full_box(
        b"mvhd",
        0,
        0,
        struct.pack(">IIIIIH", 0, 0, 1000, 0, 0x00010000, 0x0100),
        b"\0" * 10,
        _UNITY_MATRIX,
        b"\0" * 24,
        struct.pack(">I", max(info.tracks) + 1),
    )
    trex = b"".join(
        full_box(b"trex", 0, 0, struct.pack(">IIIII", tid, 1, info.default_duration, 0, NON_SYNC_FLAGS))
        for tid in info.tracks
    )
    moov = box(b"moov", mvhd, *(_trak(info, t) for t in range(len(info.tracks))), box(b"mvex", trex))
    return ftyp + moov


def make_init_info(
    seq: SequenceHeader, *, tiers: int | None = None, timescale: int | None = None, colorspace: str = "bt709"
) -> InitInfo:
    """The InitInfo of a stream of `seq` with `tiers` tracks (default: all tiers of `seq`)."""
    if colorspace not in COLORSPACES:
        raise ContainerError(f"unknown colorspace {colorspace!r}; expected one of {', '.join(COLORSPACES)}")
    ts = timescale or timescale_for(seq)
    if not 0 < ts < 1 << 32:
        raise ContainerError(f"timescale {ts} out of range")
    n = seq.tiers if tiers is None else tiers
    if not 1 <= n <= seq.tiers:
        raise ContainerError(f"tier count {n} out of range 1..{seq.tiers}")
    return InitInfo(
        seq.to_bytes(),
        seq.width,
        seq.height,
        ts,
        frame_duration(seq, ts),
        COLORSPACES[colorspace],
        False,
        tuple(range(1, n + 1)),
    )


def build_init_segment(
    seq: SequenceHeader, *, tiers: int | None = None, timescale: int | None = None, colorspace: str = "bt709"
) -> bytes:
    """`ftyp` + `moov` for a stream with `tiers` tracks (default: all tiers of `seq`).

    `colorspace` is "bt709", "bt601" (525-line) or "bt601-625", all limited range.
    """
    return init_segment(make_init_info(seq, tiers=tiers, timescale=timescale, colorspace=colorspace))


def fragment_bytes(sequence_number: int, samples: Sequence[Sample], tracks: tuple[int, ...]) -> bytes:
    """One `moof` + `mdat` holding `samples`, each in the track `tracks[sample.tier]`."""
    if not 0 <= sequence_number < 1 << 32:
        raise ContainerError(f"sequence number {sequence_number} out of range")
    mfhd = full_box(b"mfhd", 0, 0, struct.pack(">I", sequence_number))
    # Every traf has a fixed size (76 bytes), so the moof size is known before writing offsets.
    moof_size = 8 + len(mfhd) + 76 * len(samples)
    offset = moof_size + 8  # data offsets are relative to the moof (default-base-is-moof)
    trafs = []
    for s in samples:
        trafs.append(
            box(
                b"traf",
                full_box(b"tfhd", 0, TFHD_BASE_IS_MOOF, struct.pack(">I", tracks[s.tier])),
                full_box(b"tfdt", 1, 0, struct.pack(">Q", s.decode_time)),
                full_box(
                    b"trun",
                    0,
                    TRUN_DATA_OFFSET | TRUN_DURATION | TRUN_SIZE | TRUN_FLAGS,
                    struct.pack(">IiIII", 1, offset, s.duration, len(s.data), s.flags),
                ),
            )
        )
        offset += len(s.data)
    moof = box(b"moof", mfhd, *trafs)
    assert len(moof) == moof_size
    mdat_size = offset - moof_size
    if mdat_size > 0xFFFFFFFF:
        raise ContainerError(f"fragment of {mdat_size} bytes is too large")
    return b"".join((moof, struct.pack(">I4s", mdat_size, b"mdat"), *(s.data for s in samples)))


def frame_samples(frame: EncodedFrame, decode_time: int, duration: int, tiers: int | None = None) -> list[Sample]:
    """The samples of every tier of `frame` (at most `tiers` of them)."""
    if not frame.tiers:
        raise ContainerError(f"frame {frame.index} has no tiers")
    if tiers is not None and len(frame.tiers) > tiers:
        raise ContainerError(f"frame {frame.index} has {len(frame.tiers)} tiers, the stream declares {tiers}")
    flags = sample_flags(frame.keyframe)
    return [Sample(t, decode_time, duration, flags, bytes(c)) for t, c in enumerate(frame.tiers)]


def build_fragment(
    frame: EncodedFrame,
    sequence_number: int,
    seq: SequenceHeader,
    *,
    decode_time: int | None = None,
    duration: int | None = None,
    timescale: int | None = None,
) -> bytes:
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
    return fragment_bytes(sequence_number, samples, tuple(range(1, seq.tiers + 1)))
