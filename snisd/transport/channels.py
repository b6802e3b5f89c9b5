"""Data-channel framing: fMP4 pieces cut into messages of at most 16 KiB, and put back together.

The byte layout is specified in docs/TRANSPORT.md ("Message framing"); this module is its only
implementation. Every message starts with a 14-byte header:

    offset size  field
    0      1     version (high nibble, 1) | kind (low nibble: 0 init segment, 1 fragment)
    1      1     low nibble: tier the payload belongs to (0 for the init segment);
                 high nibble: how many tiers the sender sends for this frame (0: not said)
    2      4     fragment sequence number (mfhd sequence_number; 0 for the init segment)
    6      2     part index, 0-based
    8      2     part count, >= 1
    10     4     sender clock when the piece was handed to the channel, ms modulo 2**32

followed by up to MAX_MESSAGE - HEADER.size bytes of the piece. A piece is the concatenation of
the payloads of parts 0..count-1. Also here: the channel labels and the per-tier fragments (a
`moof`+`mdat` that carries one tier's sample in that tier's track), built and parsed with the
container package's own box code.
"""

from __future__ import annotations

import dataclasses
import struct
import time
from dataclasses import dataclass

from ..codec.bitstream import EncodedFrame
from ..container import NON_SYNC_FLAGS, SYNC_FLAGS, Fmp4StreamParser, InitInfo, Sample, fragment_bytes, parse_fragment
from ..container.boxes import parse_header
from ..errors import ContainerError
from .errors import TransportError

VERSION = 1
KIND_INIT = 0
KIND_FRAGMENT = 1
MAX_MESSAGE = 16 * 1024
HEADER = struct.Struct(">BBIHHI")
MAX_PAYLOAD = MAX_MESSAGE - HEADER.size
MAX_PARTS = 0xFFFF

CONTROL_LABEL = "snis-control"


def tier_label(tier: int) -> str:
    """Data-channel label of a tier: snis-t0 (reliable, ordered), snis-t1, ... (partially reliable)."""
    return f"snis-t{tier}"


def label_tier(label: str) -> int | None:
    """The tier of a data-channel label, or None when it is not a tier channel."""
    if label.startswith("snis-t") and label[6:].isdigit():
        return int(label[6:])
    return None


def clock_ms() -> int:
    """The sender clock carried in message headers (monotonic, ms, wraps at 2**32)."""
    return int(time.monotonic() * 1000) & 0xFFFFFFFF


@dataclass(frozen=True)
class Header:
    kind: int
    tier: int
    sequence: int
    part: int
    count: int
    sent_ms: int
    frame_tiers: int = 0  # tiers sent for this frame (0: not said)


def split(
    piece: bytes,
    kind: int,
    tier: int,
    sequence: int,
    sent_ms: int | None = None,
    max_message: int = MAX_MESSAGE,
    frame_tiers: int = 0,
) -> list[bytes]:
    """Cut one init segment or fragment into framed messages of at most `max_message` bytes."""
    if not (0 <= tier < 16 and 0 <= frame_tiers < 16):
        raise TransportError(f"tier {tier} / tier count {frame_tiers} do not fit the header")
    room = max_message - HEADER.size
    if room <= 0:
        raise TransportError(f"message size {max_message} leaves no room after the {HEADER.size}-byte header")
    count = max(1, -(-len(piece) // room))
    if count > MAX_PARTS:
        raise TransportError(f"piece of {len(piece)} bytes needs {count} messages (at most {MAX_PARTS})")
    ts = clock_ms() if sent_ms is None else sent_ms & 0xFFFFFFFF
    mv = memoryview(piece)
    return [
        HEADER.pack((VERSION << 4) | kind, frame_tiers << 4 | tier, sequence, i, count, ts)
        + bytes(mv[i * room : (i + 1) * room])
        for i in range(count)
    ]


def restamp(message: bytes, sent_ms: int) -> bytes:
    """The message with its sender-clock field set to `sent_ms` (mod 2^32): the pacer stamps a
    message when it really leaves, so that time spent waiting in the sender is not path delay."""
    if len(message) < HEADER.size:
        raise TransportError(f"message of {len(message)} bytes is shorter than the {HEADER.size}-byte header")
    return message[: HEADER.size - 4] + struct.pack(">I", sent_ms & 0xFFFFFFFF) + message[HEADER.size :]


def parse_header_bytes(message: bytes) -> Header:
    if len(message) < HEADER.size:
        raise TransportError(f"message of {len(message)} bytes is shorter than the {HEADER.size}-byte header")
    vk, tier, seq, part, count, ts = HEADER.unpack_from(message)
    if vk >> 4 != VERSION:
        raise TransportError(f"message framing version {vk >> 4}, this receiver reads {VERSION}")
    kind = vk & 0xF
    if kind not in (KIND_INIT, KIND_FRAGMENT):
        raise TransportError(f"unknown message kind {kind}")
    if count == 0 or part >= count:
        raise TransportError(f"message part {part} of {count}")
    return Header(kind, tier & 0xF, seq, part, count, ts, tier >> 4)


class Reassembler:
    """Collects the parts of pieces from one channel and returns each piece once it is complete.

    Works for ordered and unordered channels. Incomplete pieces are kept for at most
    `max_pending` distinct pieces (the oldest sequence numbers are forgotten first), so a lossy
    partially reliable channel cannot make it grow.
    """

    def __init__(self, max_pending: int = 16, max_piece: int = 8 << 20) -> None:
        self.max_pending = max_pending
        self.max_piece = max_piece
        self._pending: dict[tuple[int, int], tuple[Header, list[bytes | None], int]] = {}
        self.abandoned = 0

    def add(self, message: bytes) -> tuple[Header, bytes] | None:
        """Feed one message; returns (header of the first part, piece) when it completes a piece."""
        h = parse_header_bytes(message)
        payload = message[HEADER.size :]
        if h.count == 1:
            return h, payload
        if h.count * MAX_PAYLOAD > self.max_piece + MAX_PAYLOAD:
            raise TransportError(f"piece announced as {h.count} parts exceeds {self.max_piece} bytes")
        key = (h.kind, h.sequence)
        entry = self._pending.get(key)
        if entry is None:
            while len(self._pending) >= self.max_pending:
                del self._pending[min(self._pending, key=lambda k: k[1])]
                self.abandoned += 1
            entry = (h, [None] * h.count, 0)
        first, parts, have = entry
        if first.count != h.count:
            raise TransportError(f"piece {h.sequence}: part count changed from {first.count} to {h.count}")
        if parts[h.part] is None:
            parts[h.part] = payload
            have += 1
        if h.part == 0:
            first = h
        if have == h.count:
            self._pending.pop(key, None)
            return first, b"".join(parts)  # type: ignore[arg-type]
        self._pending[key] = (first, parts, have)
        return None

    def forget_before(self, sequence: int) -> None:
        """Drop incomplete pieces older than `sequence` (they can no longer be used)."""
        for key in [k for k in self._pending if k[1] < sequence]:
            del self._pending[key]
            self.abandoned += 1


# ---------------------------------------------------------------------------------------------
# Per-tier fragments.


def tier_fragment(frame: EncodedFrame, tier: int, sequence: int, info: InitInfo, decode_time: int) -> bytes:
    """A `moof`+`mdat` holding only `tier` of `frame`, in that tier's track of `info`."""
    flags = SYNC_FLAGS if frame.keyframe else NON_SYNC_FLAGS
    sample = Sample(tier, decode_time, info.default_duration, flags, bytes(frame.tiers[tier]))
    return fragment_bytes(sequence, [sample], info.tracks)


def single_track_info(info: InitInfo, tier: int) -> InitInfo:
    """`info` seen as if `tier`'s track were the only one (lets parse_fragment read a tier fragment)."""
    if not 0 <= tier < len(info.tracks):
        raise TransportError(f"tier {tier} is not in the stream (it has {len(info.tracks)} tiers)")
    return dataclasses.replace(info, tracks=(info.tracks[tier],))


def parse_tier_fragment(data: bytes, info: InitInfo, tier: int) -> tuple[int, Sample]:
    """Parse a fragment carrying exactly one sample of `tier`: returns (sequence number, sample)."""
    try:
        moof = parse_header(data, 0, len(data))
        if moof is None or moof.type != "moof" or moof.end > len(data):
            raise TransportError(f"tier-{tier} fragment does not start with a complete 'moof'")
        mdat = parse_header(data, moof.end, len(data))
        if mdat is None or mdat.type != "mdat" or mdat.end != len(data):
            raise TransportError(f"tier-{tier} fragment: 'moof' not followed by exactly one 'mdat'")
        frag = parse_fragment(data, moof, mdat, single_track_info(info, tier))
    except ContainerError as exc:
        raise TransportError(f"tier-{tier} fragment is malformed: {exc}") from None
    if len(frag.samples) != 1:
        raise TransportError(f"tier-{tier} fragment carries {len(frag.samples)} samples, expected 1")
    s = frag.samples[0]
    return frag.sequence_number, dataclasses.replace(s, tier=tier)


def parse_init_segment(data: bytes) -> InitInfo:
    """Parse a complete init segment (`ftyp` + `moov`)."""
    p = Fmp4StreamParser(init_only=True)
    try:
        p.feed_fragments(data)
    except ContainerError as exc:
        raise TransportError(f"init segment is malformed: {exc}") from None
    if p.init is None:
        raise TransportError(f"init segment of {len(data)} bytes is incomplete")
    return p.init
