"""Box primitives: writing boxes and FullBoxes, reading headers checked against their parent."""

from __future__ import annotations

import struct

import pytest

from snisd.container.boxes import box, full_box, iter_children, parse_header
from snisd.errors import ContainerError


def test_box_primitives() -> None:
    assert box(b"free", b"abc") == b"\0\0\0\x0bfreeabc"
    assert full_box(b"mfhd", 1, 0x20001, b"") == b"\0\0\0\x0cmfhd\x01\x02\x00\x01"
    hdr = parse_header(struct.pack(">I4sQ", 1, b"mdat", 24) + b"x" * 8, 0, 24)
    assert (hdr.type, hdr.size, hdr.header_size, hdr.payload, hdr.end) == ("mdat", 24, 16, 16, 24)
    assert parse_header(b"\0\0\0\x10fr", 0, 6) is None
    parent = box(b"free", b"\0\0\0\x08skip", b"\0\0")
    with pytest.raises(ContainerError, match="stray"):
        list(iter_children(parent, 8, len(parent), "free"))
