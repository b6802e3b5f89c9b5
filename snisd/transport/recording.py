"""A stream's recording on the receiver, with the limits that keep one publisher from filling
the disk: a maximum file size and a floor of free space on the recording's file system.

When a limit is reached the recording stops (the file stays valid up to its last fragment:
Fmp4Writer flushes per fragment), the reason is logged and kept in `stopped`, and the stream
goes on being decoded and shown.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass

from ..codec.bitstream import EncodedFrame, SequenceHeader

log = logging.getLogger("snisd.transport.recording")


@dataclass(frozen=True)
class RecordingLimits:
    max_bytes: int = 0  # per recording; 0: no limit
    min_free_bytes: int = 0  # free space to leave on the file system; 0: no floor


class Recorder:
    """Records one stream to `path` until closed or a limit is reached."""

    def __init__(
        self,
        path: str,
        seq: SequenceHeader,
        limits: RecordingLimits = RecordingLimits(),
        *,
        disk_free: Callable[[str], int] | None = None,
        label: str = "",
    ) -> None:
        from ..container import Fmp4Writer

        self.path = path
        self.limits = limits
        self.label = label or path
        self._disk_free = disk_free or (lambda p: shutil.disk_usage(p).free)
        self.frames = 0
        self.stopped: str | None = None
        self._writer: Fmp4Writer | None = None
        try:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            reason = self._limit_reached(0)
            if not reason:
                self._writer = Fmp4Writer(path, seq)
        except OSError as exc:
            reason = f"cannot record to {path}: {exc}"
        if reason:
            self._stop(reason)

    @property
    def active(self) -> bool:
        return self._writer is not None

    @property
    def bytes(self) -> int:
        try:
            return os.path.getsize(self.path)
        except OSError:
            return 0

    def _limit_reached(self, incoming: int) -> str | None:
        lim = self.limits
        if lim.max_bytes and self.bytes + incoming > lim.max_bytes:
            return f"recording size limit of {lim.max_bytes} bytes reached"
        if lim.min_free_bytes:
            try:
                free = self._disk_free(os.path.dirname(self.path) or ".")
            except OSError as exc:
                return f"cannot read the free disk space: {exc}"
            if free - incoming < lim.min_free_bytes:
                return f"free disk space {free} bytes is below the floor of {lim.min_free_bytes} bytes"
        return None

    def write(self, frame: EncodedFrame) -> bool:
        """Append one frame; False when the recording is (now) stopped."""
        if self._writer is None:
            return False
        reason = self._limit_reached(frame.size + 256)  # + the fragment's boxes, roughly
        if reason:
            self._stop(reason)
            return False
        try:
            self._writer.write(frame)
        except Exception as exc:
            self._stop(f"recording failed: {exc}")
            return False
        self.frames += 1
        return True

    def _stop(self, reason: str) -> None:
        self.stopped = reason
        log.warning("%s: recording stopped, the stream goes on: %s", self.label, reason)
        self.close()

    def close(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            finally:
                self._writer = None
