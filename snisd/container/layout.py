"""The SNIS fMP4 layout (ISO/IEC 14496-12): its constants and what an init segment and a fragment say.

One video track per tier. Track 1 carries tier 0 with sample entry `snis`; track t+1 carries
tier t with sample entry `snie` and a `sbas` reference to track 1. Every sample entry holds a
`snsC` box (version, tier index, SNIS sequence header) and a `colr` box (nclx). The init
segment declares empty sample tables and `trex` defaults; then each frame is one fragment:
`moof` (`mfhd` + one `traf` per tier present) and one `mdat` with the tier chunks back to back,
tier 0 first. Keeping tiers < k drops whole tracks and trafs. docs/CONTAINER.md has the details.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..codec.bitstream import SequenceHeader

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
NON_SYNC_BIT = 0x00010000


# tfhd and trun flags (ISO/IEC 14496-12 8.8.7, 8.8.8).
TFHD_BASE_OFFSET = 0x000001
TFHD_DESC_INDEX = 0x000002
TFHD_DURATION = 0x000008
TFHD_SIZE = 0x000010
TFHD_FLAGS = 0x000020
TFHD_BASE_IS_MOOF = 0x020000

TRUN_DATA_OFFSET = 0x001
TRUN_FIRST_FLAGS = 0x004
TRUN_DURATION = 0x100
TRUN_SIZE = 0x200
TRUN_FLAGS = 0x400
TRUN_CTO = 0x800


def sample_flags(keyframe: bool) -> int:
    """The sample flags of a frame's samples: sync for a keyframe, non-sync otherwise."""
    return SYNC_FLAGS if keyframe else NON_SYNC_FLAGS


def timescale_for(seq: SequenceHeader) -> int:
    """90000 when a frame lasts a whole number of its ticks, else the smallest multiple of
    the frame-rate numerator not below 90000 (so the nominal frame duration is exact)."""
    if (DEFAULT_TIMESCALE * seq.fps_den) % seq.fps_num == 0:
        return DEFAULT_TIMESCALE
    return seq.fps_num * -(-DEFAULT_TIMESCALE // seq.fps_num)


def frame_duration(seq: SequenceHeader, timescale: int) -> int:
    """The nominal duration of one frame of `seq`, in `timescale` ticks (at least 1)."""
    return max(1, (timescale * seq.fps_den + seq.fps_num // 2) // seq.fps_num)


def us_to_ticks(pts_us: int, timescale: int) -> int:
    return (pts_us * timescale + 500_000) // 1_000_000


def ticks_to_us(ticks: int, timescale: int) -> int:
    return (ticks * 1_000_000 + timescale // 2) // timescale


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
        return "nclx:{}/{}/{}".format(*self.nclx)


@dataclass(frozen=True)
class Sample:
    """One tier of one frame as stored in a fragment."""

    tier: int
    decode_time: int
    duration: int
    flags: int
    data: bytes

    @property
    def is_sync(self) -> bool:
        """True for a sync sample (a keyframe's tier): its sample_is_non_sync_sample bit is clear."""
        return not self.flags & NON_SYNC_BIT


@dataclass(frozen=True)
class Fragment:
    """One parsed moof+mdat pair; `end` is the absolute offset just after the mdat."""

    sequence_number: int
    samples: tuple[Sample, ...]  # tier 0 first, a contiguous prefix of the tiers
    start: int
    end: int
