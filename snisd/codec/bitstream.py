"""SNIS bitstream framing: sequence header, per-tier chunk headers and the elementary-stream file.

The layout is specified byte by byte in docs/BITSTREAM.md; this module is its only implementation.
Entropy-coded payloads are opaque here (the native core codes them, see native/entropy.c).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from ..errors import BitstreamError

BITSTREAM_VERSION = 7
SEQ_MAGIC = b"SNIS"
ES_MAGIC = b"SNISES\r\n"
MAX_TIERS = 8
MAX_DIMENSION = 8192

FRAME_I = 0
FRAME_P = 1

_SEQ = struct.Struct(">4sBBHHIIBBBHH16s8s")


@dataclass(frozen=True)
class SequenceHeader:
    """What a decoder must know before the first frame: geometry, rate, tiers and the model."""

    width: int
    height: int
    fps_num: int = 30
    fps_den: int = 1
    tiers: int = 3
    tier_step_log2: int = 8  # step ratio between tiers, in 1/8 octaves (8 = each tier halves the step)
    keyframe_interval: int = 0  # informative: frames between periodic keyframes (0 = on request only)
    switch_interval: int = 0  # informative: frames between key pictures (switch points; 0 = keyframes only)
    key_step_log2: int = 8  # the tier step ratio at keyframes and key pictures, 1/8 octaves
    model_id: str = "snis896"
    model_hash: bytes = field(default=b"\0" * 8)
    version: int = BITSTREAM_VERSION

    def __post_init__(self) -> None:
        if not (16 <= self.width <= MAX_DIMENSION and 16 <= self.height <= MAX_DIMENSION):
            raise BitstreamError(f"frame size {self.width}x{self.height} out of range 16..{MAX_DIMENSION}")
        if self.width % 2 or self.height % 2:
            raise BitstreamError(f"frame size {self.width}x{self.height} must be even (4:2:0)")
        if not 1 <= self.tiers <= MAX_TIERS:
            raise BitstreamError(f"tier count {self.tiers} out of range 1..{MAX_TIERS}")
        if self.fps_num <= 0 or self.fps_den <= 0:
            raise BitstreamError(f"frame rate {self.fps_num}/{self.fps_den} is not positive")
        if not (0 <= self.tier_step_log2 <= 64 and 0 <= self.key_step_log2 <= 64):
            raise BitstreamError(
                f"tier step ratios {self.tier_step_log2}/{self.key_step_log2} out of range 0..64 (1/8 octaves)"
            )
        if not (0 <= self.keyframe_interval <= 0xFFFF and 0 <= self.switch_interval <= 0xFFFF):
            raise BitstreamError(f"intervals {self.keyframe_interval}/{self.switch_interval} out of range 0..65535")
        if len(self.model_hash) != 8:
            raise BitstreamError(f"model hash must be 8 bytes, got {len(self.model_hash)}")

    @property
    def fps(self) -> float:
        return self.fps_num / self.fps_den

    def to_bytes(self) -> bytes:
        mid = self.model_id.encode("ascii")
        if len(mid) > 16:
            raise BitstreamError(f"model id {self.model_id!r} longer than 16 bytes")
        return _SEQ.pack(
            SEQ_MAGIC,
            self.version,
            _SEQ.size,
            self.width,
            self.height,
            self.fps_num,
            self.fps_den,
            self.tiers,
            self.tier_step_log2,
            self.key_step_log2,
            self.keyframe_interval,
            self.switch_interval,
            mid.ljust(16, b"\0"),
            self.model_hash,
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> SequenceHeader:
        if len(data) < 6:
            raise BitstreamError(f"sequence header truncated: {len(data)} bytes", 0)
        if data[:4] != SEQ_MAGIC:
            raise BitstreamError(f"not a SNIS sequence header: magic {bytes(data[:4])!r}", 0)
        if data[4] != BITSTREAM_VERSION:
            raise BitstreamError(f"unsupported bitstream version {data[4]} (this decoder reads {BITSTREAM_VERSION})", 4)
        if len(data) < _SEQ.size or data[5] != _SEQ.size:
            raise BitstreamError(f"sequence header of {len(data)} bytes, size field {data[5]}, expected {_SEQ.size}", 5)
        (_, ver, _, w, h, fn, fd, tiers, ratio, kratio, kint, sint, mid, mhash) = _SEQ.unpack_from(data)
        try:
            model_id = mid.rstrip(b"\0").decode("ascii")
        except UnicodeDecodeError:
            raise BitstreamError(f"model id {mid!r} is not ASCII", 24) from None
        return cls(w, h, fn, fd, tiers, ratio, kint, sint, kratio, model_id, bytes(mhash), ver)


# ---------------------------------------------------------------------------------------------
# Tier chunks.  Tier 0 starts with a 4-byte frame header; tier k >= 1 with one byte.


@dataclass(frozen=True)
class FrameHeader:
    """Header at the start of the tier-0 chunk.

    A predicted frame with `switch_point` set is a key picture: it predicts from the base tier
    of the last keyframe or key picture, which is where a decoder may add tiers or resume after
    a loss. `key_index` counts keyframes and key pictures (mod 16), so a decoder can tell that
    it missed one.
    """

    frame_type: int  # FRAME_I or FRAME_P
    switch_point: bool
    frame_no: int  # 16-bit wrapping frame counter
    qp: int  # quantizer index of the top tier for this frame
    key_index: int = 0  # 4-bit counter of keyframes and key pictures
    coarse_key: bool = False  # key picture whose tiers use the normal step ratio, not the key ratio

    SIZE = 4

    @property
    def keyframe(self) -> bool:
        return self.frame_type == FRAME_I

    @property
    def key_picture(self) -> bool:
        """A keyframe or key picture: references only what every decoder has."""
        return self.frame_type == FRAME_I or self.switch_point

    def to_bytes(self) -> bytes:
        flags = (
            (self.frame_type & 3)
            | (4 if self.switch_point else 0)
            | ((self.key_index & 15) << 3)
            | (0x80 if self.coarse_key else 0)
        )
        return bytes((flags, (self.frame_no >> 8) & 0xFF, self.frame_no & 0xFF, self.qp))

    @classmethod
    def from_bytes(cls, data: bytes) -> FrameHeader:
        if len(data) < cls.SIZE:
            raise BitstreamError(f"tier-0 chunk truncated: {len(data)} bytes, frame header needs {cls.SIZE}", 0)
        flags = data[0]
        if (flags & 3) > FRAME_P or (flags & 0x80 and (flags & 7) != (FRAME_P | 4)):
            raise BitstreamError(f"bad frame header flags 0x{flags:02x}", 0)
        if data[3] > 63:
            raise BitstreamError(f"frame qp {data[3]} out of range 0..63", 3)
        return cls(flags & 3, bool(flags & 4), (data[1] << 8) | data[2], data[3], (flags >> 3) & 15, bool(flags & 0x80))


def enhancement_header(tier: int, frame_no: int) -> bytes:
    """One byte: tier index (high nibble) and the low 4 bits of the frame counter."""
    return bytes(((tier & 0xF) << 4 | (frame_no & 0xF),))


def tier_payload(chunk: bytes, tier: int, frame_no: int) -> bytes:
    """The entropy-coded payload of a tier chunk after its header (checked for tiers >= 1)."""
    if tier == 0:
        FrameHeader.from_bytes(chunk)
        return bytes(chunk[FrameHeader.SIZE :])
    check_enhancement_header(chunk, tier, frame_no)
    return bytes(chunk[1:])


def check_enhancement_header(chunk: bytes, tier: int, frame_no: int) -> None:
    if len(chunk) < 1:
        raise BitstreamError(f"tier-{tier} chunk is empty", 0)
    if chunk[0] >> 4 != tier or chunk[0] & 0xF != frame_no & 0xF:
        raise BitstreamError(
            f"tier-{tier} chunk of frame {frame_no} has header 0x{chunk[0]:02x} "
            f"(tier {chunk[0] >> 4}, frame low bits {chunk[0] & 0xF})",
            0,
        )


@dataclass(frozen=True)
class EncodedFrame:
    """One coded frame: a chunk per tier, tier 0 first. Any prefix of `tiers` decodes."""

    index: int
    pts_us: int
    keyframe: bool
    switch_point: bool
    tiers: tuple[bytes, ...]

    @property
    def size(self) -> int:
        return sum(len(t) for t in self.tiers)

    def thinned(self, k: int) -> EncodedFrame:
        """The same frame keeping only tiers < k (a byte operation)."""
        return EncodedFrame(self.index, self.pts_us, self.keyframe, self.switch_point, self.tiers[:k])


# ---------------------------------------------------------------------------------------------
# Elementary-stream file: magic, sequence header, then one record per frame with a CRC-32.

_REC = struct.Struct(">2sBqI")  # b"FR", tier count, pts_us, crc32 of the chunks


def write_es_header(out: BinaryIO, seq: SequenceHeader) -> None:
    sh = seq.to_bytes()
    out.write(ES_MAGIC + struct.pack(">H", len(sh)) + sh)


def write_es_frame(out: BinaryIO, frame: EncodedFrame) -> None:
    sizes = b"".join(struct.pack(">I", len(t)) for t in frame.tiers)
    body = b"".join(frame.tiers)
    out.write(_REC.pack(b"FR", len(frame.tiers), frame.pts_us, zlib.crc32(body)) + sizes + body)


def read_es(inp: BinaryIO, max_frame_bytes: int = 64 << 20) -> tuple[SequenceHeader, Iterator[EncodedFrame]]:
    """Read an elementary-stream file: the sequence header now, frames lazily.

    A truncated last record ends the iteration with a BitstreamError naming its offset;
    every complete record before it has been yielded.
    """
    head = inp.read(len(ES_MAGIC) + 2)
    if len(head) < len(ES_MAGIC) + 2 or head[: len(ES_MAGIC)] != ES_MAGIC:
        raise BitstreamError(f"not a SNIS elementary stream: starts with {head[:8]!r}", 0)
    (n,) = struct.unpack(">H", head[len(ES_MAGIC) :])
    sh = inp.read(n)
    if len(sh) != n:
        raise BitstreamError(f"sequence header truncated: {len(sh)} of {n} bytes", len(head))
    seq = SequenceHeader.from_bytes(sh)

    def frames() -> Iterator[EncodedFrame]:
        offset = len(head) + n
        index = 0
        while True:
            rec = inp.read(_REC.size)
            if not rec:
                return
            if len(rec) < _REC.size:
                raise BitstreamError(f"frame record {index} truncated in its header", offset)
            tag, ntiers, pts, crc = _REC.unpack(rec)
            if tag != b"FR" or not 1 <= ntiers <= seq.tiers:
                raise BitstreamError(f"frame record {index}: bad tag {tag!r} or tier count {ntiers}", offset)
            raw = inp.read(4 * ntiers)
            if len(raw) < 4 * ntiers:
                raise BitstreamError(f"frame record {index} truncated in its size table", offset)
            sizes = struct.unpack(f">{ntiers}I", raw)
            if sum(sizes) > max_frame_bytes:
                raise BitstreamError(f"frame record {index} claims {sum(sizes)} bytes", offset)
            body = inp.read(sum(sizes))
            if len(body) < sum(sizes):
                raise BitstreamError(f"frame record {index} truncated: {len(body)} of {sum(sizes)} bytes", offset)
            if zlib.crc32(body) != crc:
                raise BitstreamError(f"frame record {index}: CRC mismatch", offset)
            chunks, pos = [], 0
            for s in sizes:
                chunks.append(body[pos : pos + s])
                pos += s
            fh = FrameHeader.from_bytes(chunks[0])
            yield EncodedFrame(index, pts, fh.frame_type == FRAME_I, fh.switch_point, tuple(chunks))
            offset += _REC.size + 4 * ntiers + len(body)
            index += 1

    return seq, frames()
