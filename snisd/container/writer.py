"""Recording a SNIS stream as fragmented MP4, one flushed fragment per frame, resumable after a crash."""

from __future__ import annotations

import logging
import os
from typing import BinaryIO

from ..codec.bitstream import EncodedFrame, SequenceHeader
from ..errors import ContainerError
from .layout import Fragment, us_to_ticks
from .mux import fragment_bytes, frame_samples, init_segment, make_init_info
from .reader import Fmp4Reader

log = logging.getLogger("snisd.container")


class Fmp4Writer:
    """Record a SNIS stream as fragmented MP4, one fragment per frame, flushed after each.

    `fsync=True` also forces every fragment to disk. After a crash, `Fmp4Writer.resume(path)`
    cuts the file after its last complete fragment and continues sequence numbers and the
    decode timeline.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        seq: SequenceHeader,
        *,
        colorspace: str = "bt709",
        timescale: int | None = None,
        fsync: bool = False,
    ) -> None:
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
        self._put(init_segment(self.info))

    @classmethod
    def resume(
        cls,
        path: str | os.PathLike,
        seq: SequenceHeader | None = None,
        *,
        fsync: bool = False,
        colorspace: str = "bt709",
        timescale: int | None = None,
    ) -> Fmp4Writer:
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
        for frag in reader.fragments():
            last = frag
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
            log.warning(
                "%s: cutting %d bytes of an incomplete fragment at offset %d",
                path,
                os.path.getsize(path) - reader.valid_end,
                reader.valid_end,
            )
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
        self._put(fragment_bytes(self.sequence_number + 1, samples, self.info.tracks))
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

    def __enter__(self) -> Fmp4Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
