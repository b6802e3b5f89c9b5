"""Incremental fMP4 demuxing: feed bytes as they arrive (a socket, a file read in chunks).

Boxes are only interpreted once complete (by demux.py); an unfinished box stays buffered.
"""

from __future__ import annotations

import logging

from ..codec.bitstream import EncodedFrame, SequenceHeader
from ..errors import ContainerError
from .boxes import MAX_BOX_SIZE, BoxHeader, check_nesting, parse_header
from .demux import fragment_to_frame, parse_fragment, parse_ftyp, parse_init
from .layout import Fragment, InitInfo

log = logging.getLogger("snisd.container")


class Fmp4StreamParser:
    """Incremental demuxer: feed bytes as they arrive, get back every frame completed by them.

    Boxes are only interpreted once complete; bytes of an unfinished box stay buffered. After
    the last feed, `close()` tells whether the stream stopped inside a box (`truncated`).
    With `init_only`, parsing stops after the init segment (`init`); later bytes are not read.
    """

    def __init__(self, *, max_box_size: int = MAX_BOX_SIZE, init_only: bool = False) -> None:
        self.max_box_size = max_box_size
        self.init_only = init_only  # stop interpreting boxes once the init segment is parsed
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
        while not (self.init_only and self.init is not None):
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
            parse_ftyp(self._buf, hdr, self._base)
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
                    raise ContainerError(
                        f"fragment sequence number {frag.sequence_number} after {last.sequence_number}", mstart, "mfhd"
                    )
                if frag.samples[0].decode_time <= last.samples[0].decode_time:
                    raise ContainerError(
                        f"decode time {frag.samples[0].decode_time} after {last.samples[0].decode_time}", mstart, "tfdt"
                    )
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
                log.warning(
                    "fMP4 input truncated: %d bytes after the last complete fragment at offset %d",
                    self._base + len(self._buf) - self.valid_end,
                    self.valid_end,
                )
        return self.truncated
