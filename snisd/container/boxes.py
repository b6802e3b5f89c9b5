"""ISO/IEC 14496-12 box primitives: serialising boxes and walking them defensively.

Writing is plain concatenation (`box`, `full_box`). Reading never trusts a size field: every
header is checked against the bytes of its parent before anything is sliced, every loop
advances by at least one header, and anything inconsistent raises ContainerError naming the
absolute byte offset and the box type.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from ..errors import ContainerError

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_HDR = struct.Struct(">I4s")

#: Largest box accepted anywhere (a single fragment of one frame is far smaller).
MAX_BOX_SIZE = 256 << 20

#: Where each structural box type may appear. "file" is the top level. A box of one of these
#: types found under any other parent is a nesting error; other types are not constrained.
EXPECTED_PARENT: dict[str, frozenset[str]] = {
    name: frozenset(parents.split())
    for name, parents in {
        "ftyp": "file",
        "styp": "file",
        "moov": "file",
        "moof": "file",
        "mdat": "file",
        "sidx": "file",
        "mfra": "file",
        "mvhd": "moov",
        "trak": "moov",
        "mvex": "moov",
        "mehd": "mvex",
        "trex": "mvex",
        "tkhd": "trak",
        "tref": "trak",
        "edts": "trak",
        "mdia": "trak",
        "mdhd": "mdia",
        "hdlr": "mdia meta",
        "minf": "mdia",
        "vmhd": "minf",
        "smhd": "minf",
        "dinf": "minf meta",
        "stbl": "minf",
        "stsd": "stbl",
        "stts": "stbl",
        "stsc": "stbl",
        "stsz": "stbl",
        "stco": "stbl",
        "co64": "stbl",
        "stss": "stbl",
        "ctts": "stbl",
        "mfhd": "moof",
        "traf": "moof",
        "tfhd": "traf",
        "tfdt": "traf",
        "trun": "traf",
        "subs": "traf stbl",
        "snsC": "snis snie",
        "colr": "snis snie",
    }.items()
}


def box(kind: bytes, *payload: bytes) -> bytes:
    """A box with a 32-bit size (64-bit largesize when it does not fit)."""
    body = b"".join(payload)
    size = 8 + len(body)
    if size <= 0xFFFFFFFF:
        return _HDR.pack(size, kind) + body
    return _HDR.pack(1, kind) + _U64.pack(size + 8) + body


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    """A FullBox: one version byte and 24 flag bits before the payload."""
    return box(kind, _U32.pack((version & 0xFF) << 24 | (flags & 0xFFFFFF)), *payload)


def fourcc(raw: bytes) -> str:
    return raw.decode("latin-1")


_GOOD_TYPES: set[bytes] = set()


def _valid_type(raw: bytes) -> bool:
    # Printable ASCII, or the (c) sign that starts iTunes-style metadata names.
    if raw in _GOOD_TYPES:
        return True
    ok = all(0x20 <= c <= 0x7E for c in raw[1:]) and (0x20 <= raw[0] <= 0x7E or raw[0] == 0xA9)
    if ok and len(_GOOD_TYPES) < 4096:
        _GOOD_TYPES.add(raw)
    return ok


class BoxHeader:
    """A parsed box header. Offsets are relative to the buffer the box was read from."""

    __slots__ = ("type", "start", "size", "header_size")

    def __init__(self, type: str, start: int, size: int, header_size: int) -> None:
        self.type = type
        self.start = start  # first byte of the header
        self.size = size  # whole box, header included
        self.header_size = header_size  # 8, or 16 with a largesize

    def __repr__(self) -> str:
        return f"BoxHeader({self.type!r}, start={self.start}, size={self.size}, header_size={self.header_size})"

    @property
    def payload(self) -> int:
        return self.start + self.header_size

    @property
    def end(self) -> int:
        return self.start + self.size


def parse_header(
    data: bytes | bytearray | memoryview, pos: int, avail_end: int, *, base: int = 0, max_size: int = MAX_BOX_SIZE
) -> BoxHeader | None:
    """Parse the box header at `pos`; None if fewer bytes than the header are available.

    Does not check that the body fits (callers decide whether that is truncation or an error).
    `base` is added to offsets in error messages. Raises ContainerError on a header that can
    never be valid: a size below the header, a size of 0 (to end of file, not used by
    fragmented files), a largesize with its top bit set, a size beyond `max_size`, or a type
    that is not four printable characters.
    """
    if avail_end - pos < 8:
        return None
    size, raw = _HDR.unpack_from(data, pos)
    kind = fourcc(raw)
    if not _valid_type(raw):
        raise ContainerError(f"box type {raw!r} is not a four-character code", base + pos, kind)
    header = 8
    if size == 1:
        if avail_end - pos < 16:
            return None
        (size,) = _U64.unpack_from(data, pos + 8)
        header = 16
        if size >> 63:
            raise ContainerError(f"64-bit box size {size} overflows", base + pos, kind)
        if size < 16:
            raise ContainerError(f"64-bit box size {size} is smaller than its 16-byte header", base + pos, kind)
    elif size == 0:
        raise ContainerError("box size 0 (extends to end of file) is not allowed here", base + pos, kind)
    elif size < 8:
        raise ContainerError(f"box size {size} is smaller than its 8-byte header", base + pos, kind)
    if size > max_size:
        raise ContainerError(f"box size {size} exceeds the limit of {max_size} bytes", base + pos, kind)
    return BoxHeader(kind, pos, size, header)


def iter_children(
    data: bytes | bytearray | memoryview, start: int, end: int, parent: str, *, base: int = 0
) -> Iterator[BoxHeader]:
    """The child boxes filling data[start:end] exactly, which belongs to a complete parent.

    A child that does not fit is an error here (the parent claimed to be complete), and so is
    leftover space too small for a header, or a structural box under the wrong parent.
    """
    pos = start
    while pos < end:
        hdr = parse_header(data, pos, end, base=base)
        if hdr is None:
            raise ContainerError(f"{end - pos} stray bytes at the end of {parent!r}", base + pos, parent)
        if hdr.end > end:
            raise ContainerError(
                f"box of {hdr.size} bytes overruns its parent {parent!r} by {hdr.end - end} bytes", base + pos, hdr.type
            )
        check_nesting(hdr.type, parent, base + pos)
        yield hdr
        pos = hdr.end  # size >= header size >= 8, so this always advances


def check_nesting(kind: str, parent: str, offset: int) -> None:
    allowed = EXPECTED_PARENT.get(kind)
    if allowed is not None and parent not in allowed:
        raise ContainerError(f"box {kind!r} inside {parent!r}; it belongs in {'/'.join(sorted(allowed))}", offset, kind)


def children_by_type(
    data: bytes | bytearray | memoryview, hdr: BoxHeader, *, skip: int = 0, base: int = 0
) -> dict[str, list[BoxHeader]]:
    """Children of a complete box grouped by type (`skip` bytes of fixed fields come first)."""
    out: dict[str, list[BoxHeader]] = {}
    start = hdr.payload + skip
    if start > hdr.end:
        raise ContainerError(f"box of {hdr.size} bytes too short for its fields", base + hdr.start, hdr.type)
    for child in iter_children(data, start, hdr.end, hdr.type, base=base):
        out.setdefault(child.type, []).append(child)
    return out


class Cursor:
    """Bounded big-endian field reader over one box's payload."""

    __slots__ = ("data", "pos", "end", "box", "base")

    def __init__(self, data: bytes | bytearray | memoryview, hdr: BoxHeader, *, base: int = 0) -> None:
        self.data = data
        self.pos = hdr.payload
        self.end = hdr.end
        self.box = hdr.type
        self.base = base

    def _need(self, n: int) -> int:
        p = self.pos
        if self.end - p < n:
            raise ContainerError(
                f"box {self.box!r} truncated: needs {n} more bytes, has {self.end - p}", self.base + p, self.box
            )
        self.pos = p + n
        return p

    def u8(self) -> int:
        return self.data[self._need(1)]

    def u16(self) -> int:
        p = self._need(2)
        return self.data[p] << 8 | self.data[p + 1]

    def u32(self) -> int:
        return _U32.unpack_from(self.data, self._need(4))[0]

    def s32(self) -> int:
        v = self.u32()
        return v - (1 << 32) if v >> 31 else v

    def u64(self) -> int:
        return _U64.unpack_from(self.data, self._need(8))[0]

    def raw(self, n: int) -> bytes:
        p = self._need(n)
        return bytes(self.data[p : p + n])

    def skip(self, n: int) -> None:
        self._need(n)

    def rest(self) -> bytes:
        p, self.pos = self.pos, self.end
        return bytes(self.data[p : self.end])

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def full_header(self, versions: tuple[int, ...] = (0,)) -> tuple[int, int]:
        """Version and flags of a FullBox; an unknown version is an error."""
        vf = self.u32()
        version, flags = vf >> 24, vf & 0xFFFFFF
        if version not in versions:
            raise ContainerError(f"unsupported {self.box!r} version {version}", self.base + self.pos - 4, self.box)
        return version, flags

    def error(self, message: str) -> ContainerError:
        return ContainerError(message, self.base + self.pos, self.box)
