"""Reading a recorded SNIS fMP4 file: the init segment at once, then frames or fragments lazily."""

from __future__ import annotations

import os
from collections.abc import Iterator

from ..codec.bitstream import EncodedFrame, SequenceHeader
from .boxes import MAX_BOX_SIZE
from .demux import fragment_to_frame
from .layout import Fragment, InitInfo
from .streaming import Fmp4StreamParser

_READ_CHUNK = 1 << 18


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
        p = Fmp4StreamParser(max_box_size=max_box_size, init_only=True)
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

    def __enter__(self) -> Fmp4Reader:
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
